"""The faults the Gemini generateContent API refuses with HTTP 400, in its own words.

Written from the API reference and the errors the live service returns. The API reads its
request as protocol-buffer JSON: every field has a camelCase and a snake_case spelling, and a name
that is no field of its message is refused, which is how an OpenAI- or Anthropic-shaped request
fails. The function-calling turn rules are the ones the API applies: a call turn follows a user
turn or a response turn, a response turn follows a call turn and answers each of its calls.
"""

from __future__ import annotations

import re
from typing import Any

from lionpride.testing._rejection import Rejected, json_type

__all__ = ["check_gemini", "field"]

_CONTENT_FIELDS = ("role", "parts")
# Part fields; the first group is the `data` oneof, of which a part sets exactly one.
_PART_DATA = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "toolCall",
    "toolResponse",
)
_PART_FIELDS = (
    *_PART_DATA,
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "partMetadata",
    "mediaResolution",
)
_TOOL_FIELDS = (
    "functionDeclarations",
    "googleSearch",
    "googleSearchRetrieval",
    "codeExecution",
    "urlContext",
    "fileSearch",
    "computerUse",
    "googleMaps",
    "retrieval",
    "enterpriseWebSearch",
    "mcpServers",
)
_DECLARATION_FIELDS = (
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
)
_MODES = ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED")
_ROLES = ("user", "model")
# Earlier API versions took function responses in a "function" turn; not known to be refused now.
_OLDER_ROLES = ("function",)
_FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}$")
_REQUEST = "GenerateContentRequest"


