"""The bodies the FakeProvider writes, in the OpenAI, Anthropic and Gemini wire formats.

Written from the providers' public documentation and the recordings in ``wire/``, and on
purpose sharing nothing with the client's provider modules (DESIGN D11): a misreading of a
format in one must not be able to hide in the other. Each function writes a
:class:`~lionpride.testing._plan.Plan` or an error in one provider's shape.
"""

from __future__ import annotations

import json
import math
import time
from http import HTTPStatus
from typing import Any

from lionpride.testing._plan import Format, Plan, arguments_json, tool_call_tokens

__all__ = ["error_body", "rate_limit_body", "render_plain", "render_stream"]

_COMPACT = (",", ":")

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def render_plain(plan: Plan) -> bytes:
    """The whole reply as one JSON body (for Gemini non-SSE streams, a JSON array)."""
    if plan.fmt == "openai":
        obj: Any = _openai_plain(plan)
    elif plan.fmt == "anthropic":
        obj = _anthropic_plain(plan)
    elif plan.stream:
        obj = _gemini_chunks(plan)
    else:
        obj = _gemini_plain(plan)
    return json.dumps(obj, ensure_ascii=False).encode()


def render_stream(plan: Plan) -> list[bytes]:
    """The reply as SSE events, one ``bytes`` per event, in the provider's framing."""
    if plan.fmt == "openai":
        return _openai_stream(plan)
    if plan.fmt == "anthropic":
        return _anthropic_stream(plan)
    return [_sse(chunk, b"\r\n\r\n") for chunk in _gemini_chunks(plan)]


def error_body(
    fmt: Format,
    status: int,
    message: str | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    """An error body in the provider's shape for ``status``.

    ``param`` and ``code`` fill OpenAI's fields of those names (a ``code`` given here wins
    over the one the status implies); the other formats have no such fields.
    """
    message = message or f"{_phrase(status)} (scripted by FakeProvider)"
    obj: dict[str, Any]
    if fmt == "anthropic":
        kind = _ANTHROPIC_ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        error = {"type": kind, "message": message}
        obj = {"type": "error", "error": error, "request_id": "req_fake"}
    elif fmt == "gemini":
        obj = {"error": {"code": status, "message": message, "status": _gemini_status(status)}}
    else:
        kind, implied = _openai_error_kind(status)
        fields = {"message": message, "type": kind, "param": param, "code": code or implied}
        obj = {"error": fields}
    return json.dumps(obj).encode()


def rate_limit_body(fmt: Format, kind: str, message: str, *, retry_after: int) -> bytes:
    """A 429 body for the provider-side ``kind`` limit (requests or tokens)."""
    obj: dict[str, Any]
    if fmt == "anthropic":
        error = {"type": "rate_limit_error", "message": message}
        obj = {"type": "error", "error": error, "request_id": "req_fake"}
    elif fmt == "gemini":
        retry_info = {
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": f"{retry_after}s",
        }
        obj = {
            "error": {
                "code": 429,
                "message": message,
                "status": "RESOURCE_EXHAUSTED",
                "details": [retry_info],
            }
        }
    else:
        obj = {
            "error": {
                "message": message,
                "type": kind,
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    return json.dumps(obj).encode()


def _fragments(text: str, parts: int = 3) -> list[str]:
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _sse(obj: Any, end: bytes = b"\n\n") -> bytes:
    return b"data: " + json.dumps(obj, separators=_COMPACT, ensure_ascii=False).encode() + end


# -- OpenAI ---------------------------------------------------------------------------------


def _openai_plain(plan: Plan) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": plan.text if plan.text or not plan.tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if plan.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_fake_{plan.seq}_{i}",
                "type": "function",
                "function": {"name": call["name"], "arguments": arguments_json(call)},
            }
            for i, call in enumerate(plan.tool_calls)
        ]
    choice = {"index": 0, "message": message, "logprobs": None}
    choice["finish_reason"] = plan.finish_reason
    return {
        "id": f"chatcmpl-fake-{plan.seq}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": plan.model,
        "choices": [choice],
        "usage": plan.usage(),
        "system_fingerprint": None,
    }


def _openai_stream(plan: Plan) -> list[bytes]:
    head = {
        "id": f"chatcmpl-fake-{plan.seq}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": plan.model,
        "system_fingerprint": None,
    }
    # With include_usage every chunk carries "usage": null until the final usage chunk.
    tail: dict[str, Any] = {"usage": None} if plan.include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**head, "choices": [choice], **tail})

    first = "" if plan.text or not plan.tool_calls else None
    events = [chunk({"role": "assistant", "content": first, "refusal": None})]
    events += [chunk({"content": piece}) for piece in plan.pieces]
    for i, call in enumerate(plan.tool_calls):
        opening = {
            "index": i,
            "id": f"call_fake_{plan.seq}_{i}",
            "type": "function",
            "function": {"name": call["name"], "arguments": ""},
        }
        events.append(chunk({"tool_calls": [opening]}))
        events += [
            chunk({"tool_calls": [{"index": i, "function": {"arguments": fragment}}]})
            for fragment in _fragments(arguments_json(call))
        ]
    events.append(chunk({}, plan.finish_reason))
    if plan.include_usage:
        events.append(_sse({**head, "choices": [], "usage": plan.usage()}))
    events.append(b"data: [DONE]\n\n")
    return events


