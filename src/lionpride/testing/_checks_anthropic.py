"""The faults the Anthropic Messages API refuses with HTTP 400, in its own words.

Written from the Messages API reference and the errors the live service returns. What the
current API accepts passes: consecutive turns of one role (the API merges them), a first turn by
the assistant, a ``system`` turn inside ``messages`` (the recordings show a current model taking
one), server tools of any dated version, block types of the server-tool families.
"""

from __future__ import annotations

import re
from typing import Any

from lionpride.testing._rejection import Rejected, json_type

__all__ = ["check_anthropic"]

_ROLES = ("user", "assistant", "system")
_BLOCK_TYPES = (
    "text",
    "image",
    "document",
    "search_result",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    "server_tool_use",
    "mcp_tool_use",
    "container_upload",
    "tool_reference",
    "compaction",
)
# Server tools come and go by family; their result blocks share these endings.
_BLOCK_FAMILIES = ("_tool_result", "_tool_use")
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_SOURCES = {
    "image": ("base64", "url", "file"),
    "document": ("base64", "url", "file", "text", "content"),
}
_TOOL_CHOICES = ("auto", "any", "tool", "none")
_THINKING = ("enabled", "disabled", "adaptive")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_SERVER_TOOL = re.compile(r"^[a-z][a-z0-9_]*_\d{8}$")  # e.g. web_search_20250305
_FORCING = ("any", "tool")
_MIN_BUDGET = 1024
# What constrained decoding (output_config.format, strict tools) refuses in a schema, by type.
_NUMBER_LIMITS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_NO_GRAMMAR = {
    "integer": _NUMBER_LIMITS,
    "number": _NUMBER_LIMITS,
    "string": ("minLength", "maxLength"),
    "array": ("maxItems", "uniqueItems"),
}


def check_anthropic(body: dict[str, Any], betas: str = "") -> None:
    """Raise :class:`Rejected` at the first fault the live API refuses in ``body``.

    ``betas`` is the request's ``anthropic-beta`` header: interleaved thinking lets the
    thinking budget exceed ``max_tokens``.
    """
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise Rejected(f"{name}: Field required")
    _expect_str(body["model"], "model")
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise Rejected(f"max_tokens: Input should be a valid integer, got {max_tokens!r}")
    if max_tokens < 1:
        raise Rejected(f"max_tokens: Input should be greater than or equal to 1, got {max_tokens}")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise Rejected(f"messages: Input should be a valid list, got {json_type(messages)}")
    if not messages:
        raise Rejected("messages: at least one message is required")
    for i, message in enumerate(messages):
        _check_message(message, i, last=i == len(messages) - 1)
    _check_system(body.get("system"))
    _check_tools(body.get("tools"))
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if isinstance(fmt, dict):
        _check_grammar(fmt.get("schema"), "output_config.format.schema")
    _check_tool_choice(body.get("tool_choice"))
    _check_thinking(body, messages, interleaved="interleaved-thinking" in betas)
    _check_tool_pairs(messages)
    _check_sampling(body)


