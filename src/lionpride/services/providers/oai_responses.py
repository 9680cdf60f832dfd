"""The OpenAI Responses API (``POST /v1/responses``), and servers that serve it.

Takes the native Responses request, or the canonical chat request (``messages``), translated
once by :func:`~lionpride.services.providers._responses_request.chat_to_responses`. The answer
is normalized from its ``output`` items:

- ``message`` items give ``data`` (every ``output_text`` joined; a ``commentary`` message
  before a call counts too); ``function_call`` items give ``tool_calls`` with ``id`` = the
  ``call_id`` (what a ``function_call_output`` refers to), not the ``fc_`` item id;
- ``reasoning`` items give ``metadata["reasoning"]`` (their summaries, joined by a blank
  line) and ``metadata["provider_state"]`` (the items themselves, with ``encrypted_content``
  when it was included), which the next turn replays;
- built-in tool items (``web_search_call``, ``mcp_call``, ...) are summarised in
  ``metadata["server_tool_calls"]``;
- ``status: incomplete`` gives ``finish_reason="length"`` (``max_output_tokens``) or
  ``"content_filter"``; a completed answer with a function call gives ``"tool_calls"``;
- usage counts cached input (``cached_tokens``), prompt-cache writes
  (``cache_write_tokens``) and reasoning output (``reasoning_tokens``).

An unknown model is a 400 with code ``model_not_found`` here (a 404 on chat completions): it
is raised as :class:`~lionpride.errors.NotFoundError`, its status kept at 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from lionpride import errors
from lionpride.services.providers._common import RequestModel, parse_arguments
from lionpride.services.providers._responses_request import (
    PROVIDER_STATE_KEY,
    STATE_PROVIDER,
    chat_to_responses,
)
from lionpride.services.providers.oai_chat import oai_config_factory
from lionpride.services.types.endpoint import Endpoint, StreamAssembler
from lionpride.services.types.response import (
    NormalizedResponse,
    ToolCall,
    Usage,
    normalized,
    usage_of,
)

__all__ = [
    "OAIResponsesEndpoint",
    "ResponsesRequest",
    "create_oai_responses",
    "normalize_responses",
    "responses_usage",
]


class ResponsesRequest(RequestModel):
    """The body of ``POST /responses`` (after a canonical request was translated)."""

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    store: bool | None = None
    include: list[str] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    metadata: dict[str, str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    truncation: str | None = None
    background: bool | None = None
    service_tier: str | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    extra_body: dict[str, Any] | None = None


#: Config dict for a Responses endpoint (the chat config at ``/responses``).
create_oai_responses = oai_config_factory("responses", ResponsesRequest)


class OAIResponsesEndpoint(Endpoint):
    """OpenAI's Responses API, from the native request or the canonical chat request.

    Example:
        >>> ep = OAIResponsesEndpoint(provider="openai")  # doctest: +SKIP
    """

    config_factory = staticmethod(create_oai_responses)

    def translate_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The Responses request for a canonical one (it has ``messages``) or a native one
        (its canonical parameters, such as a default ``max_tokens``, renamed).

        Raises:
            ValidationError: A canonical parameter with no Responses equivalent (named).
        """
        return chat_to_responses(request)

    def output_budget(self, payload: dict[str, Any]) -> int:
        """``max_output_tokens``, or the configured default."""
        out = payload.get("max_output_tokens")
        return out if isinstance(out, int) else self.config.default_output_tokens

    def normalize_response(self, raw: Any) -> NormalizedResponse:
        """Normalize a Responses body (a failed response raises its error)."""
        return normalize_responses(raw, self.provider)

    def stream_assembler(self, payload: dict[str, Any]) -> StreamAssembler:
        """Assembles the typed Responses events."""
        from lionpride.services.providers._responses_stream import ResponsesStreamAssembler

        return ResponsesStreamAssembler(self.provider)

    def count_tokens_route(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``/responses/input_tokens`` and the body it counts (generation settings left out).

        Raises:
            ValidationError: A stored ``prompt``, which that route does not take (leaving it
                out would count less than the request sends).
        """
        if "prompt" in payload:
            raise errors.ValidationError(
                f"{self.name}: parameter 'prompt' cannot be counted: /responses/input_tokens "
                "takes no stored prompt"
            )
        body = self.request_body(payload)
        return f"{self.config.endpoint}/input_tokens", {
            k: v for k, v in body.items() if k in _COUNTED
        }

    def status_error(
        self, status: int, raw_headers: Mapping[str, str], data: bytes
    ) -> errors.APIStatusError:
        """As for any endpoint; a 400 ``model_not_found`` is a ``NotFoundError``."""
        error = super().status_error(status, raw_headers, data)
        body = error.body
        if status == 400 and isinstance(body, dict):
            detail = body.get("error")
            if isinstance(detail, dict) and detail.get("code") == "model_not_found":
                return errors.NotFoundError(
                    str(error),
                    status_code=status,
                    headers=error.headers,
                    body=body,
                    provider=self.provider,
                )
        return error


#: The fields ``/responses/input_tokens`` reads (what makes up the prompt).
_COUNTED = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
        "previous_response_id", "conversation", "reasoning", "text", "truncation",
    }
)  # fmt: skip

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
