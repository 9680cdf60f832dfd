"""The OpenAI Responses API (``POST /v1/responses``) as the FakeProvider writes it.

Written from OpenAI's API reference and the recordings in ``wire/api/``, sharing nothing with
the client's ``oai_responses`` module (DESIGN D11). A reply is settled from the request in a
:class:`ResponsesPlan` (text cut to ``max_output_tokens``, function calls when scripted or
forced by ``tool_choice``, a reasoning item when ``reasoning`` asks for one, JSON that fits a
``text.format`` schema), then written as one JSON body or as the typed event stream.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from lionpride.testing._plan import split_text

__all__ = [
    "ReplyOptions",
    "ResponsesPlan",
    "check_responses_request",
    "plan_responses",
    "render_responses_plain",
    "render_responses_stream",
    "responses_input_tokens",
    "sample_for_schema",
]

_COMPACT = (",", ":")
_SUMMARY = "**Weighing the request**\n\nFakeProvider thought about the question briefly."
_REASONING_TOKENS = 8


@dataclass(frozen=True, slots=True)
class ReplyOptions:
    """What the FakeProvider's settings and a scripted reply ask of a generated answer.

    Attributes:
        text: The scripted text (``None``: the default text, or none beside a function call).
        default_text: The provider's default reply text.
        tool_calls: Scripted calls (``None``: a call when ``tool_choice`` forces one).
        usage: Native usage numbers that replace the computed ones.
        stream_chunks: Pieces a streamed text comes in.
        seq: The reply's sequence number, used in its ids.
    """

    text: str | None
    default_text: str
    tool_calls: list[dict[str, Any]] | None
    usage: dict[str, Any] | None
    stream_chunks: int
    seq: int


@dataclass(slots=True)
class ResponsesPlan:
    """What one generated Responses reply says."""

    model: str
    seq: int
    text: str | None
    pieces: list[str]
    calls: list[dict[str, Any]]
    reasoning: bool
    summary: bool
    encrypted: bool
    truncated: bool
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    usage_override: dict[str, Any] | None
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``completed``, or ``incomplete`` when the output limit cut the text."""
        return "incomplete" if self.truncated else "completed"

    def usage(self) -> dict[str, Any]:
        """Usage in the Responses shape, with any override applied."""
        native: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }
        if self.usage_override:
            native.update(self.usage_override)
        return native


