"""A ``GenerateContentResponse`` as a :class:`NormalizedResponse`: text, thoughts, calls, usage.

The stream assembler merges the chunks into one such body and hands it to
:func:`normalize_generate_content`, so a streamed and a whole answer normalize alike.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from lionpride import errors
from lionpride.services.types.response import (
    NormalizedResponse,
    ToolCall,
    Usage,
    normalized,
    usage_of,
)

__all__ = ["FINISH_REASONS", "gemini_usage", "made_up_call_id", "normalize_generate_content"]


FINISH_REASONS: dict[str, Literal["stop", "length", "tool_calls", "content_filter", "error"]] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
}


def gemini_usage(raw: dict[str, Any] | None) -> Usage | None:
    """Normalize ``usageMetadata``: thoughts count as output (and as reasoning)."""
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("promptTokenCount") or 0
    thoughts = raw.get("thoughtsTokenCount") or 0
    out = (raw.get("candidatesTokenCount") or 0) + thoughts
    return usage_of(
        {
            "input_tokens": prompt,
            "output_tokens": out,
            "total_tokens": raw.get("totalTokenCount") or prompt + out,
            "cached_tokens": raw.get("cachedContentTokenCount") or 0,
            "reasoning_tokens": thoughts,
        }
    )


def made_up_call_id() -> str:
    """An id for a function call the API gave none (most Gemini models give none)."""
    return f"call_{secrets.token_hex(12)}"


def normalize_generate_content(
    raw: Any, made_up: frozenset[str] = frozenset()
) -> NormalizedResponse:
    """Turn a GenerateContentResponse into a :class:`NormalizedResponse`.

    A function call without an id gets one made up, so that the canonical tool loop can
    answer it by id; ``metadata["provider_state"]`` notes which ids the API issued (only
    those are sent back) and the thought signatures the next turn must carry. ``made_up``
    names ids already made up by the stream assembler.
    """
    if not isinstance(raw, dict):
        raise errors.InvalidResponseError("gemini: expected a JSON object", status_code=200)
    if "error" in raw and "candidates" not in raw:
        err = raw["error"] if isinstance(raw["error"], dict) else {"message": str(raw["error"])}
        code = err.get("code")
        raise errors.error_for_status(
            code if isinstance(code, int) and code >= 400 else 500,
            str(err.get("message")),
            body=raw,
            provider="gemini",
        )
    candidates = raw.get("candidates") or [{}]
    cand = candidates[0]
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    state: dict[str, Any] = {}
    for part in (cand.get("content") or {}).get("parts") or ():
        if "functionCall" in part:
            fc = part["functionCall"]
            call_id = fc.get("id")
            issued = bool(call_id) and call_id not in made_up
            call_id = call_id or made_up_call_id()
            calls.append(ToolCall(id=call_id, name=fc["name"], arguments=fc.get("args") or {}))
            noted = {"issued": issued}
            if part.get("thoughtSignature"):
                noted["signature"] = part["thoughtSignature"]
            state.setdefault("calls", {})[call_id] = noted
        elif "text" in part:
            (thoughts if part.get("thought") else text).append(part["text"])
            if part.get("thoughtSignature") and not part.get("thought"):
                state["text_signature"] = part["thoughtSignature"]
    native = cand.get("finishReason")
    metadata: dict[str, Any] = {"native_finish_reason": native}
    if raw.get("usageMetadata") is not None:
        metadata["usage"] = raw["usageMetadata"]
    for key, name in (("modelVersion", "model"), ("responseId", "id")):
        if raw.get(key) is not None:
            metadata[name] = raw[key]
    if thoughts:
        metadata["reasoning"] = "".join(thoughts)
    if state:
        metadata["provider_state"] = {"provider": "gemini", **state}
    if raw.get("promptFeedback"):
        metadata["prompt_feedback"] = raw["promptFeedback"]
    finish = FINISH_REASONS.get(native) if native else None
    block = (raw.get("promptFeedback") or {}).get("blockReason")
    if finish is None and block:
        # A blocked prompt has no candidates at all: it is filtered, not an empty success.
        metadata["block_reason"] = block
        finish = "content_filter"
    if calls and finish == "stop":
        finish = "tool_calls"
    return normalized(
        data="".join(text),
        tool_calls=calls,
        usage=gemini_usage(raw.get("usageMetadata")),
        finish_reason=finish,
        metadata=metadata,
        raw_response=raw,
    )
