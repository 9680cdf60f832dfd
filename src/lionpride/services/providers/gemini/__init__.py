"""Google Gemini API (``models/{model}:generateContent`` and ``:streamGenerateContent``).

Takes native ``contents`` or the canonical request (OpenAI Chat Completions); see
:mod:`~lionpride.services.providers.gemini._request` for the translation.

The package holds one concern per module, and imports only point down: ``__init__`` (the
endpoint, :class:`GenerateContentRequest`, :func:`create_gemini_config`) → ``_stream``
(chunks into stream chunks and one body) → ``_normalize`` (a body into a
:class:`NormalizedResponse`); ``_request`` (the canonical request as a ``generateContent``
request) → :mod:`~lionpride.services.providers.canonical` and ``common`` → ``types``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lionpride.services.providers.common import provider_config
from lionpride.services.providers.gemini._normalize import (
    gemini_usage,
    made_up_call_id,
    normalize_generate_content,
)
from lionpride.services.providers.gemini._request import (
    gemini_body,
    generate_content_request,
    messages_to_contents,
    model_path,
)
from lionpride.services.providers.gemini._stream import GeminiStreamAssembler
from lionpride.services.types.endpoint import Endpoint, StreamAssembler
from lionpride.services.types.request import RequestModel
from lionpride.services.types.response import NormalizedResponse

__all__ = [
    "GeminiEndpoint",
    "GenerateContentRequest",
    "create_gemini_config",
    "gemini_body",
    "gemini_usage",
    "made_up_call_id",
    "messages_to_contents",
    "model_path",
    "normalize_generate_content",
]


class GenerateContentRequest(RequestModel):
    """The body of ``generateContent`` plus ``model`` (sent in the path).

    Roles and parts inside ``contents`` are the API's to check: a request is refused here
    only for its parameter names and types, and for having no contents at all.
    """

    model: str = Field(min_length=1)
    contents: list[dict[str, Any]] = Field(min_length=1)
    systemInstruction: dict[str, Any] | None = None
    generationConfig: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    toolConfig: dict[str, Any] | None = None
    safetySettings: list[dict[str, Any]] | None = None
    cachedContent: str | None = None
    labels: dict[str, str] | None = None
    extra_body: dict[str, Any] | None = None


def create_gemini_config(
    name: str = "gemini_generate",
    api_key: Any = None,
    base_url: str | None = None,
    endpoint: str = "models/{model}:generateContent",
    **kwargs: Any,
) -> dict[str, Any]:
    """Config dict for the Gemini API (``x-goog-api-key`` auth, ``GEMINI_API_KEY``)."""
    return provider_config(
        provider="gemini",
        name=name,
        base_url=base_url,
        default_base_url="https://generativelanguage.googleapis.com/v1beta",
        endpoint=endpoint,
        api_key=api_key,
        default_key_env="GEMINI_API_KEY",
        auth_type="x-goog-api-key",
        request_options=GenerateContentRequest,
        **kwargs,
    )


class GeminiEndpoint(Endpoint):
    """Gemini models through the Generative Language API."""

    config_factory = staticmethod(create_gemini_config)

    def translate_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The ``generateContent`` request for a canonical or native one."""
        return generate_content_request(request)

    def output_budget(self, payload: dict[str, Any]) -> int:
        """``generationConfig.maxOutputTokens``, or the configured default."""
        out = (payload.get("generationConfig") or {}).get("maxOutputTokens")
        return out if isinstance(out, int) else self.config.default_output_tokens

    def request_url(self, payload: dict[str, Any], *, stream: bool = False) -> str:
        """``{base}/models/{model}:generateContent`` (``:streamGenerateContent?alt=sse``)."""
        base = model_path(self.config.full_url, payload["model"])
        if stream:
            return base.replace(":generateContent", ":streamGenerateContent") + "?alt=sse"
        return base

    def request_body(self, payload: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
        """The body without ``model`` (it is in the path); no ``stream`` flag."""
        return gemini_body(payload)

    def normalize_response(self, raw: Any) -> NormalizedResponse:
        """Normalize a GenerateContentResponse."""
        return normalize_generate_content(raw)

    def stream_assembler(self, payload: dict[str, Any]) -> StreamAssembler:
        """Assembles streamed GenerateContentResponse chunks."""
        return GeminiStreamAssembler()

    def count_tokens_route(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``models/{model}:countTokens``: ``contents`` alone, or the whole request (system
        instruction, tools) as ``generateContentRequest``."""
        model = payload["model"]
        path = model_path(self.config.endpoint, model)
        path = path.replace(":generateContent", ":countTokens")
        body = self.request_body(payload)
        if body.keys() <= {"contents"}:
            return path, body
        return path, {"generateContentRequest": {"model": f"models/{model}", **body}}