def _openai_error_kind(status: int) -> tuple[str, str | None]:
    if status == 401:
        return "invalid_request_error", "invalid_api_key"
    if status == 404:
        return "invalid_request_error", "model_not_found"
    if status == 429:
        return "requests", "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None
    return "invalid_request_error", None


# -- Anthropic ------------------------------------------------------------------------------


def _anthropic_plain(plan: Plan) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": plan.text}] if plan.text else []
    content += [
        {
            "type": "tool_use",
            "id": f"toolu_fake_{plan.seq}_{i}",
            "name": call["name"],
            "input": call.get("arguments") or {},
        }
        for i, call in enumerate(plan.tool_calls)
    ]
    return {
        "id": f"msg_fake_{plan.seq}",
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": plan.finish_reason,
        "stop_sequence": None,
        "usage": plan.usage(),
    }


_START_ONLY_USAGE = ("cache_creation", "service_tier")
_PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def _event(name: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps({"type": name, **data}, separators=_COMPACT, ensure_ascii=False)
    return f"event: {name}\ndata: {payload}\n\n".encode()


def _anthropic_stream(plan: Plan) -> list[bytes]:
    usage = plan.usage()
    # Like the real service: message_start carries a placeholder output count, message_delta
    # the final cumulative usage.
    message: dict[str, Any] = {
        "id": f"msg_fake_{plan.seq}",
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events = [_event("message_start", {"message": message})]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if plan.text:
        deltas = [{"type": "text_delta", "text": piece} for piece in plan.pieces]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for i, call in enumerate(plan.tool_calls):
        opening = {"type": "tool_use", "id": f"toolu_fake_{plan.seq}_{i}", "name": call["name"]}
        fragments = ["", *_fragments(arguments_json(call))]
        deltas = [{"type": "input_json_delta", "partial_json": f} for f in fragments]
        blocks.append(({**opening, "input": {}}, deltas))
    for index, (block, deltas) in enumerate(blocks):
        events.append(_event("content_block_start", {"index": index, "content_block": block}))
        if index == 0:
            events.append(_PING)
        events += [_event("content_block_delta", {"index": index, "delta": d}) for d in deltas]
        events.append(_event("content_block_stop", {"index": index}))
    if not blocks:
        events.append(_PING)
    delta = {"stop_reason": plan.finish_reason, "stop_sequence": None}
    # The final counts, without the sub-objects that only message_start carries.
    final = {k: v for k, v in usage.items() if k not in _START_ONLY_USAGE}
    events.append(_event("message_delta", {"delta": delta, "usage": final}))
    events.append(_event("message_stop", {}))
    return events


# -- Gemini ---------------------------------------------------------------------------------


def _gemini_response(
    plan: Plan, parts: list[dict[str, Any]], usage: dict[str, Any], *, last: bool
) -> dict[str, Any]:
    content: dict[str, Any] = {"parts": parts, "role": "model"} if parts else {"role": "model"}
    candidate: dict[str, Any] = {"content": content, "index": 0}
    if last:
        candidate["finishReason"] = plan.finish_reason
        if plan.tool_calls and not plan.truncated:
            candidate["finishMessage"] = "Model generated function call(s)."
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": plan.model,
        "responseId": f"fake-{plan.seq}",
    }


def _function_call_parts(plan: Plan) -> list[dict[str, Any]]:
    return [
        {"functionCall": {"name": call["name"], "args": call.get("arguments") or {}}}
        for call in plan.tool_calls
    ]


def _gemini_plain(plan: Plan) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": plan.text}] if plan.text else []
    parts += _function_call_parts(plan)
    return _gemini_response(plan, parts, plan.usage(), last=True)


def _gemini_chunks(plan: Plan) -> list[dict[str, Any]]:
    steps: list[tuple[list[dict[str, Any]], int]] = [
        ([{"text": piece}], len(piece.split())) for piece in plan.pieces
    ]
    if plan.tool_calls:
        calls_tokens = sum(tool_call_tokens(call) for call in plan.tool_calls)
        steps.append((_function_call_parts(plan), calls_tokens))
    if not steps:
        steps.append(([], 0))
    chunks: list[dict[str, Any]] = []
    produced = 0
    for i, (parts, tokens) in enumerate(steps):
        last = i == len(steps) - 1
        produced += tokens
        # usageMetadata is in every chunk and cumulative; the last chunk has the final numbers.
        usage = (
            plan.usage()
            if last
            else {
                "promptTokenCount": plan.input_tokens,
                "candidatesTokenCount": produced,
                "totalTokenCount": plan.input_tokens + produced,
                "promptTokensDetails": plan.prompt_details(),
            }
        )
        chunks.append(_gemini_response(plan, parts, usage, last=last))
    return chunks


def _gemini_status(status: int) -> str:
    if status in _GEMINI_STATUSES:
        return _GEMINI_STATUSES[status]
    return "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"


def _phrase(status: int) -> str:
    if status == 529:
        return "Overloaded"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
