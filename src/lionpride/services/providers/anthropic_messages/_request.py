"""The canonical request (OpenAI Chat Completions) as a Messages API request.

Leading ``system``/``developer`` messages become ``system``; a system message later in the
conversation goes directly behind the user turn it comes with: a ``{"role": "system"}`` entry
for models that take one there (Claude 4.8 on, as recorded), the same text at the end of that
user turn for older ones. Turns of one role merge;
assistant ``tool_calls`` become ``tool_use`` blocks (``input`` a dict) and ``tool`` messages
``tool_result`` blocks in one user turn; ``image_url`` and ``file`` parts become ``image`` and
``document`` blocks. Native blocks, native tools and native parameters pass unchanged, so a
request already in the Messages format comes out as it went in.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lionpride import errors
from lionpride.services.providers import canonical

__all__ = ["STRUCTURED_OUTPUT_TOOL", "messages_request"]

PROVIDER = "anthropic"

#: The tool a model without native structured output is made to call with its answer; the
#: normalizer reads that call back as the answer's text.
STRUCTURED_OUTPUT_TOOL = "lionpride_structured_output"

#: ``max_tokens`` sent when the request does not say (the API requires it).
DEFAULT_MAX_TOKENS = 4096

#: The smallest thinking budget the API takes.
_MIN_BUDGET = 1024

#: Thinking budgets for ``reasoning_effort`` on models that take a budget, not an effort.
_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}

_GENERATION = re.compile(
    r"claude-(?:(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?|(\d+)(?:-(\d{1,2}))?-(?:opus|sonnet|haiku))"
    r"(?:-|@|$)"
)


def _generation(model: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a Claude model name; ``None`` for a name not of that form."""
    match = _GENERATION.search(model)
    if match is None:
        return None
    major, minor = match.group(1) or match.group(3), match.group(2) or match.group(4)
    return int(major), int(minor or 0)


def _adaptive(model: str) -> bool:
    """Whether the model thinks by effort (``thinking: adaptive``) rather than by budget."""
    generation = _generation(model)
    return generation is None or generation >= (4, 6)


def _inline_system(model: str) -> bool:
    """Whether the model takes a ``{"role": "system"}`` entry behind a user turn (Claude 4.8
    and later; the recordings show ``claude-opus-4-8`` taking one)."""
    generation = _generation(model)
    return generation is None or generation >= (4, 8)


def _native_structured(model: str) -> bool:
    """Whether the model has native structured output (``output_config.format``)."""
    generation = _generation(model)
    return generation is None or generation >= (4, 5) or generation == (4, 1)


def messages_request(request: dict[str, Any]) -> dict[str, Any]:
    """The Messages API request for a canonical (or native) ``request``.

    Raises:
        ValidationError: A parameter or content part the Messages API has no equivalent for.
    """
    out = dict(request)
    model = str(out.get("model") or "")
    messages = out.get("messages")
    if isinstance(messages, list):
        system, out["messages"] = _turns(messages, _inline_system(model))
        if messages and not out["messages"]:
            raise errors.ValidationError(
                "anthropic: messages holds no user or assistant turn (its system messages "
                "became the system prompt)"
            )
        if system:
            native = out.get("system")
            out["system"] = [*_blocks(native), *_blocks(system)] if native else system
    canonical.drop_unsupported(out, _NO_EQUIVALENT, PROVIDER, _AS_IF_ABSENT)
    if (budget := out.pop("max_completion_tokens", None)) is not None:
        out.setdefault("max_tokens", budget)
    if (stop := out.pop("stop", None)) is not None:
        out["stop_sequences"] = canonical.stop_list(stop)
    if (user := out.pop("user", None)) is not None:
        out["metadata"] = {**(out.get("metadata") or {}), "user_id": user}
    if (n := out.pop("n", None)) not in (None, 1):
        raise canonical.no_equivalent("n", PROVIDER, f"it answers once per request, got n={n!r}")
    if isinstance(tools := out.get("tools"), list):
        strict = _native_structured(model)
        out["tools"] = [_tool(tool, strict) for tool in tools]
    if (choice := canonical.choice_of(out.get("tool_choice"))) is not None:
        out["tool_choice"] = _tool_choice(*choice)
    if out.pop("parallel_tool_calls", None) is False:
        out["tool_choice"] = {**(out.get("tool_choice") or {"type": "auto"})}
        out["tool_choice"]["disable_parallel_tool_use"] = True
    if (fmt := out.pop("response_format", None)) is not None:
        _structured(out, fmt, model)
    if (effort := out.pop("reasoning_effort", None)) is not None and "thinking" not in out:
        _thinking(out, str(effort), model)
    return out


#: Canonical parameters the Messages API has nothing for.
_NO_EQUIVALENT = canonical.OPENAI_ONLY | {
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
}

