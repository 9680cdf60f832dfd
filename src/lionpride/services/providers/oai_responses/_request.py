"""The canonical (Chat Completions) request written as a Responses API request.

Shape decides (DESIGN D14): a request with ``messages`` is canonical and translated here, once;
anything else is taken as a native Responses request, whose input and Responses fields are left
alone (only canonical parameters beside them, such as a model's default ``max_tokens``, are
renamed). The rules:

- leading ``system`` / ``developer`` messages become ``instructions`` (unless the request
  has its own); later ones stay in place as message items of their role;
- user content parts: ``text`` → ``input_text``, ``image_url`` → ``input_image``, ``file`` →
  ``input_file``; assistant ``tool_calls`` → ``function_call`` items; ``tool`` messages →
  ``function_call_output`` items (both keyed by the call's id, the ``call_id``);
- an assistant message's ``provider_state`` of this API (its reasoning items) is replayed
  before the message, so a reasoning model keeps its reasoning across turns; another
  provider's state is dropped, and the key itself is never sent;
- ``tools`` (function tools flattened, ``strict`` false unless the tool says so, as on chat
  completions; built-in tools passed through), ``tool_choice``,
  ``response_format`` → ``text.format``, ``max_tokens`` / ``max_completion_tokens`` →
  ``max_output_tokens``, ``reasoning_effort`` → ``reasoning.effort``, ``verbosity`` →
  ``text.verbosity``, ``logprobs`` → ``include``, ``stream_options`` without
  ``include_usage`` (a Responses stream always reports its usage);
- a parameter the Responses API has no equivalent for (``stop``, ``seed``, ``n``, the
  penalties, ...) is a :class:`~lionpride.errors.ValidationError` naming it.
"""

from __future__ import annotations

import json
from typing import Any

from lionpride import errors

__all__ = ["PROVIDER_STATE_KEY", "STATE_PROVIDER", "chat_to_responses"]

#: The key of an assistant message that carries provider state (never sent on the wire).
PROVIDER_STATE_KEY = "provider_state"
#: The ``provider`` tag of this API's state.
STATE_PROVIDER = "openai_responses"

_WHO = "the OpenAI Responses API"

#: Canonical parameters that keep their name and meaning.
_SAME = frozenset(
    {
        "model", "temperature", "top_p", "user", "metadata", "store", "service_tier",
        "parallel_tool_calls", "top_logprobs", "stream", "prompt_cache_key",
        "safety_identifier", "extra_body",
        "instructions", "include", "previous_response_id", "reasoning", "text", "truncation",
        "background", "max_output_tokens", "prompt_cache_retention", "max_tool_calls",
    }
)  # fmt: skip

#: Canonical parameters with no Responses equivalent: named in the error, never dropped.
_UNSUPPORTED = {
    "stop": "it has no stop sequences",
    "seed": "it takes no seed",
    "presence_penalty": "it has no penalties (extra_body, for a compatible server that has)",
    "frequency_penalty": "it has no penalties (extra_body, for a compatible server that has)",
    "n": "it makes one answer per request",
    "logit_bias": "it has no logit bias",
    "functions": "use tools",
    "function_call": "use tool_choice",
    "modalities": "audio output is not offered there",
    "audio": "audio output is not offered there",
    "prediction": "it has no predicted outputs",
    "web_search_options": "use the web_search tool in tools",
}


def chat_to_responses(request: dict[str, Any]) -> dict[str, Any]:
    """Translate a canonical request (with ``messages``) to a Responses request.

    A native request (``input``, no ``messages``) keeps its input and its Responses fields;
    canonical parameters beside them (``max_tokens`` among a model's defaults) still take
    their Responses names.

    Raises:
        ValidationError: A parameter or content part with no Responses equivalent (named).
    """
    out: dict[str, Any] = {}
    for key, value in request.items():
        if key == "messages":
            continue
        if key in _UNSUPPORTED:
            if key == "n" and value == 1:
                continue
            raise errors.ValidationError(
                f"parameter {key!r} has no equivalent in {_WHO} ({_UNSUPPORTED[key]})"
            )
        if key in _SAME:
            out[key] = value
        elif key in ("max_tokens", "max_completion_tokens"):
            out["max_output_tokens"] = value
        elif key == "reasoning_effort":
            out["reasoning"] = {**(request.get("reasoning") or {}), "effort": value}
        elif key == "verbosity":
            out["text"] = {**out.get("text", request.get("text") or {}), "verbosity": value}
        elif key == "response_format":
            out["text"] = {**out.get("text", request.get("text") or {}), "format": _format(value)}
        elif key == "tools":
            out["tools"] = [_tool(tool) for tool in value or ()]
        elif key == "tool_choice":
            out["tool_choice"] = _tool_choice(value)
        elif key == "stream_options":
            # A Responses stream always ends with its usage: include_usage asks nothing there.
            options = {k: v for k, v in (value or {}).items() if k != "include_usage"}
            if options:
                out["stream_options"] = options
        elif key == "logprobs":
            if value:
                include = list(request.get("include") or ())
                out["include"] = [*include, "message.output_text.logprobs"]
        else:
            out[key] = value  # unknown names are refused by the schema, with the valid ones
    if "messages" not in request:
        return out
    instructions, items = _input(request["messages"])
    if instructions is not None and "instructions" not in request:
        out["instructions"] = instructions
    elif instructions is not None:
        items.insert(0, {"role": "developer", "content": instructions})
    out["input"] = items
    return out


