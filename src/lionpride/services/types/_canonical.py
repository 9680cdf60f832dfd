"""The common step every HTTP request takes before its provider translates it (DESIGN D14).

The canonical request is the OpenAI Chat Completions request. Callers may give ``tools`` as
:class:`~lionpride.services.types.tool.Tool` objects or plain Python functions, and
``response_format`` as a pydantic model class; :func:`plain_request` turns them into the
plain OpenAI dicts, so that every provider's translator (and the OpenAI path, which sends the
request as it is) only ever sees JSON values. Runs once per call.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from lionpride import errors

__all__ = ["output_type_of", "plain_request", "response_format_of"]


def output_type_of(request: dict[str, Any]) -> type[BaseModel] | None:
    """The pydantic model class given as ``response_format``, if one was."""
    value = request.get("response_format")
    if isinstance(value, type) and issubclass(value, BaseModel):
        return value
    return None


def plain_request(request: dict[str, Any]) -> dict[str, Any]:
    """``request`` with ``tools`` and ``response_format`` as plain OpenAI dicts.

    Returns ``request`` itself when there is nothing to convert (the usual case).

    Raises:
        ValidationError: A ``tools`` entry that is neither a dict, a Tool nor a function.
    """
    tools = request.get("tools")
    fmt = request.get("response_format")
    converted_tools = _plain_tools(tools) if isinstance(tools, list | tuple) else None
    converted_fmt = response_format_of(fmt) if isinstance(fmt, type) else None
    if converted_tools is None and converted_fmt is None:
        return request
    out = dict(request)
    if converted_tools is not None:
        out["tools"] = converted_tools
    if converted_fmt is not None:
        out["response_format"] = converted_fmt
    return out


def response_format_of(model: type) -> dict[str, Any]:
    """The ``json_schema`` response format of a pydantic model class.

    Raises:
        ValidationError: ``model`` is a class but not a pydantic model.
    """
    if not issubclass(model, BaseModel):
        raise errors.ValidationError(
            f"response_format must be a dict or a pydantic model class, got {model.__name__}"
        )
    schema = model.model_json_schema()
    # The API takes a name of letters, digits, _ and - only (a generic's is "Page[int]").
    name = _NOT_IN_NAME.sub("_", model.__name__)[:64]
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema},
    }


_NOT_IN_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def _plain_tools(tools: list[Any] | tuple[Any, ...]) -> list[dict[str, Any]] | None:
    """The tools as OpenAI function dicts, or ``None`` when they already all are dicts."""
    if all(isinstance(tool, dict) for tool in tools):
        return None if isinstance(tools, list) else list(tools)
    from lionpride.services.types.tool import Tool

    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if isinstance(tool, dict):
            out.append(tool)
        elif isinstance(tool, Tool):
            out.append(tool.to_openai())
        elif callable(tool) and isinstance(getattr(tool, "__name__", None), str):
            out.append(Tool(func_callable=tool, config=None).to_openai())
        else:
            raise errors.ValidationError(
                f"tools[{i}] must be an OpenAI tool dict, a Tool or a function, "
                f"got {type(tool).__name__}"
            )
    return out