def responses_input_tokens(request: dict[str, Any]) -> int:
    """Input tokens of a Responses request: a token per four characters of its text."""
    chars = _chars(request.get("instructions"))
    items = request.get("input")
    if isinstance(items, str):
        chars += len(items)
    elif isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                chars += _chars(item.get("content")) + _chars(item.get("output"))
                chars += _chars(item.get("arguments"))
    return math.ceil(chars / 4)


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(
            len(part["text"])
            for part in value
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


def check_responses_request(request: Any) -> str | None:
    """What the live API would refuse in this request (the message), or ``None``."""
    if not isinstance(request, dict):
        return "The request body must be a JSON object."
    if not isinstance(request.get("model"), str) or not request["model"]:
        return "Missing required parameter: 'model'."
    items = request.get("input")
    if items is None and "previous_response_id" not in request and "prompt" not in request:
        return "Missing required parameter: 'input'."
    if items is not None and not isinstance(items, str | list):
        return "Invalid type for 'input': expected a string or an array of input items."
    problem = _tools_problem(request.get("tools"))
    if problem is not None or not isinstance(items, list):
        return problem
    calls = {
        i.get("call_id") for i in items if isinstance(i, dict) and i.get("type") == "function_call"
    }
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            return f"Invalid type for 'input[{n}]': expected an object."
        kind = item.get("type")
        problem = _parts_problem(item.get("content"), n) if "role" in item else None
        if problem is not None:
            return problem
        if (
            kind == "function_call_output"
            and item.get("call_id") not in calls
            and "previous_response_id" not in request
        ):
            return (
                f"No tool call found for function call output with call_id {item.get('call_id')}."
            )
        if kind == "reasoning" and n == len(items) - 1:
            return (
                f"Item '{item.get('id')}' of type 'reasoning' was provided without its "
                "required following item."
            )
    return None


#: The content part types a message item may hold, in the order the live API lists them.
_PART_TYPES = (
    "input_text", "input_image", "output_text", "refusal", "input_file",
    "computer_screenshot", "summary_text",
)  # fmt: skip


def _parts_problem(content: Any, n: int) -> str | None:
    """The live API's refusal of a message item's content part of an unknown type."""
    for m, part in enumerate(content if isinstance(content, list) else ()):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _PART_TYPES:
            listed = ", ".join(f"'{t}'" for t in _PART_TYPES[:-1])
            return (
                f"Invalid value: {kind!r}. Supported values are: {listed}, and "
                f"'{_PART_TYPES[-1]}'. (input[{n}].content[{m}].type)"
            )
    return None


def _tools_problem(tools: Any) -> str | None:
    """The live API's refusal of a function tool: not flat (no ``name``), or marked strict
    with a schema strict mode cannot take."""
    for n, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            return f"Missing required parameter: 'tools[{n}].name'."
        if tool.get("strict") is True:
            problem = _strict_problem(tool.get("parameters"), ())
            if problem is not None:
                return f"Invalid schema for function '{name}': {problem}"
    return None


def _strict_problem(schema: Any, context: tuple[str, ...]) -> str | None:
    """Where a JSON schema breaks strict mode's rules: every object closed
    (``additionalProperties: false``) and every property required."""
    if not isinstance(schema, dict):
        return None
    where = f"In context=({', '.join(repr(c) for c in context)})"
    props = schema.get("properties")
    if schema.get("type") == "object" or isinstance(props, dict):
        if schema.get("additionalProperties") is not False:
            return f"{where}, 'additionalProperties' is required to be supplied and to be false."
        missing = [k for k in props or {} if k not in (schema.get("required") or ())]
        if missing:
            return (
                f"{where}, 'required' is required to be supplied and to be an array including "
                f"every key in properties. Missing '{missing[0]}'."
            )
        for key, sub in (props or {}).items():
            problem = _strict_problem(sub, (*context, "properties", key))
            if problem is not None:
                return problem
    return _strict_problem(schema.get("items"), (*context, "items"))


def sample_for_schema(schema: Any) -> Any:
    """A small value that fits a JSON schema (required properties, first enum value)."""
    if not isinstance(schema, dict):
        return "example"
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return sample_for_schema(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {name: sample_for_schema(props.get(name)) for name in required}
    if kind == "array":
        return [sample_for_schema(schema.get("items"))]
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


def _forced_calls(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The call a ``tool_choice`` that forces a function asks for (arguments fit its schema)."""
    choice = request.get("tool_choice")
    tools = [t for t in request.get("tools") or () if isinstance(t, dict)]
    functions = {t.get("name"): t for t in tools if t.get("type") == "function"}
    name = None
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
    elif choice == "required" and functions:
        name = next(iter(functions))
    tool = functions.get(name)
    if tool is None:
        return []
    return [{"name": name, "arguments": sample_for_schema(tool.get("parameters"))}]


def _structured_text(request: dict[str, Any]) -> str | None:
    """JSON text for a ``text.format`` of ``json_schema`` or ``json_object``."""
    fmt = (
        (request.get("text") or {}).get("format") if isinstance(request.get("text"), dict) else None
    )
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        return json.dumps(sample_for_schema(fmt.get("schema")), separators=_COMPACT)
    if fmt.get("type") == "json_object":
        return "{}"
    return None


def plan_responses(request: dict[str, Any], options: ReplyOptions) -> ResponsesPlan:
    """Settle the reply to a (checked) Responses request."""
    text = options.text
    calls = list(options.tool_calls) if options.tool_calls is not None else _forced_calls(request)
    structured = _structured_text(request)
    if text is None:
        text = structured if structured is not None else (None if calls else options.default_text)
    reasoning = request.get("reasoning")
    thinks = isinstance(reasoning, dict) and reasoning.get("effort") not in (None, "none")
    include = request.get("include") or ()
    limit = request.get("max_output_tokens")
    truncated = False
    if text is not None and isinstance(limit, int):
        words = text.split(" ")
        if len(words) > limit:
            text, truncated = " ".join(words[:limit]), True
    reasoning_tokens = _REASONING_TOKENS if thinks else 0
    output = reasoning_tokens + len((text or "").split())
    output += sum(math.ceil(len(json.dumps(c.get("arguments") or {})) / 4) for c in calls)
    return ResponsesPlan(
        model=str(request.get("model", "fake-model")),
        seq=options.seq,
        text=text,
        pieces=split_text(text, options.stream_chunks) if text else [],
        calls=calls,
        reasoning=thinks,
        summary=thinks and bool(isinstance(reasoning, dict) and reasoning.get("summary")),
        encrypted=thinks and "reasoning.encrypted_content" in include,
        truncated=truncated,
        input_tokens=responses_input_tokens(request),
        output_tokens=output,
        reasoning_tokens=reasoning_tokens,
        usage_override=options.usage,
        request=request,
    )


def _reasoning_item(plan: ResponsesPlan) -> dict[str, Any]:
    item: dict[str, Any] = {"id": f"rs_fake_{plan.seq}", "type": "reasoning", "summary": []}
    if plan.summary:
        item["summary"] = [{"type": "summary_text", "text": _SUMMARY}]
    if plan.encrypted:
        digest = hashlib.sha256(f"{plan.seq}:{plan.model}".encode()).digest()
        item["encrypted_content"] = "gAAAA" + base64.urlsafe_b64encode(digest).decode()
    return item


def _message_item(plan: ResponsesPlan, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    return {
        "id": f"msg_fake_{plan.seq}",
        "type": "message",
        "status": status,
        "content": [part] if status != "in_progress" else [],
        "role": "assistant",
    }


def _call_item(plan: ResponsesPlan, i: int, arguments: str, status: str) -> dict[str, Any]:
    call = plan.calls[i]
    return {
        "id": f"fc_fake_{plan.seq}_{i}",
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": f"call_fake_{plan.seq}_{i}",
        "name": call["name"],
    }


def _arguments(call: dict[str, Any]) -> str:
    return json.dumps(call.get("arguments") or {}, separators=_COMPACT)


def _output(plan: ResponsesPlan) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [_reasoning_item(plan)] if plan.reasoning else []
    if plan.text is not None:
        items.append(_message_item(plan, plan.text, plan.status))
    items += [
        _call_item(plan, i, _arguments(call), "completed") for i, call in enumerate(plan.calls)
    ]
    return items


def _response(plan: ResponsesPlan, *, final: bool) -> dict[str, Any]:
    request = plan.request
    reasoning = request.get("reasoning") if isinstance(request.get("reasoning"), dict) else {}
    return {
        "id": f"resp_fake_{plan.seq}",
        "object": "response",
        "created_at": int(time.time()),
        "status": plan.status if final else "in_progress",
        "background": bool(request.get("background", False)),
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if final and plan.truncated else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": plan.model,
        "output": _output(plan) if final else [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": (reasoning or {}).get("effort"), "summary": None},
        "store": request.get("store", True),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "usage": plan.usage() if final else None,
        "metadata": request.get("metadata") or {},
    }


def render_responses_plain(plan: ResponsesPlan) -> bytes:
    """The whole reply as one JSON body."""
    return json.dumps(_response(plan, final=True), ensure_ascii=False).encode()


class _Events:
    """Typed events, numbered in order (``sequence_number``) as the live API numbers them."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def add(self, kind: str, **data: Any) -> None:
        payload = {"type": kind, **data, "sequence_number": len(self.out)}
        text = json.dumps(payload, separators=_COMPACT, ensure_ascii=False)
        self.out.append(f"event: {kind}\ndata: {text}\n\n".encode())


def render_responses_stream(plan: ResponsesPlan) -> list[bytes]:
    """The reply as typed SSE events, one ``bytes`` per event; no ``[DONE]``."""
    ev = _Events()
    ev.add("response.created", response=_response(plan, final=False))
    ev.add("response.in_progress", response=_response(plan, final=False))
    index = 0
    if plan.reasoning:
        item = _reasoning_item(plan)
        ev.add("response.output_item.added", item={**item, "summary": []}, output_index=index)
        if plan.summary:
            common = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            part = {"type": "summary_text", "text": ""}
            ev.add("response.reasoning_summary_part.added", part=part, **common)
            ev.add("response.reasoning_summary_text.delta", delta=_SUMMARY, **common)
            ev.add("response.reasoning_summary_text.done", text=_SUMMARY, **common)
            part = {**part, "text": _SUMMARY}
            ev.add("response.reasoning_summary_part.done", part=part, **common)
        ev.add("response.output_item.done", item=item, output_index=index)
        index += 1
    if plan.text is not None:
        item_id = f"msg_fake_{plan.seq}"
        at = {"item_id": item_id, "output_index": index, "content_index": 0}
        empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        ev.add(
            "response.output_item.added",
            item=_message_item(plan, "", "in_progress"),
            output_index=index,
        )
        ev.add("response.content_part.added", part=empty, **at)
        for piece in plan.pieces:
            ev.add("response.output_text.delta", delta=piece, logprobs=[], **at)
        ev.add("response.output_text.done", text=plan.text, logprobs=[], **at)
        ev.add("response.content_part.done", part={**empty, "text": plan.text}, **at)
        ev.add(
            "response.output_item.done",
            item=_message_item(plan, plan.text, plan.status),
            output_index=index,
        )
        index += 1
    for i, call in enumerate(plan.calls):
        arguments = _arguments(call)
        item_id = f"fc_fake_{plan.seq}_{i}"
        ev.add(
            "response.output_item.added",
            item=_call_item(plan, i, "", "in_progress"),
            output_index=index,
        )
        size = max(1, math.ceil(len(arguments) / 3))
        for start in range(0, len(arguments), size):
            ev.add(
                "response.function_call_arguments.delta",
                delta=arguments[start : start + size],
                item_id=item_id,
                output_index=index,
            )
        ev.add(
            "response.function_call_arguments.done",
            arguments=arguments,
            item_id=item_id,
            output_index=index,
        )
        ev.add(
            "response.output_item.done",
            item=_call_item(plan, i, arguments, "completed"),
            output_index=index,
        )
        index += 1
    final = "response.incomplete" if plan.truncated else "response.completed"
    ev.add(final, response=_response(plan, final=True))
    return ev.out
