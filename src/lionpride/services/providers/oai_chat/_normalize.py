"""A chat-completion body as a :class:`NormalizedResponse`, and errors inside a 200 body.

The stream assembler builds the same body from the chunks and hands it to
:func:`normalize_chat_completion`, so a streamed and a whole answer normalize alike.
"""

from __future__ import annotations

from typing import Any, Literal

from lionpride import errors
from lionpride.services.providers.common import parse_arguments
from lionpride.services.types.response import (
    NormalizedResponse,
    ToolCall,
    Usage,
    normalized,
    usage_of,
)

__all__ = ["chat_usage", "normalize_chat_completion", "raise_body_error"]


_FINISH: dict[str, Literal["stop", "length", "tool_calls", "content_filter", "error"]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
}


def chat_usage(raw: dict[str, Any] | None) -> Usage | None:
    """Normalize OpenAI-style usage (``prompt_tokens``, details, Mistral's cache field)."""
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens") or 0
    completion = raw.get("completion_tokens") or 0
    cached = (raw.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is None:
        cached = raw.get("num_cached_tokens")
    reasoning = (raw.get("completion_tokens_details") or {}).get("reasoning_tokens")
    return usage_of(
        {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": raw.get("total_tokens") or prompt + completion,
            "cached_tokens": cached or 0,
            "reasoning_tokens": reasoning or 0,
        }
    )


def raise_body_error(raw: dict[str, Any], provider: str) -> None:
    """Raise the typed error for an ``error`` object delivered inside a 200 answer."""
    err = raw.get("error")
    if not err:
        return
    info = err if isinstance(err, dict) else {"message": str(err)}
    status = info.get("status_code") or info.get("code")
    status = status if isinstance(status, int) and status >= 400 else 500
    raise errors.error_for_status(
        status, str(info.get("message") or err), body=raw, provider=provider
    )


_METADATA_KEYS = ("model", "id", "usage", "system_fingerprint", "service_tier")


def _tool_calls(calls: list[dict[str, Any]]) -> list[ToolCall]:
    out = []
    for tc in calls:
        function = tc.get("function") or {}
        out.append(
            ToolCall(
                id=tc.get("id"),
                name=function.get("name", ""),
                arguments=parse_arguments(function.get("arguments")),
            )
        )
    return out


def normalize_chat_completion(raw: Any, provider: str = "openai") -> NormalizedResponse:
    """Turn a chat-completion body into a :class:`NormalizedResponse`."""
    if not isinstance(raw, dict):
        raise errors.InvalidResponseError(
            f"{provider}: expected a JSON object, got {type(raw).__name__}", status_code=200
        )
    if not raw.get("choices"):
        raise_body_error(raw, provider)
    choices = raw.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    calls = message.get("tool_calls")
    native = choice.get("finish_reason")
    metadata: dict[str, Any] = {"native_finish_reason": native}
    for key in _METADATA_KEYS:
        if (value := raw.get(key)) is not None:
            metadata[key] = value
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    if reasoning:
        metadata["reasoning"] = reasoning
    if message.get("refusal"):
        metadata["refusal"] = message["refusal"]
    return normalized(
        data=content or "",
        tool_calls=_tool_calls(calls) if calls else [],
        usage=chat_usage(raw.get("usage")),
        finish_reason=_FINISH.get(native) if native else None,
        metadata=metadata,
        raw_response=raw,
    )
