"""Pick the endpoint class for ``iModel(provider=..., endpoint=...)``."""

from __future__ import annotations

import warnings
from typing import Any, TypeVar

from lionpride import errors
from lionpride.services.providers.anthropic_messages import AnthropicMessagesEndpoint
from lionpride.services.providers.claude_code import ClaudeCodeEndpoint
from lionpride.services.providers.common import env_base_url, env_name
from lionpride.services.providers.embeddings import (
    GeminiEmbeddingsEndpoint,
    OAIEmbeddingsEndpoint,
)
from lionpride.services.providers.gemini import GeminiEndpoint
from lionpride.services.providers.gemini_code import GeminiCodeEndpoint
from lionpride.services.providers.oai_chat import OAI_PROVIDERS, OAIChatEndpoint
from lionpride.services.providers.oai_responses import OAIResponsesEndpoint
from lionpride.services.types.endpoint import Endpoint
from lionpride.services.types.resilient import ResilientBackend

__all__ = ["KNOWN_PROVIDERS", "OPENAI_COMPATIBLE", "match_endpoint"]

#: provider → the endpoint strings it serves.
KNOWN_PROVIDERS: dict[str, tuple[str, ...]] = {
    **{name: ("chat/completions", "chat", "responses", "embeddings") for name in OAI_PROVIDERS},
    "anthropic": ("messages", "chat", "chat/completions"),
    "gemini": ("generateContent", "generate_content", "chat", "chat/completions", "embeddings"),
    "claude_code": ("query_cli", "chat", "chat/completions", "messages"),
    "gemini_code": ("query_cli", "chat", "chat/completions", "messages"),
}

#: Servers known to speak the OpenAI chat API at a ``base_url`` of your own: no warning.
OPENAI_COMPATIBLE = frozenset(
    {"deepseek", "lmstudio", "mistral", "ollama", "together", "vllm", "xai"}
)


B = TypeVar("B", bound=ResilientBackend)


def match_endpoint(
    provider: str, endpoint: str = "chat/completions", **kwargs: Any
) -> ResilientBackend:
    """Build the endpoint for a provider.

    Args:
        provider: ``openai``, ``groq``, ``openrouter``, ``nvidia_nim``, ``anthropic``,
            ``gemini``, ``claude_code`` or ``gemini_code`` (the CLIs), or any other name
            together with ``base_url`` for an OpenAI-compatible server: the names in
            :data:`OPENAI_COMPATIBLE` (Ollama, vLLM, Together, DeepSeek, Mistral, xAI, LM
            Studio) quietly, any other with a warning that the name is unknown.
        endpoint: The API path; each provider accepts the ones in :data:`KNOWN_PROVIDERS`.
        **kwargs: Endpoint configuration (``api_key``, ``base_url``, ``timeout``,
            ``retry_config``, ``circuit_breaker``) and default request parameters (``model``).

    Raises:
        ConfigurationError: An unknown provider without ``base_url``, or an endpoint the
            provider does not serve (both messages list the valid choices).
    """
    if not isinstance(provider, str) or not provider:
        raise errors.ConfigurationError(f"provider must be a non-empty string, got {provider!r}")
    provider = provider.lower()
    served = KNOWN_PROVIDERS.get(provider)
    if served is None:
        base_url = kwargs.get("base_url") or env_base_url(provider)
        if not base_url:
            where = f"give base_url=... (or set {env_name(provider, 'BASE_URL')})"
            if provider in OPENAI_COMPATIBLE:
                raise errors.ConfigurationError(
                    f"provider {provider!r} is OpenAI-compatible: {where} for its server"
                )
            raise errors.ConfigurationError(
                f"unknown provider {provider!r}: use one of {', '.join(_choices())}, "
                f"or {where} for an OpenAI-compatible server"
            )
        if provider not in OPENAI_COMPATIBLE:
            warnings.warn(
                f"Unknown provider {provider!r}, treating {base_url} as an "
                "OpenAI-compatible endpoint",
                UserWarning,
                stacklevel=3,
            )
        return _build_oai(provider, endpoint, **kwargs)
    if endpoint not in served:
        raise errors.ConfigurationError(
            f"provider {provider!r} does not serve endpoint {endpoint!r}; "
            f"valid: {', '.join(served)}"
        )
    if provider == "anthropic":
        return _build(AnthropicMessagesEndpoint, **kwargs)
    if provider == "gemini":
        if endpoint == "embeddings":
            return _build(GeminiEmbeddingsEndpoint, **kwargs)
        return _build(GeminiEndpoint, **kwargs)
    if provider == "claude_code":
        return _build(ClaudeCodeEndpoint, **kwargs)
    if provider == "gemini_code":
        return _build(GeminiCodeEndpoint, **kwargs)
    return _build_oai(provider, endpoint, **kwargs)


def _build_oai(provider: str, endpoint: str, **kwargs: Any) -> Endpoint:
    """An OpenAI-compatible endpoint: Responses, or chat completions at ``endpoint``."""
    if endpoint == "responses":
        return _build(OAIResponsesEndpoint, provider=provider, **kwargs)
    if endpoint == "embeddings":
        return _build(OAIEmbeddingsEndpoint, provider=provider, **kwargs)
    if provider in OAI_PROVIDERS:
        return _build(OAIChatEndpoint, provider=provider, **kwargs)
    return _build(OAIChatEndpoint, provider=provider, endpoint=endpoint, **kwargs)


def _choices() -> list[str]:
    """Provider names for messages: the HTTP APIs, then the agent CLIs, each sorted."""
    return sorted(KNOWN_PROVIDERS, key=lambda p: ("query_cli" in KNOWN_PROVIDERS[p], p))


def _build(cls: type[B], **kwargs: Any) -> B:
    """Construct through the class's ``__init__``, whose factory routes the keyword arguments."""
    return cls(**kwargs)