#: Values of those that ask for nothing (the API's own behaviour): sent as if absent.
_AS_IF_ABSENT: dict[str, Any] = {"presence_penalty": 0, "frequency_penalty": 0, "logprobs": False}


def _turns(
    messages: list[Any], inline: bool
) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """The leading system prompt and the user/assistant turns of canonical ``messages``.

    A later system message goes directly behind the user turn it comes with: as a
    ``{"role": "system"}`` entry where the model takes one (``inline``), else as text at the
    end of that user turn.
    """
    system: list[Any] = []  # the leading system messages' contents
    turns: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []  # later system messages, placed behind a user turn
    for role, content, msg in canonical.read_messages(messages, PROVIDER):
        if role in ("system", "developer"):
            if turns:
                waiting.append({"role": "system", "content": content})
            else:
                system.append(content)
            continue
        if role == "assistant":
            answer = _assistant(msg)
            if not answer:
                continue  # an empty answer: the API takes no empty turn, and it says nothing
            if waiting and turns[-1].get("role") == "user":
                _place(turns, waiting, inline)
                waiting = []
            _add(turns, "assistant", answer)
        elif role == "user":
            _add(turns, "user", _parts(content))
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": msg.get("tool_call_id"),
                "content": _parts(content),
            }
            _add(turns, "user", [result])
        else:
            turns.append(msg)  # not a message, or a role the API may know: it answers for it
    if waiting:
        _place(turns, waiting, inline)
    return _system_prompt(system), turns


def _system_prompt(contents: list[Any]) -> str | list[dict[str, Any]]:
    """The leading system messages as one text, or as their text blocks when a block carries
    more than its text (``cache_control``), which one text would lose."""
    blocks = [
        block
        for content in contents
        for block in _blocks(content)
        if isinstance(block, dict) and block.get("type") == "text"
    ]
    if any(block.keys() - {"type", "text"} for block in blocks):
        return blocks
    return "\n\n".join(canonical.text_of(content) for content in contents)


def _place(turns: list[dict[str, Any]], waiting: list[dict[str, Any]], inline: bool) -> None:
    """Put later system messages behind the last turn (a user turn, but for a conversation
    that ends with them behind an assistant turn)."""
    if inline:
        turns += waiting
        return
    for msg in waiting:
        _add(turns, "user", _parts(msg["content"]))


def _add(turns: list[dict[str, Any]], role: str, content: Any) -> None:
    """Append a turn, merged into the last one when that has the same role."""
    last = turns[-1] if turns else None
    if last is None or last.get("role") != role:
        turns.append({"role": role, "content": content})
        return
    last["content"] = [*_blocks(last["content"]), *_blocks(content)]


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content or ())


def _assistant(msg: dict[str, Any]) -> Any:
    """An assistant message's content: replayed thinking, text, then ``tool_use`` blocks."""
    content = msg.get("content")
    calls = canonical.tool_calls_of(msg)
    state = canonical.own_state(msg, PROVIDER)
    if not calls and state is None and isinstance(content, str):
        return content
    blocks: list[Any] = list(state.get("thinking") or ()) if state is not None else []
    for part in _blocks(content):
        if isinstance(part, dict) and part.get("type") == "refusal":
            blocks.append({"type": "text", "text": part.get("refusal", "")})
        else:
            blocks.append(part)
    for call in calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": call["function"].get("name"),
                "input": canonical.call_arguments(call),
            }
        )
    return blocks


def _parts(content: Any) -> Any:
    """User content: a string as it is; OpenAI parts as blocks, native blocks unchanged."""
    if not isinstance(content, list):
        return content
    return [_part(part) for part in content]


def _part(part: Any) -> Any:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "image_url":
        return {"type": "image", "source": _source(canonical.image_url_of(part), "image_url")}
    if kind == "file":
        file = canonical.file_of(part)
        data = file.get("file_data")
        if not isinstance(data, str):
            raise canonical.no_equivalent(
                "file.file_id", PROVIDER, "give the document's bytes as file.file_data"
            )
        if not data.startswith("data:"):
            data = f"data:application/pdf;base64,{data}"
        document: dict[str, Any] = {"type": "document", "source": _source(data, "file")}
        if file.get("filename"):
            document["title"] = file["filename"]
        return document
    if kind == "input_audio":
        raise canonical.no_equivalent("input_audio content", PROVIDER)
    return part


def _source(url: str, part: str) -> dict[str, Any]:
    if not url:
        raise errors.ValidationError(f"an {part} part needs a URL")
    inline = canonical.data_url(url)
    if inline is None:
        return {"type": "url", "url": url}
    return {"type": "base64", "media_type": inline[0], "data": inline[1]}