def _input(messages: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """The messages as input items, and the leading system text (``None`` if none)."""
    if not isinstance(messages, list):
        raise errors.ValidationError(f"messages must be a list, got {type(messages).__name__}")
    system: list[str] = []
    items: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise errors.ValidationError(f"messages[{i}] must be a dict, got {msg!r}")
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            if not items:
                system.append(_text(content, i))
            else:
                items.append({"role": role, "content": _text(content, i)})
        elif role == "user":
            items.append({"role": "user", "content": _user_content(content, i)})
        elif role == "assistant":
            items += _assistant(msg, i)
        elif role == "tool":
            output = content if isinstance(content, str) else _text(content, i)
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": msg.get("tool_call_id"),
                    "output": output,
                }
            )
        else:
            raise errors.ValidationError(
                f"messages[{i}].role must be system, developer, user, assistant or tool, "
                f"got {role!r}"
            )
    return ("\n\n".join(system) if system else None), items


def _text(content: Any, i: int) -> str:
    """The text of a string or a list of text parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(
            part if isinstance(part, str) else str(part.get("text", ""))
            for part in content
            if isinstance(part, str) or (isinstance(part, dict) and "text" in part)
        )
    raise errors.ValidationError(f"messages[{i}].content must be a string or a list of parts")


def _user_content(content: Any, i: int) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise errors.ValidationError(f"messages[{i}].content must be a string or a list of parts")
    return [_part(part, i, j) for j, part in enumerate(content)]


def _part(part: Any, i: int, j: int) -> dict[str, Any]:
    """One user content part as a Responses input part."""
    if isinstance(part, str):
        return {"type": "input_text", "text": part}
    if not isinstance(part, dict):
        raise errors.ValidationError(f"messages[{i}].content[{j}] must be a dict, got {part!r}")
    kind = part.get("type")
    if kind == "text":
        return {"type": "input_text", "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        out = {"type": "input_image", "image_url": url}
        detail = image.get("detail") if isinstance(image, dict) else None
        out["detail"] = detail or "auto"
        return out
    if kind == "file":
        file = part.get("file") or {}
        out = {"type": "input_file"}
        out.update({k: file[k] for k in ("file_data", "file_id", "filename") if k in file})
        return out
    if kind == "input_audio":
        raise errors.ValidationError(
            f"messages[{i}].content[{j}]: input_audio parts have no equivalent in {_WHO}"
        )
    return part  # a native input part (input_text, input_image, ...) goes as it is


def _assistant(msg: dict[str, Any], i: int) -> list[dict[str, Any]]:
    """An assistant turn: replayed reasoning items, its text, then its function calls."""
    items: list[dict[str, Any]] = []
    state = msg.get(PROVIDER_STATE_KEY)
    if isinstance(state, dict) and state.get("provider") == STATE_PROVIDER:
        items += [dict(item) for item in state.get("items") or ()]
    text = _text(msg.get("content"), i)
    if text:
        items.append({"role": "assistant", "content": text})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments or {})
        items.append(
            {
                "type": "function_call",
                "call_id": call.get("id"),
                "name": fn.get("name"),
                "arguments": arguments,
            }
        )
    return items


def _tool(tool: Any) -> Any:
    """A chat function tool flattened; a built-in or already flat tool as it is.

    ``strict`` is sent as the chat tool meant it: chat completions treats a tool without it
    as non-strict, the Responses API would make it strict (every property required).
    """
    if isinstance(tool, dict) and tool.get("type") == "function" and "function" in tool:
        fn = tool["function"]
        return {"type": "function", **fn, "strict": bool(fn.get("strict"))}
    return tool


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and "function" in choice:
        return {"type": "function", "name": (choice["function"] or {}).get("name")}
    return choice


def _format(response_format: Any) -> Any:
    """``response_format`` as ``text.format``: ``json_schema`` flattened, others as they are."""
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        return {"type": "json_schema", **spec}
    return response_format
