"""Anthropic Messages API (``POST /v1/messages``): the endpoint, its request schema and config.

The package holds one concern per module, and imports only point down:
``__init__`` (the endpoint, :class:`CreateMessageRequest`, :func:`create_anthropic_config`)
→ ``_stream`` (events into chunks and one body) → ``_normalize`` (a body into a
:class:`NormalizedResponse`) → ``_request`` (the canonical request as a Messages API
request) → :mod:`~lionpride.services.providers.canonical` and ``common`` → ``types``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lionpride.services.providers.anthropic_messages._normalize import (
    ERROR_STATUS,
    anthropic_usage,
    normalize_message,
)
from lionpride.services.providers.anthropic_messages._request import (
    DEFAULT_MAX_TOKENS,
    messages_request,
)
from lionpride.services.providers.anthropic_messages._stream import MessageStreamAssembler
from lionpride.services.providers.common import provider_config
from lionpride.services.types.endpoint import Endpoint, StreamAssembler
from lionpride.services.types.request import RequestModel
from lionpride.services.types.response import NormalizedResponse

__all__ = [
    "ERROR_STATUS",
    "AnthropicMessagesEndpoint",
    "CreateMessageRequest",
    "anthropic_usage",
    "create_anthropic_config",
    "normalize_message",
]


class CreateMessageRequest(RequestModel):
    """The body of ``POST /v1/messages``.

    Roles, block types and fields inside messages are the API's to check: a request is
    refused here only for its parameter names and types.
    """

    model: str = Field(min_length=1, max_length=256)
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1)
    system: str | list[dict[str, Any]] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    metadata: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    service_tier: str | None = None
    output_config: dict[str, Any] | None = None
    container: str | dict[str, Any] | None = None
    context_management: dict[str, Any] | None = None
    mcp_servers: list[dict[str, Any]] | None = None
    cache_control: dict[str, Any] | None = None
    extra_body: dict[str, Any] | None = None


def create_anthropic_config(
    name: str = "anthropic_messages",
    api_key: Any = None,
    base_url: str | None = None,
    endpoint: str = "messages",
    anthropic_version: str = "2023-06-01",
    **kwargs: Any,
) -> dict[str, Any]:
    """Config dict for the Messages API (``x-api-key`` auth, ``anthropic-version`` header)."""
    headers = {"anthropic-version": anthropic_version, **kwargs.pop("default_headers", {})}
    return provider_config(
        provider="anthropic",
        name=name,
        base_url=base_url,
        default_base_url="https://api.anthropic.com/v1",
        endpoint=endpoint,
        api_key=api_key,
        default_key_env="ANTHROPIC_API_KEY",
        auth_type="x-api-key",
        request_options=CreateMessageRequest,
        default_headers=headers,
        **kwargs,
    )


class AnthropicMessagesEndpoint(Endpoint):
    """Claude models through the Messages API. ``max_tokens`` defaults to 4096.

    Takes the canonical request (OpenAI Chat Completions) or a native one; see
    :mod:`~lionpride.services.providers.anthropic_messages._request` for the translation.
    """

    config_factory = staticmethod(create_anthropic_config)

    def translate_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The Messages API request for a canonical or native one."""
        return messages_request(request)

    def normalize_response(self, raw: Any) -> NormalizedResponse:
        """Normalize a Messages API body."""
        return normalize_message(raw)

    def stream_assembler(self, payload: dict[str, Any]) -> StreamAssembler:
        """Assembles Messages API stream events."""
        return MessageStreamAssembler()

    def count_tokens_route(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``messages/count_tokens`` and the prompt's fields (no ``max_tokens`` and other
        generation settings, which that route refuses)."""
        body = self.request_body(payload)
        counted = {k: v for k, v in body.items() if k in _COUNTED}
        return f"{self.config.endpoint}/count_tokens", counted


#: The fields ``/v1/messages/count_tokens`` reads: what makes up the prompt.
_COUNTED = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
     "cache_control", "context_management"}
)  # fmt: skip