def check_gemini(body: dict[str, Any], model: str = "") -> None:
    """Raise :class:`Rejected` at the first fault the live API refuses in ``body``.

    ``model`` (named in the request path) decides whether thought signatures are required.
    """
    contents = field(body, "contents")
    if not contents:
        raise Rejected(f"* {_REQUEST}.contents: contents is not specified\n")
    if not isinstance(contents, list):
        raise _invalid_value("contents", contents)
    for i, content in enumerate(contents):
        _check_content(content, f"contents[{i}]")
    _check_function_turns(contents)
    if _signs_function_calls(model):
        _check_thought_signatures(contents)
    system = field(body, "systemInstruction")
    if system is not None:
        _check_content(system, "system_instruction")
    tools = field(body, "tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid_value("tools", tools)
        for i, tool in enumerate(tools):
            _check_tool(tool, f"tools[{i}]")
    _check_tool_config(field(body, "toolConfig"))
    config = field(body, "generationConfig")
    if config is not None and not isinstance(config, dict):
        raise _invalid_value("generation_config", config)


def field(obj: dict[str, Any], name: str) -> Any:
    """A field by its camelCase name, or by its snake_case spelling."""
    if name in obj:
        return obj[name]
    return obj.get(_snake(name))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _unknown_names(obj: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    spellings = {*known, *map(_snake, known)}
    for name in obj:
        if name not in spellings:
            raise Rejected(
                f"Invalid JSON payload received. Unknown name {_quoted(name)} at "
                f"'{where}': Cannot find field."
            )


def _quoted(name: str) -> str:
    """A field name quoted as the API quotes it."""
    return '"' + name.replace('"', '\\"') + '"'


def _invalid_value(where: str, value: Any) -> Rejected:
    return Rejected(f"Invalid value at '{where}' ({json_type(value)}), {_quoted(str(value))[:200]}")


def _check_content(content: Any, where: str) -> None:
    if not isinstance(content, dict):
        raise _invalid_value(where, content)
    _unknown_names(content, _CONTENT_FIELDS, where)
    role = content.get("role")
    known = role is None or role in _ROLES or role in _OLDER_ROLES
    if not known and where != "system_instruction":
        raise Rejected(f"Please use a valid role: {', '.join(_ROLES)}.")
    parts = content.get("parts")
    if not parts:
        raise Rejected(f"* {_REQUEST}.{where}.parts: contents.parts must not be empty.\n")
    if not isinstance(parts, list):
        raise _invalid_value(f"{where}.parts", parts)
    for j, part in enumerate(parts):
        _check_part(part, f"{where}.parts[{j}]")


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict):
        raise _invalid_value(where, part)
    _unknown_names(part, _PART_FIELDS, where)
    data = [name for name in _PART_DATA if field(part, name) is not None]
    if not data:
        raise Rejected(
            f"* {_REQUEST}.{where}.data: required oneof field 'data' must have one "
            "initialized field\n"
        )
    if len(data) > 1:
        raise Rejected(
            f"Invalid JSON payload received. Oneof field 'data' is already set. Cannot set "
            f"'{data[1]}' at '{where}'."
        )
    name = data[0]
    value = field(part, name)
    if name == "text" and not isinstance(value, str):
        raise _invalid_value(f"{where}.text", value)
    if name in ("inlineData", "fileData"):
        if not isinstance(value, dict):
            raise _invalid_value(f"{where}.{_snake(name)}", value)
        needed = ("mimeType", "data") if name == "inlineData" else ("fileUri",)
        for key in needed:
            if not field(value, key):
                raise Rejected(
                    f"* {_REQUEST}.{where}.{_snake(name)}.{_snake(key)}: "
                    f"{_snake(key)} is required\n"
                )
    if name in ("functionCall", "functionResponse"):
        _check_function_part(name, value, where)


def _check_function_part(name: str, value: Any, where: str) -> None:
    path = f"{where}.{_snake(name)}"
    if not isinstance(value, dict):
        raise _invalid_value(path, value)
    if not value.get("name"):
        raise Rejected(f"* {_REQUEST}.{path}.name: Name cannot be empty.\n")
    struct = "args" if name == "functionCall" else "response"
    inner = value.get(struct)
    if inner is not None and not isinstance(inner, dict):
        raise Rejected(
            f"Invalid value at '{path}.{struct}' (type.googleapis.com/google.protobuf.Struct), "
            f"{_quoted(str(inner))[:200]}"
        )


def _parts(content: dict[str, Any], name: str) -> int:
    return sum(1 for part in content["parts"] if field(part, name) is not None)


def _check_function_turns(contents: list[dict[str, Any]]) -> None:
    """Calls follow a user or response turn; responses follow a call turn and answer each call."""
    for i, content in enumerate(contents):
        previous = contents[i - 1] if i else None
        calls = _parts(content, "functionCall")
        if calls and (previous is None or previous.get("role") == "model"):
            raise Rejected(
                "Please ensure that function call turn comes immediately after a user turn or "
                "after a function response turn."
            )
        responses = _parts(content, "functionResponse")
        if not responses:
            continue
        asked = _parts(previous, "functionCall") if previous else 0
        if not asked:
            raise Rejected(
                "Please ensure that function response turn comes immediately after a function "
                "call turn."
            )
        if responses != asked:
            raise Rejected(
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn."
            )


def _signs_function_calls(model: str) -> bool:
    """Whether the model refuses function calls of the current turn without a signature.

    Gemini 3 models do (Gemini 3 Pro Image excepted); Gemini 2.5 sends signatures but does not
    require them back.
    """
    return model.startswith("gemini-3") and "-image" not in model


def _check_thought_signatures(contents: list[dict[str, Any]]) -> None:
    """Each model step of the current turn carries a signature on its first function call.

    The current turn starts after the last user content that is not only function responses;
    of parallel calls only the first carries a signature.
    """
    start = 0
    for i, content in enumerate(contents):
        parts = content["parts"]
        if content.get("role") != "model" and _parts(content, "functionResponse") < len(parts):
            start = i + 1
    for content in contents[start:]:
        if content.get("role") != "model":
            continue
        for k, part in enumerate(content["parts"]):
            call = field(part, "functionCall")
            if call is None:
                continue
            if not field(part, "thoughtSignature"):
                raise Rejected(
                    "Function call is missing a thought_signature in functionCall parts. This "
                    "is required for tools to work correctly, and missing thought_signature "
                    f"may lead to degraded model performance. Function call `{call['name']}`, "
                    f"position {k + 1}. Please refer to "
                    "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
                )
            break


def _check_tool(tool: Any, where: str) -> None:
    if not isinstance(tool, dict):
        raise _invalid_value(where, tool)
    _unknown_names(tool, _TOOL_FIELDS, where)
    declarations = field(tool, "functionDeclarations") or []
    if not isinstance(declarations, list):
        raise _invalid_value(f"{where}.function_declarations", declarations)
    for k, declaration in enumerate(declarations):
        path = f"{where}.function_declarations[{k}]"
        if not isinstance(declaration, dict):
            raise _invalid_value(path, declaration)
        _unknown_names(declaration, _DECLARATION_FIELDS, path)
        name = declaration.get("name")
        if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
            raise Rejected(
                f"* {_REQUEST}.{path}.name: Invalid function name {name!r}. Must start with a "
                "letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), "
                "dots (.), colons (:) or dashes (-), with a maximum length of 128.\n"
            )


def _check_tool_config(config: Any) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise _invalid_value("tool_config", config)
    calling = field(config, "functionCallingConfig")
    if calling is None:
        return
    if not isinstance(calling, dict):
        raise _invalid_value("tool_config.function_calling_config", calling)
    mode = calling.get("mode")
    if mode is not None and mode not in _MODES:
        raise Rejected(
            "Invalid value at 'tool_config.function_calling_config.mode' "
            "(type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig"
            f".Mode), {_quoted(str(mode))}"
        )
    allowed = field(calling, "allowedFunctionNames")
    if allowed is not None and (
        not isinstance(allowed, list) or not all(isinstance(n, str) for n in allowed)
    ):
        raise _invalid_value("tool_config.function_calling_config.allowed_function_names", allowed)
