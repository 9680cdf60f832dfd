"""A Responses body as a :class:`NormalizedResponse`, read from its ``output`` items (the
package docstring lists what each item gives).

The stream assembler hands the final response object to :func:`normalize_responses`, so a
streamed and a whole answer normalize alike.
"""

from __future__ import annotations

from typing import Any, Literal

from lionpride import errors
from lionpride.services.providers.common import parse_arguments
from lionpride.services.providers.oai_responses._request import (
    PROVIDER_STATE_KEY,
    STATE_PROVIDER,
)
from lionpride.services.types.response import (
    NormalizedResponse,
    ToolCall,
    Usage,
    normalized,
    usage_of,
)

__all__ = ["normalize_responses", "responses_usage"]


_INCOMPLETE: dict[str, Literal["length", "content_filter"]] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}

#: Error codes of a failed response that are the service's fault, not the request's.
_SERVER_CODES = frozenset({"server_error", "vector_store_timeout"})

#: Keys of a built-in tool item kept in its summary (ids, outputs and tool lists are not).
_SUMMARY_KEYS = ("type", "name", "server_label", "status", "action", "arguments")


def responses_usage(raw: Any) -> Usage | None:
    """Normalize Responses usage: cached and cache-write input, reasoning output."""
    if not isinstance(raw, dict):
        return None
    inp = raw.get("input_tokens") or 0
    out = raw.get("output_tokens") or 0
    in_details = raw.get("input_tokens_details") or {}
    out_details = raw.get("output_tokens_details") or {}
    return usage_of(
        {
            "input_tokens": inp,
            "output_tokens": out,
            "total_tokens": raw.get("total_tokens") or inp + out,
            "cached_tokens": in_details.get("cached_tokens") or 0,
            "cache_write_tokens": in_details.get("cache_write_tokens") or 0,
            "reasoning_tokens": out_details.get("reasoning_tokens") or 0,
        }
    )


def _raise_failed(raw: dict[str, Any], provider: str) -> None:
    """Raise the typed error of a ``failed`` response (or an ``error`` body).

    The service's own failures (``server_error``, ``vector_store_timeout``, or no code and
    no ``invalid_request_error`` type) are a retryable 500 and ``rate_limit_exceeded`` a 429;
    any other code names a fault in the request (``invalid_prompt``, ``image_too_large``,
    ``failed_to_download_image``, ...) that a retry would only repeat and pay for: a 400.
    """
    err = raw.get("error")
    info = err if isinstance(err, dict) else {"message": str(err or "response failed")}
    code = str(info.get("code") or "")
    faulty = code not in _SERVER_CODES if code else info.get("type") == "invalid_request_error"
    status = 429 if "rate_limit" in code else 400 if faulty else 500
    raise errors.error_for_status(
        status, str(info.get("message") or code or "response failed"), body=raw, provider=provider
    )


def _summary(item: dict[str, Any]) -> dict[str, Any]:
    """A built-in tool item in brief: what ran and on what (its lists of sources, queries
    and tools are left to ``raw_response``)."""
    out = {k: item[k] for k in _SUMMARY_KEYS if k in item}
    if isinstance(out.get("action"), dict):
        out["action"] = {k: v for k, v in out["action"].items() if not isinstance(v, list)}
    if isinstance(out.get("arguments"), str):
        out["arguments"] = parse_arguments(out["arguments"])
    return out


def normalize_responses(raw: Any, provider: str = "openai") -> NormalizedResponse:
    """Turn a Responses body into a :class:`NormalizedResponse` (see the module docstring).

    Raises:
        InvalidResponseError: A body that is not a JSON object.
        APIStatusError: A ``failed`` response, as the typed error its ``error`` names.
    """
    if not isinstance(raw, dict):
        raise errors.InvalidResponseError(
            f"{provider}: expected a JSON object, got {type(raw).__name__}", status_code=200
        )
    status = raw.get("status")
    if status == "failed" or (raw.get("error") and "output" not in raw):
        _raise_failed(raw, provider)
    text: list[str] = []
    calls: list[ToolCall] = []
    summaries: list[str] = []
    reasoning_items: list[dict[str, Any]] = []
    server: list[dict[str, Any]] = []
    refusals: list[str] = []
    for item in raw.get("output") or ():
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    text.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusals.append(part.get("refusal") or "")
        elif kind == "function_call":
            calls.append(
                ToolCall(
                    id=item.get("call_id"),
                    name=item.get("name") or "",
                    arguments=parse_arguments(item.get("arguments")),
                )
            )
        elif kind == "reasoning":
            reasoning_items.append(item)
            summaries += [s.get("text") or "" for s in item.get("summary") or ()]
        elif kind is not None:
            server.append(_summary(item))
    incomplete = raw.get("incomplete_details") or {}
    metadata: dict[str, Any] = {
        "native_finish_reason": incomplete.get("reason") or status,
        "status": status,
    }
    for key in ("model", "id", "usage", "incomplete_details", "service_tier"):
        if raw.get(key) is not None:
            metadata[key] = raw[key]
    if summaries:
        metadata["reasoning"] = "\n\n".join(summaries)
    if reasoning_items:
        metadata[PROVIDER_STATE_KEY] = {"provider": STATE_PROVIDER, "items": reasoning_items}
    if server:
        metadata["server_tool_calls"] = server
    if refusals:
        metadata["refusal"] = "".join(refusals)
    finish: Literal["stop", "length", "tool_calls", "content_filter"] | None = None
    if status == "completed":
        finish = "tool_calls" if calls else "stop"
    elif status == "incomplete":
        finish = _INCOMPLETE.get(incomplete.get("reason") or "")
    return normalized(
        data="".join(text),
        tool_calls=calls,
        usage=responses_usage(raw.get("usage")),
        finish_reason=finish,
        metadata=metadata,
        raw_response=raw,
    )