def _expect_str(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise Rejected(f"{where}: Input should be a valid string, got {json_type(value)}")


def _expect_dict(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise Rejected(
            f"{where}: Input should be a valid dictionary or object to extract fields from, "
            f"got {json_type(value)}"
        )


def _bad_tag(tag: Any, where: str, expected: tuple[str, ...]) -> Rejected:
    names = ", ".join(f"'{e}'" for e in expected)
    return Rejected(
        f"{where}: Input tag {tag!r} found using 'type' does not match any of the expected "
        f"tags: {names}"
    )


def _check_message(message: Any, i: int, *, last: bool) -> None:
    where = f"messages.{i}"
    _expect_dict(message, where)
    for name in ("role", "content"):
        if name not in message:
            raise Rejected(f"{where}.{name}: Field required")
    role = message["role"]
    if role not in _ROLES:
        raise Rejected(f"{where}.role: Input should be 'user' or 'assistant', got {role!r}")
    content = message["content"]
    final_assistant = last and role == "assistant"
    if isinstance(content, str):
        if not content and not final_assistant:
            raise _empty(i)
    elif isinstance(content, list):
        if not content and not final_assistant:
            raise _empty(i)
        for j, block in enumerate(content):
            _check_block(block, f"{where}.content.{j}")
    else:
        raise Rejected(
            f"{where}.content: Input should be a valid string or a list of content blocks, "
            f"got {json_type(content)}"
        )
    if final_assistant and _trailing_space(content):
        raise Rejected("messages: final assistant content cannot end with trailing whitespace")


def _empty(i: int) -> Rejected:
    return Rejected(
        f"messages.{i}: all messages must have non-empty content except for the optional "
        "final assistant message"
    )


def _trailing_space(content: Any) -> bool:
    if isinstance(content, list):
        texts = [b.get("text") for b in content if b.get("type") == "text"]
        content = texts[-1] if texts and content[-1].get("type") == "text" else ""
    return isinstance(content, str) and content != content.rstrip()


def _check_block(block: Any, where: str) -> None:
    _expect_dict(block, where)
    kind = block.get("type")
    if kind is None:
        raise Rejected(f"{where}.type: Field required")
    if kind not in _BLOCK_TYPES and not str(kind).endswith(_BLOCK_FAMILIES):
        raise _bad_tag(kind, where, _BLOCK_TYPES)
    if kind == "text":
        _need(block, "text", where)
        _expect_str(block["text"], f"{where}.text")
        if not block["text"]:
            raise Rejected("messages: text content blocks must be non-empty")
    elif kind in _SOURCES:
        _check_source(block, kind, where)
    elif kind == "tool_use":
        for name in ("id", "name", "input"):
            _need(block, name, where)
        _expect_str(block["id"], f"{where}.id")
        _expect_dict(block["input"], f"{where}.input")
    elif kind == "tool_result":
        _need(block, "tool_use_id", where)
        _expect_str(block["tool_use_id"], f"{where}.tool_use_id")
        inner = block.get("content")
        if isinstance(inner, list):
            for k, part in enumerate(inner):
                _check_block(part, f"{where}.content.{k}")
        elif inner is not None and not isinstance(inner, str):
            raise Rejected(
                f"{where}.content: Input should be a valid string or a list of content "
                f"blocks, got {json_type(inner)}"
            )
    elif kind == "thinking":
        for name in ("thinking", "signature"):
            _need(block, name, where)


def _need(block: dict[str, Any], name: str, where: str) -> None:
    if name not in block:
        raise Rejected(f"{where}.{block['type']}.{name}: Field required")


def _check_source(block: dict[str, Any], kind: str, where: str) -> None:
    _need(block, "source", where)
    source = block["source"]
    source_type = _tag(source, f"{where}.source", _SOURCES[kind])
    if source_type == "base64":
        for name in ("media_type", "data"):
            if name not in source:
                raise Rejected(f"{where}.source.base64.{name}: Field required")
        media = source["media_type"]
        if kind == "image" and media not in _IMAGE_TYPES:
            allowed = ", ".join(f"'{t}'" for t in _IMAGE_TYPES)
            raise Rejected(
                f"{where}.source.base64.media_type: Input should be {allowed}, got {media!r}"
            )
        if kind == "document" and media != "application/pdf":
            raise Rejected(
                f"{where}.source.base64.media_type: Input should be 'application/pdf', "
                f"got {media!r}"
            )
    elif source_type == "url" and not isinstance(source.get("url"), str):
        raise Rejected(f"{where}.source.url.url: Field required")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise Rejected(f"system: Input should be a valid string or list, got {json_type(system)}")
    for i, block in enumerate(system):
        _expect_dict(block, f"system.{i}")
        if block.get("type") != "text":
            raise Rejected(f"system.{i}.type: Input should be 'text', got {block.get('type')!r}")
        if not isinstance(block.get("text"), str):
            raise Rejected(f"system.{i}.text: Field required")


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise Rejected(f"tools: Input should be a valid list, got {json_type(tools)}")
    names: list[str] = []
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        _expect_dict(tool, where)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            if not _SERVER_TOOL.match(str(kind)) and kind != "mcp_toolset":
                raise _bad_tag(kind, where, ("custom", "<server tool>_<YYYYMMDD>"))
            continue
        for name in ("name", "input_schema"):
            if name not in tool:
                raise Rejected(f"{where}.custom.{name}: Field required")
        name = tool["name"]
        _expect_str(name, f"{where}.custom.name")
        if not _TOOL_NAME.match(name):
            raise Rejected(
                f"{where}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$', "
                f"got {name!r}"
            )
        schema = tool["input_schema"]
        _expect_dict(schema, f"{where}.custom.input_schema")
        if schema.get("type") != "object":
            raise Rejected(
                f"{where}.custom.input_schema.type: Input should be 'object', "
                f"got {schema.get('type')!r}"
            )
        if name in names:
            raise Rejected(f"tools: Tool names must be unique, {name!r} appears twice")
        names.append(name)
        if tool.get("strict") is True:
            _check_grammar(schema, f"{where}.custom.input_schema")


def _check_grammar(schema: Any, where: str) -> None:
    """Refuse a limit that constrained decoding has no grammar for, anywhere in ``schema``."""
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    refused = _NO_GRAMMAR.get(kind, ()) if isinstance(kind, str) else ()
    if kind == "array" and schema.get("minItems", 0) not in (0, 1):
        refused = (*refused, "minItems")
    for key in refused:
        if key in schema:
            raise Rejected(f"{where}: For '{kind}' type, property '{key}' is not supported")
    nested: list[Any] = [schema.get("items"), schema.get("additionalProperties")]
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            nested += schema[key].values()
    for key in ("anyOf", "allOf", "oneOf"):
        if isinstance(schema.get(key), list):
            nested += schema[key]
    for sub in nested:
        _check_grammar(sub, where)


def _tag(value: Any, where: str, allowed: tuple[str, ...]) -> Any:
    """The ``type`` of the object ``value``, which must be one of ``allowed``."""
    _expect_dict(value, where)
    kind = value.get("type")
    if kind not in allowed:
        raise _bad_tag(kind, where, allowed)
    return kind


def _check_tool_choice(choice: Any) -> None:
    if choice is not None and _tag(choice, "tool_choice", _TOOL_CHOICES) == "tool":
        if "name" not in choice:
            raise Rejected("tool_choice.tool.name: Field required")
        _expect_str(choice["name"], "tool_choice.tool.name")


def _thinking_type(body: dict[str, Any]) -> str | None:
    thinking = body.get("thinking")
    return thinking.get("type") if isinstance(thinking, dict) else None


def _check_thinking(
    body: dict[str, Any], messages: list[dict[str, Any]], *, interleaved: bool
) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    kind = _tag(thinking, "thinking", _THINKING)
    if kind == "disabled":
        return
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in _FORCING:
        raise Rejected("Thinking may not be enabled when tool_choice forces tool use.")
    if kind != "enabled":
        return  # adaptive thinking may skip a turn's thinking, so nothing more is required
    budget = thinking.get("budget_tokens")
    if budget is None:
        raise Rejected("thinking.enabled.budget_tokens: Field required")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < _MIN_BUDGET:
        raise Rejected(
            f"thinking.enabled.budget_tokens: Input should be greater than or equal to "
            f"{_MIN_BUDGET}, got {budget!r}"
        )
    if body["max_tokens"] <= budget and not interleaved:
        raise Rejected(
            f"`max_tokens` must be greater than `thinking.budget_tokens` "
            f"(max_tokens {body['max_tokens']}, budget_tokens {budget})"
        )
    _check_thinking_before_tools(messages)


def _check_thinking_before_tools(messages: list[dict[str, Any]]) -> None:
    """With thinking on, the assistant turn whose tools the last turn answers opens with it."""
    turns = _merged_turns(messages)
    if len(turns) < 2 or turns[-1][0] != "user" or turns[-2][0] != "assistant":
        return
    if not any(b.get("type") == "tool_result" for b in turns[-1][2]):
        return
    _, i, blocks = turns[-2]
    first = blocks[0].get("type") if blocks else None
    if blocks and first not in ("thinking", "redacted_thinking"):
        raise Rejected(
            f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
            f"found `{first}`. When `thinking` is enabled, a final `assistant` message must "
            "start with a thinking block (preceeding the lastmost set of `tool_use` and "
            "`tool_result` blocks). We recommend you include thinking blocks from previous "
            "turns. To avoid this requirement, disable `thinking`."
        )


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def _check_tool_pairs(messages: list[dict[str, Any]]) -> None:
    """Every tool_result answers a tool_use of the turn before; every tool_use is answered."""
    turns = _merged_turns(messages)
    for t, (role, start, blocks) in enumerate(turns):
        results = [b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"]
        if results:
            previous = turns[t - 1] if t else None
            asked = _tool_use_ids(previous[2]) if previous and previous[0] == "assistant" else []
            for k, block in enumerate(blocks):
                if block.get("type") == "tool_result" and block["tool_use_id"] not in asked:
                    raise Rejected(
                        f"messages.{start}.content.{k}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {block['tool_use_id']}. Each `tool_result` "
                        "block must have a corresponding `tool_use` block in the previous "
                        "message."
                    )
        asked = _tool_use_ids(blocks) if role == "assistant" else []
        if not asked or t + 1 == len(turns):
            continue
        following = turns[t + 1][2]
        answered = {b.get("tool_use_id") for b in following if b.get("type") == "tool_result"}
        missing = [a for a in asked if a not in answered]
        if missing:
            raise Rejected(
                f"messages.{start}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        leading = 0
        while leading < len(following) and following[leading].get("type") == "tool_result":
            leading += 1
        if leading < len(answered):
            raise Rejected(
                f"messages.{turns[t + 1][1]}: Did not find {len(answered)} `tool_result` "
                "block(s) at the beginning of this message. Messages following `tool_use` "
                "blocks must begin with a matching number of `tool_result` blocks."
            )


def _merged_turns(messages: list[dict[str, Any]]) -> list[tuple[str, int, list[dict[str, Any]]]]:
    """Consecutive messages of one role as one turn: (role, first index, blocks)."""
    turns: list[tuple[str, int, list[dict[str, Any]]]] = []
    for i, message in enumerate(messages):
        if turns and turns[-1][0] == message["role"]:
            turns[-1][2].extend(_blocks(message))
        else:
            turns.append((message["role"], i, _blocks(message)))
    return turns


def _tool_use_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["id"] for b in blocks if b.get("type") == "tool_use"]


def _check_sampling(body: dict[str, Any]) -> None:
    for name, high in (("temperature", 1), ("top_p", 1)):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Rejected(f"{name}: Input should be a valid number, got {json_type(value)}")
        if not 0 <= value <= high:
            raise Rejected(f"{name}: Input should be between 0 and {high}, got {value}")
    if _thinking_type(body) == "enabled":
        temperature = body.get("temperature")
        if temperature is not None and temperature != 1:
            raise Rejected(
                f"`temperature` may only be set to 1 when thinking is enabled, got {temperature}"
            )
    stops = body.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
    ):
        raise Rejected("stop_sequences: Input should be a valid list of strings")