def _tool(tool: Any, strict: bool) -> Any:
    """An OpenAI function tool as a Messages API tool (with the ``cache_control`` the tool
    carries beside its function, a cache breakpoint); a native tool unchanged."""
    function = canonical.function_of(tool)
    if function is None:
        return tool
    out = canonical.function_name_and_description(function)
    out["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    if tool.get("cache_control") is not None:
        out["cache_control"] = tool["cache_control"]
    if strict and function.get("strict"):
        out["strict"] = True
        out["input_schema"] = _closed(out["input_schema"], constrained=True)
    return out


def _tool_choice(mode: str, name: str | None) -> dict[str, Any]:
    if mode == "function":
        return {"type": "tool", "name": name}
    return {"type": {"required": "any"}.get(mode, mode)}


def _structured(out: dict[str, Any], fmt: Any, model: str) -> None:
    """``response_format`` as native structured output, or as a tool the model must call."""
    spec = canonical.json_schema_of(fmt, PROVIDER)
    if spec is None:
        return
    if not spec:
        raise canonical.no_equivalent(
            "response_format json_object", PROVIDER, "give a json_schema response_format"
        )
    if _native_structured(model):
        config = {**(out.get("output_config") or {})}
        schema = _closed(spec["schema"], constrained=True)
        config["format"] = {"type": "json_schema", "schema": schema}
        out["output_config"] = config
        return
    tool = {
        "name": STRUCTURED_OUTPUT_TOOL,
        "description": "Give the answer as this tool's input.",
        "input_schema": _closed(spec["schema"], constrained=False),
    }
    out["tools"] = [*(out.get("tools") or ()), tool]
    out["tool_choice"] = {"type": "tool", "name": STRUCTURED_OUTPUT_TOOL}


#: Limits that constrained decoding (native structured output, strict tools) cannot enforce:
#: the API refuses a schema with them ("property 'minimum' is not supported").
_UNENFORCED = frozenset(
    {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
     "maxLength", "maxItems", "uniqueItems", "minProperties", "maxProperties"}
)  # fmt: skip
#: Where a schema holds further schemas: one, a map of them, or a list of them.
_SUBSCHEMA = ("items", "not", "additionalProperties", "contains")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")


def _closed(schema: Any, *, constrained: bool) -> Any:
    """The schema with ``additionalProperties: false`` on every object that does not say
    (structured output requires closed objects).

    For constrained decoding (``constrained``), the limits it cannot enforce move into the
    schema's description, where the model still reads them (a pydantic ``response_format``
    is validated against them on the way back).
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _closed(sub, constrained=constrained) for name, sub in value.items()}
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            out[key] = [_closed(sub, constrained=constrained) for sub in value]
        elif key in _SUBSCHEMA:
            out[key] = _closed(value, constrained=constrained)
        elif constrained and (key in _UNENFORCED or (key == "minItems" and value not in (0, 1))):
            limits[key] = value
        else:
            out[key] = value
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if limits:
        note = "{" + ", ".join(f"{key}: {json.dumps(value)}" for key, value in limits.items()) + "}"
        described = out.get("description")
        out["description"] = f"{described}\n\n{note}" if described else note
    return out


def _thinking(out: dict[str, Any], effort: str, model: str) -> None:
    """``reasoning_effort`` as adaptive thinking with an effort, or as a thinking budget.

    Raises:
        ValidationError: A ``tool_choice`` that forces a tool (or a ``response_format`` made
            a forced tool), or a ``max_tokens`` with no room for the smallest budget: the
            Messages API refuses thinking with either.
    """
    if effort == "none":
        return
    choice = out.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        forcing = "tool_choice"
        if choice.get("name") == STRUCTURED_OUTPUT_TOOL:
            forcing = f"response_format (a forced tool for {model})"
        raise errors.ValidationError(
            f"anthropic: reasoning_effort {effort!r} cannot go with a {forcing} that forces "
            "a tool call: the Messages API refuses thinking when tool_choice forces tool use"
        )
    if _adaptive(model):
        out["thinking"] = {"type": "adaptive"}
        config = {**(out.get("output_config") or {})}
        config["effort"] = "low" if effort == "minimal" else effort
        out["output_config"] = config
        return
    budget = _BUDGETS.get(effort)
    if budget is None:
        raise canonical.unknown_effort(effort, ["none", *_BUDGETS], PROVIDER, model)
    limit = out.get("max_tokens") or DEFAULT_MAX_TOKENS
    if limit <= _MIN_BUDGET:
        raise errors.ValidationError(
            f"anthropic: reasoning_effort {effort!r} needs max_tokens above {_MIN_BUDGET} for "
            f"{model} (thinking takes a budget of at least {_MIN_BUDGET} tokens, within "
            f"max_tokens), got max_tokens={limit}"
        )
    if budget >= limit:
        budget = max(_MIN_BUDGET, limit // 2)
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
