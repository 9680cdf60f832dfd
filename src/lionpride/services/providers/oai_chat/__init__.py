"""OpenAI Chat Completions, and every server that speaks it (Groq, OpenRouter, NVIDIA NIM,
Ollama, vLLM, Together, DeepSeek, Mistral, xAI, ...).

The canonical request is this API's own, so the package translates nothing; it holds one
concern per module, and imports only point down: ``__init__`` (the endpoint,
:class:`OpenAIChatCompletionsRequest`, the config factories) → ``_stream`` (chunks into stream
chunks and one body) → ``_normalize`` (a body into a :class:`NormalizedResponse`) →
:mod:`~lionpride.services.providers.common` → ``types``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from lionpride import errors
from lionpride.services.providers.common import env_base_url, env_name, provider_config
from lionpride.services.providers.oai_chat._normalize import normalize_chat_completion
from lionpride.services.providers.oai_chat._stream import ChatStreamAssembler
from lionpride.services.types.endpoint import Endpoint, StreamAssembler
from lionpride.services.types.request import RequestModel
from lionpride.services.types.response import NormalizedResponse

if TYPE_CHECKING:
    from lionpride.services.types.endpoint import LiveStream

__all__ = [
    "OAI_PROVIDERS",
    "OAIChatEndpoint",
    "OpenAIChatCompletionsRequest",
    "create_oai_chat",
    "normalize_chat_completion",
    "oai_config_factory",
]

#: Built-in OpenAI-compatible providers: (default base URL, API-key variable).
OAI_PROVIDERS: dict[str, tuple[str, str]] = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "nvidia_nim": ("https://integrate.api.nvidia.com/v1", "NVIDIA_NIM_API_KEY"),
}

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class OpenAIChatCompletionsRequest(RequestModel):
    """The body of ``POST /chat/completions``."""

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1)
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    seed: int | None = None
    user: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    reasoning: dict[str, Any] | None = None
    verbosity: str | None = None
    service_tier: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    safety_identifier: str | None = None
    web_search_options: dict[str, Any] | None = None
    extra_body: dict[str, Any] | None = None

    @field_validator("messages")
    @classmethod
    def _check_messages(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, msg in enumerate(messages):
            role = msg.get("role")
            if role not in _ROLES:
                raise ValueError(
                    f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}"
                )
            content = msg.get("content")
            if content is not None and not isinstance(content, str | list):
                raise ValueError(f"messages[{i}].content must be a string or a list of parts")
        return messages


def create_oai_chat(
    provider: str = "openai",
    name: str | None = None,
    base_url: str | None = None,
    api_key: Any = None,
    endpoint: str = "chat/completions",
    **kwargs: Any,
) -> dict[str, Any]:
    """Config dict for an OpenAI-compatible chat endpoint.

    A provider that is not built in (a self-hosted server) given no key, whose key variable
    is unset too, is called without an ``Authorization`` header.

    Raises:
        ConfigurationError: An unknown provider without ``base_url``.
    """
    default_url, env = OAI_PROVIDERS.get(provider, (None, env_name(provider, "API_KEY")))
    if default_url is None and not base_url and env_base_url(provider) is None:
        raise errors.ConfigurationError(
            f"unknown OpenAI-compatible provider {provider!r} needs base_url=... "
            f"(built in: {', '.join(sorted(OAI_PROVIDERS))})"
        )
    if default_url is None and api_key is None and "api_key_env" not in kwargs:
        # A self-hosted server (Ollama, vLLM, LM Studio...) often takes no key: with none
        # given and none in its variable when the config is made (or rebuilt), requests go
        # without one instead of failing.
        kwargs.setdefault("api_key_optional", True)
    return provider_config(
        provider=provider,
        name=name or f"{provider}_chat",
        base_url=base_url,
        default_base_url=default_url,
        endpoint=endpoint,
        api_key=api_key,
        default_key_env=env,
        auth_type="bearer",
        request_options=OpenAIChatCompletionsRequest,
        **kwargs,
    )


def oai_config_factory(
    endpoint: str, request_options: type[RequestModel]
) -> Callable[..., dict[str, Any]]:
    """A config factory for another API of OpenAI-compatible servers at ``{base}/endpoint``
    (responses, embeddings): the chat config with that path, name and request schema.

    The factory raises ``ConfigurationError`` for an unknown provider without ``base_url``.
    """

    def create(provider: str = "openai", name: str | None = None, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("endpoint", endpoint)
        config = create_oai_chat(provider=provider, name=name or f"{provider}_{endpoint}", **kwargs)
        config["request_options"] = request_options
        return config

    create.__doc__ = f"Config dict for an OpenAI-compatible ``{endpoint}`` endpoint."
    return create


class OAIChatEndpoint(Endpoint):
    """OpenAI Chat Completions (and compatible servers).

    Streams ask for the final usage chunk (``stream_options: {"include_usage": true}``) unless
    the request has its own ``stream_options`` or the config says ``stream_usage=False``.

    Example:
        >>> ep = OAIChatEndpoint(provider="groq", api_key=SecretStr("gsk-..."))  # doctest: +SKIP
    """

    config_factory = staticmethod(create_oai_chat)

    def translate_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request as it is (the canonical format is this API's), less the
        ``provider_state`` other providers' answers left on assistant messages."""
        messages = request.get("messages")
        if not isinstance(messages, list):
            return request
        for msg in messages:  # a loop, not any(): no generator on every call
            if isinstance(msg, dict) and "provider_state" in msg:
                stripped = [
                    {k: v for k, v in msg.items() if k != "provider_state"}
                    if isinstance(msg, dict)
                    else msg
                    for msg in messages
                ]
                return {**request, "messages": stripped}
        return request

    def request_body(self, payload: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
        """Merge ``extra_body``; a stream asks for the usage chunk (see the class docstring)."""
        if not stream and "extra_body" not in payload:
            return payload
        body = super().request_body(payload, stream=stream)
        if stream and self._asks_for_usage(payload):
            body["stream_options"] = {"include_usage": True}
        return body

    def _asks_for_usage(self, payload: dict[str, Any]) -> bool:
        """Whether a stream of ``payload`` gets the ``stream_options`` this endpoint adds."""
        return (
            self.config.stream_usage
            and "stream_options" not in payload
            and "stream_options" not in (payload.get("extra_body") or {})
        )

    async def _start_stream(self, payload: dict[str, Any], *rest: Any) -> LiveStream:
        """Start the stream; a 400 or 422 that names the ``stream_options`` this endpoint added
        gets a note (shown with the traceback) saying how to stop sending it."""
        try:
            return await super()._start_stream(payload, *rest)
        except errors.BadRequestError as exc:
            if self._asks_for_usage(payload) and "stream_options" in f"{exc} {exc.body!r}":
                exc.add_note(
                    f"{self.name}: lionpride adds stream_options.include_usage to streams to "
                    "get their usage; this server seems not to accept it: create the model "
                    "with stream_usage=False to stop sending it (its streams then carry no usage)"
                )
            raise

    def normalize_response(self, raw: Any) -> NormalizedResponse:
        """Normalize a chat completion (errors inside a 200 body raise)."""
        return normalize_chat_completion(raw, self.provider)

    def stream_assembler(self, payload: dict[str, Any]) -> StreamAssembler:
        """Assembles chat-completion chunks."""
        return ChatStreamAssembler(self.provider)
