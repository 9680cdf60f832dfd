"""The OpenAI Responses API (``POST /v1/responses``), and servers that serve it.

Takes the native Responses request, or the canonical chat request (``messages``), translated
once by :func:`~lionpride.services.providers.oai_responses._request.chat_to_responses`. The
answer is normalized from its ``output`` items:

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

The package holds one concern per module, and imports only point down: ``__init__`` (the
endpoint, :class:`ResponsesRequest`, :func:`create_oai_responses`) → ``_stream`` (events into
stream chunks and one body) → ``_normalize`` (a body into a :class:`NormalizedResponse`) →
``_request`` (the canonical request as a Responses request) →
:mod:`~lionpride.services.providers.canonical` and ``common`` → ``types``; the config factory
comes from :mod:`~lionpride.services.providers.oai_chat`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from lionpride import errors
from lionpride.services.providers.oai_chat import oai_config_factory
from lionpride.services.providers.oai_responses._normalize import (
    normalize_responses,
    responses_usage,
)
from lionpride.services.providers.oai_responses._request import chat_to_responses
from lionpride.services.providers.oai_responses._stream import ResponsesStreamAssembler
from lionpride.services.types.endpoint import Endpoint, StreamAssembler
from lionpride.services.types.request import RequestModel
from lionpride.services.types.response import NormalizedResponse

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
