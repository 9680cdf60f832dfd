"""The faults the OpenAI chat completions API refuses with HTTP 400, in its own words.

Written from the API reference and the errors the live service returns. The same path serves
every OpenAI-compatible provider (Groq, OpenRouter, Mistral, ...), so only what they all refuse
is checked: fields unknown to OpenAI, tool types of other vendors and extra message keys pass.
"""

from __future__ import annotations

import re
from typing import Any

from lionpride.testing._rejection import Rejected, json_type, listing, text_of
from lionpride.testing._strict_schema import check_strict_schema

__all__ = ["check_openai"]

_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_PART_TYPES = ("text", "image_url", "input_audio", "refusal", "audio", "file")
# Which content part types each role may carry.
_PARTS_BY_ROLE = {
    "user": {"text", "image_url", "input_audio", "file"},
    "system": {"text"},
    "developer": {"text"},
    "assistant": {"text", "refusal"},
    "tool": {"text"},
}
_TOOL_CHOICES = ("none", "auto", "required")
_FORMATS = ("text", "json_object", "json_schema")
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def check_openai(body: dict[str, Any]) -> None:
    """Raise :class:`Rejected` at the first fault the live API refuses in ``body``."""
    if "model" not in body:
        raise Rejected("you must provide a model parameter")
    _expect(body["model"], str, "model")
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    _expect(messages, list, "messages")
    if not messages:
        raise Rejected(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        _check_message(message, f"messages[{i}]")
    _check_tool_sequence(messages)
    tools = body.get("tools")
    if tools is not None:
        _expect(tools, list, "tools")
        for i, tool in enumerate(tools):
            _check_tool(tool, f"tools[{i}]")
    has_tools = bool(tools)
    _check_tool_choice(body.get("tool_choice"), has_tools)
    if body.get("parallel_tool_calls") is not None and not has_tools:
        raise Rejected(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed "
            "when 'tools' are specified.",
            param="parallel_tool_calls",
        )
    _check_response_format(body.get("response_format"), messages)
    if body.get("stream_options") is not None and body.get("stream") is not True:
        raise Rejected(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    _check_numbers(body)


def _expect(value: Any, kind: type, param: str) -> None:
    names: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    if not isinstance(value, kind):
        raise Rejected(
            f"Invalid type for '{param}': expected {names[kind]}, but got "
            f"{_article(json_type(value))} instead.",
            param=param,
            code="invalid_type",
        )


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _missing(param: str) -> Rejected:
    return Rejected(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _invalid_value(value: Any, allowed: tuple[str, ...], param: str) -> Rejected:
    return Rejected(
        f"Invalid value: '{value}'. Supported values are: {listing(allowed)}.",
        param=param,
        code="invalid_value",
    )


def _one_of(obj: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> Any:
    """``obj[key]``, which must be present and one of ``allowed``."""
    value = obj.get(key)
    if value is None:
        raise _missing(f"{where}.{key}")
    if value not in allowed:
        raise _invalid_value(value, allowed, f"{where}.{key}")
    return value


def _check_message(message: Any, where: str) -> None:
    _expect(message, dict, where)
    role = _one_of(message, "role", _ROLES, where)
    calls = message.get("tool_calls")
    if calls is not None:
        _expect(calls, list, f"{where}.tool_calls")
        for j, call in enumerate(calls):
            _check_tool_call(call, f"{where}.tool_calls[{j}]")
    if role == "tool":
        if message.get("tool_call_id") is None:
            raise _missing(f"{where}.tool_call_id")
        _expect(message["tool_call_id"], str, f"{where}.tool_call_id")
    content = message.get("content")
    if content is None:
        speaks_otherwise = bool(calls) or any(
            message.get(key) is not None for key in ("function_call", "audio", "refusal")
        )
        if role in ("assistant", "function") and speaks_otherwise:
            return
        if "content" not in message:
            raise _missing(f"{where}.content")
        raise Rejected(
            "Invalid value for 'content': expected a string, got null.",
            param=f"{where}.content",
            code="invalid_value",
        )
    if isinstance(content, list):
        if not content and role != "assistant":
            raise Rejected(
                f"Invalid '{where}.content': empty array. Expected an array with minimum "
                "length 1, but got an empty array instead.",
                param=f"{where}.content",
                code="empty_array",
            )
        for j, part in enumerate(content):
            _check_part(part, role, f"{where}.content[{j}]")
    elif not isinstance(content, str):
        _expect(content, str, f"{where}.content")


def _check_part(part: Any, role: str, where: str) -> None:
    _expect(part, dict, where)
    kind = _one_of(part, "type", _PART_TYPES, where)
    allowed = _PARTS_BY_ROLE.get(role)
    if allowed is not None and kind not in allowed:
        raise Rejected(
            f"Invalid '{where}': content parts of type '{kind}' are not allowed in messages "
            f"with role '{role}' (allowed: {listing(sorted(allowed))}).",
            param=f"{where}.type",
            code="invalid_value",
        )
    if kind in ("text", "refusal"):
        if part.get(kind) is None:
            raise _missing(f"{where}.{kind}")
        _expect(part[kind], str, f"{where}.{kind}")
    elif kind == "image_url":
        image = part.get("image_url")
        if image is None:
            raise _missing(f"{where}.image_url")
        _expect(image, dict, f"{where}.image_url")
        if image.get("url") is None:
            raise _missing(f"{where}.image_url.url")
    elif kind in ("input_audio", "file"):
        inner = part.get(kind)
        if inner is None:
            raise _missing(f"{where}.{kind}")
        _expect(inner, dict, f"{where}.{kind}")


def _check_tool_call(call: Any, where: str) -> None:
    _expect(call, dict, where)
    for key in ("id", "type"):
        if call.get(key) is None:
            raise _missing(f"{where}.{key}")
        _expect(call[key], str, f"{where}.{key}")
    if call["type"] == "custom":
        return
    if call["type"] != "function":
        raise _invalid_value(call["type"], ("function", "custom"), f"{where}.type")
    function = call.get("function")
    if function is None:
        raise _missing(f"{where}.function")
    _expect(function, dict, f"{where}.function")
    for key in ("name", "arguments"):
        if function.get(key) is None:
            raise _missing(f"{where}.function.{key}")
        _expect(function[key], str, f"{where}.function.{key}")


def _check_tool_sequence(messages: list[dict[str, Any]]) -> None:
    """Tool messages answer the calls of the assistant message before them, each call once."""
    pending: dict[str, int] = {}  # unanswered call id -> index of the assistant message
    answering = False  # inside the run of tool messages that follows an assistant's calls
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            call_id = message["tool_call_id"]
            if not answering or call_id not in pending:
                raise Rejected(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            del pending[call_id]
            continue
        if pending:
            raise Rejected(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}",
                param=f"messages.[{i}].role",
            )
        calls = message.get("tool_calls") if role == "assistant" else None
        pending = {call["id"]: i for call in calls or ()}
        answering = bool(pending)


def _check_tool(tool: Any, where: str) -> None:
    _expect(tool, dict, where)
    kind = tool.get("type")
    if kind is None:
        raise _missing(f"{where}.type")
    if kind not in ("function", "custom"):
        return  # other OpenAI-compatible services add tool types of their own
    inner = tool.get(kind)
    if inner is None:
        raise _missing(f"{where}.{kind}")
    _expect(inner, dict, f"{where}.{kind}")
    name = inner.get("name")
    if name is None:
        raise _missing(f"{where}.{kind}.name")
    _check_name(name, f"{where}.{kind}.name")
    parameters = inner.get("parameters") if kind == "function" else None
    if parameters is not None:
        _expect(parameters, dict, f"{where}.function.parameters")
        if inner.get("strict") is True:
            check_strict_schema(
                parameters,
                f"function '{name}'",
                param=f"{where}.function.parameters",
                code="invalid_function_parameters",
            )


def _check_tool_choice(choice: Any, has_tools: bool) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise _invalid_value(choice, _TOOL_CHOICES, "tool_choice")
        forced = choice == "required"
    else:
        _expect(choice, dict, "tool_choice")
        kind = choice.get("type")
        if kind is None:
            raise _missing("tool_choice.type")
        if kind in ("function", "custom"):
            inner = choice.get(kind)
            if not isinstance(inner, dict) or inner.get("name") is None:
                raise _missing(f"tool_choice.{kind}.name")
        forced = True
    if forced and not has_tools:
        raise Rejected(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
        )


def _check_name(name: Any, where: str) -> None:
    """A function's or a schema's name: letters, digits, ``_`` and ``-``, at most 64."""
    _expect(name, str, where)
    if not _NAME.match(name):
        raise Rejected(
            f"Invalid '{where}': string does not match pattern. Expected a string that "
            f"matches the pattern '^[a-zA-Z0-9_-]+$' of at most 64 characters, got {name!r}.",
            param=where,
            code="invalid_value",
        )


def _check_response_format(value: Any, messages: list[dict[str, Any]]) -> None:
    if value is None:
        return
    _expect(value, dict, "response_format")
    kind = _one_of(value, "type", _FORMATS, "response_format")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if spec is None:
            raise _missing("response_format.json_schema")
        _expect(spec, dict, "response_format.json_schema")
        if spec.get("name") is None:
            raise _missing("response_format.json_schema.name")
        _check_name(spec["name"], "response_format.json_schema.name")
        if spec.get("schema") is not None:
            _expect(spec["schema"], dict, "response_format.json_schema.schema")
        if spec.get("strict") is True:
            owner = f"response_format '{spec['name']}'"
            check_strict_schema(spec.get("schema"), owner, param="response_format", code=None)
    elif (
        kind == "json_object"
        and "json" not in text_of([m.get("content") for m in messages]).lower()
    ):
        raise Rejected(
            "'messages' must contain the word 'json' in some form, to use "
            "'response_format' of type 'json_object'.",
            param="messages",
        )


# Numeric ranges: (name, lowest, highest, integer).
_RANGES = (
    ("max_tokens", 1, None, True),
    ("max_completion_tokens", 1, None, True),
    ("n", 1, 128, True),
    ("temperature", 0, 2, False),
    ("top_p", 0, 1, False),
    ("presence_penalty", -2, 2, False),
    ("frequency_penalty", -2, 2, False),
)


def _check_numbers(body: dict[str, Any]) -> None:
    for name, low, high, integer in _RANGES:
        value = body.get(name)
        if value is None:
            continue
        kind = "integer" if integer else "decimal"
        number = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, number):
            raise Rejected(
                f"Invalid type for '{name}': expected {_article(kind)}, but got "
                f"{_article(json_type(value))} instead.",
                param=name,
                code="invalid_type",
            )
        if value < low:
            raise Rejected(
                f"Invalid '{name}': {kind} below minimum value. Expected a value >= {low}, "
                f"but got {value} instead.",
                param=name,
                code=f"{kind}_below_min_value",
            )
        if high is not None and value > high:
            raise Rejected(
                f"Invalid '{name}': {kind} above maximum value. Expected a value <= {high}, "
                f"but got {value} instead.",
                param=name,
                code=f"{kind}_above_max_value",
            )
