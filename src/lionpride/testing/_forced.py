"""What a request obliges the reply to be: a call of a forced tool, or JSON of a schema.

A live model cannot answer a request that forces a tool with text, nor a structured-output
request with prose, so neither does FakeProvider's generated reply. Read from each format's own
fields: OpenAI ``tool_choice`` ``"required"`` / named / ``allowed_tools`` in required mode and
``response_format``; Anthropic ``tool_choice`` ``any`` / ``tool`` and ``output_config.format``
(or the earlier ``output_format``); Gemini ``functionCallingConfig`` mode ``ANY`` (with
``allowedFunctionNames``) and ``responseMimeType: application/json`` with ``responseSchema`` or
``responseJsonSchema``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lionpride.testing._checks_gemini import field
from lionpride.testing._plan import Format
from lionpride.testing._schema_values import value_for_schema

__all__ = ["forced_tool_call", "structured_text"]


def forced_tool_call(fmt: Format, body: Any) -> dict[str, Any] | None:
    """``{"name", "arguments"}`` of the tool the request forces, with fitting arguments.

    Returns ``None`` when the request forces no tool (or names none it declares).
    """
    reader = _FORCED.get(fmt)
    found = reader(body) if reader is not None and isinstance(body, dict) else None
    if found is None:
        return None
    name, schema = found
    arguments = value_for_schema(schema) if isinstance(schema, dict) and schema else {}
    return {"name": name, "arguments": arguments if isinstance(arguments, dict) else {}}


def structured_text(fmt: Format, body: Any) -> str | None:
    """JSON text fitting the request's output schema, or ``None`` if it asks for none."""
    reader = _OUTPUT_SCHEMA.get(fmt)
    schema = reader(body) if reader is not None and isinstance(body, dict) else None
    if schema is None:
        return None
    return json.dumps(value_for_schema(schema), ensure_ascii=False)


def _pick(tools: dict[str, Any], wanted: list[str]) -> tuple[str, Any] | None:
    """The first wanted tool that is declared (any declared tool if none is wanted)."""
    for name in wanted or list(tools):
        if name in tools:
            return name, tools[name]
    return None


# -- OpenAI ---------------------------------------------------------------------------------


def _openai_forced(body: dict[str, Any]) -> tuple[str, Any] | None:
    tools: dict[str, Any] = {}
    for tool in body.get("tools") or ():
        name = _function_name(tool)
        if name is not None and tool.get("type") == "function":
            tools[name] = tool["function"].get("parameters")
    choice = body.get("tool_choice")
    if choice == "required":
        return _pick(tools, [])
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "function":
        return _pick(tools, [str(_function_name(choice))])
    allowed = choice.get("allowed_tools")
    if choice.get("type") == "allowed_tools" and isinstance(allowed, dict):
        if allowed.get("mode") != "required":
            return None
        listed = allowed.get("tools")
        names = [str(_function_name(t)) for t in listed] if isinstance(listed, list) else []
        return _pick(tools, names)
    return None


def _function_name(obj: Any) -> str | None:
    """``obj["function"]["name"]`` where the shapes allow, else ``None``."""
    function = obj.get("function") if isinstance(obj, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None


def _openai_format(body: dict[str, Any]) -> Any | None:
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return None


# -- Anthropic ------------------------------------------------------------------------------


def _anthropic_forced(body: dict[str, Any]) -> tuple[str, Any] | None:
    tools = {
        tool["name"]: tool.get("input_schema")
        for tool in body.get("tools") or ()
        if tool.get("type") in (None, "custom") and isinstance(tool.get("name"), str)
    }
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "any":
        return _pick(tools, [])
    if choice.get("type") == "tool":
        return _pick(tools, [str(choice.get("name"))])
    return None


def _anthropic_format(body: dict[str, Any]) -> Any | None:
    config = body.get("output_config")
    spec = config.get("format") if isinstance(config, dict) else body.get("output_format")
    if isinstance(spec, dict) and spec.get("type") == "json_schema":
        return spec.get("schema") or {"type": "object"}
    return None


# -- Gemini ---------------------------------------------------------------------------------


def _gemini_forced(body: dict[str, Any]) -> tuple[str, Any] | None:
    config = field(body, "toolConfig")
    calling = field(config, "functionCallingConfig") if isinstance(config, dict) else None
    if not isinstance(calling, dict) or calling.get("mode") != "ANY":
        return None
    tools: dict[str, Any] = {}
    for tool in field(body, "tools") or ():
        for declaration in field(tool, "functionDeclarations") or ():
            schema = field(declaration, "parametersJsonSchema")
            tools[declaration["name"]] = schema or field(declaration, "parameters")
    return _pick(tools, list(field(calling, "allowedFunctionNames") or ()))


def _gemini_format(body: dict[str, Any]) -> Any | None:
    config = field(body, "generationConfig")
    if not isinstance(config, dict) or field(config, "responseMimeType") != "application/json":
        return None
    schema = field(config, "responseJsonSchema") or field(config, "responseSchema")
    return schema or {"type": "object"}


_FORCED: dict[Format, Callable[[dict[str, Any]], tuple[str, Any] | None]] = {
    "openai": _openai_forced,
    "anthropic": _anthropic_forced,
    "gemini": _gemini_forced,
}
_OUTPUT_SCHEMA: dict[Format, Callable[[dict[str, Any]], Any | None]] = {
    "openai": _openai_format,
    "anthropic": _anthropic_format,
    "gemini": _gemini_format,
}
