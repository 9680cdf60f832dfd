"""A Messages API body as a :class:`NormalizedResponse`: text, thinking, tool calls, usage.

The stream assembler builds the same body from the events and hands it to
:func:`normalize_message`, so a streamed and a whole answer normalize alike.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from lionpride import errors
from lionpride.services.providers.anthropic_messages._request import STRUCTURED_OUTPUT_TOOL
from lionpride.services.types.response import (
    NormalizedResponse,
    ToolCall,
    Usage,
    normalized,
    usage_of,
)

__all__ = ["ERROR_STATUS", "STOP_REASONS", "anthropic_usage", "normalize_message"]

#: Anthropic error types and the HTTP status each stands for.
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


STOP_REASONS: dict[str, Literal["stop", "length", "tool_calls", "content_filter", "error"]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def anthropic_usage(raw: dict[str, Any] | None) -> Usage | None:
    """Normalize Anthropic usage: cache reads and writes count as input tokens.

    The writes are split by lifetime where the answer says (``cache_creation``'s
    ``ephemeral_1h_input_tokens``); otherwise they are five-minute writes, the default.
    """
    if not isinstance(raw, dict):
        return None
    cache_read = raw.get("cache_read_input_tokens") or 0
    cache_write = raw.get("cache_creation_input_tokens") or 0
    split = raw.get("cache_creation")
    write_1h = (split.get("ephemeral_1h_input_tokens") or 0) if isinstance(split, dict) else 0
    inp = (raw.get("input_tokens") or 0) + cache_read + cache_write
    out = raw.get("output_tokens") or 0
    thinking = (raw.get("output_tokens_details") or {}).get("thinking_tokens") or 0
    return usage_of(
        {
            "input_tokens": inp,
            "output_tokens": out,
            "total_tokens": inp + out,
            "cached_tokens": cache_read,
            "reasoning_tokens": thinking,
            "cache_write_tokens": cache_write,
            "cache_write_1h_tokens": min(write_1h, cache_write),
        }
    )


def normalize_message(raw: Any) -> NormalizedResponse:
    """Turn a Messages API body into a :class:`NormalizedResponse`.

    Text blocks are joined as they come (no separator); thinking text goes to
    ``metadata["reasoning"]``; server-side tool uses to ``metadata["server_tool_calls"]``.
    Thinking blocks, with their signatures, are kept whole in ``metadata["provider_state"]``
    (the next turn sends them back). A call of the structured-output tool is the answer:
    its input becomes the text (any text beside it was a preamble).
    """
    if not isinstance(raw, dict) or raw.get("type") == "error":
        if isinstance(raw, dict) and isinstance(raw.get("error"), dict):
            err = raw["error"]
            status = ERROR_STATUS.get(str(err.get("type")), 500)
            raise errors.error_for_status(
                status, str(err.get("message")), body=raw, provider="anthropic"
            )
        raise errors.InvalidResponseError("anthropic: expected a message object", status_code=200)
    text: list[str] = []
    thinking: list[str] = []
    replayed: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    server_calls: list[dict[str, Any]] = []
    structured: str | None = None
    for block in raw.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text", ""))
        elif kind == "thinking" or kind == "redacted_thinking":
            thinking.append(block.get("thinking", ""))
            replayed.append(block)
        elif kind == "tool_use":
            if block.get("name") == STRUCTURED_OUTPUT_TOOL:
                structured = json.dumps(block.get("input") or {}, ensure_ascii=False)
                continue
            calls.append(
                ToolCall(id=block.get("id"), name=block["name"], arguments=block.get("input") or {})
            )
        elif kind == "server_tool_use":
            server_calls.append({"name": block.get("name"), "arguments": block.get("input")})
    native = raw.get("stop_reason")
    metadata: dict[str, Any] = {"native_finish_reason": native}
    for key in ("model", "id", "usage", "stop_sequence"):
        if raw.get(key) is not None:
            metadata[key] = raw[key]
    if replayed:
        metadata["reasoning"] = "".join(thinking)
        metadata["provider_state"] = {"provider": "anthropic", "thinking": replayed}
    if server_calls:
        metadata["server_tool_calls"] = server_calls
    return normalized(
        data="".join(text) if structured is None else structured,
        tool_calls=calls,
        usage=anthropic_usage(raw.get("usage")),
        finish_reason=STOP_REASONS.get(native) if native else None,
        metadata=metadata,
        raw_response=raw,
    )
