"""Built-in providers, one module or package per provider and API, and :func:`match_endpoint`.

Each HTTP API is a package whose door is its public path (``oai_chat``, ``oai_responses``,
``anthropic_messages``, ``gemini``): the endpoint, its request schema and config factory in
``__init__``, over private ``_stream`` (stream assembly), ``_normalize`` (answer
normalization) and ``_request`` (request translation) modules. ``embeddings`` builds on the
OpenAI and Gemini packages; the agent CLIs are ``claude_code`` and ``gemini_code``.

Imports only point down: this door → :mod:`.match` → the provider packages and modules →
:mod:`.canonical` (reading the canonical request) and :mod:`.common` (config from the
environment, tool-call arguments, stream events) → ``types`` and ``errors``. Nothing below
imports this door, :mod:`.match` or another provider's private module.
"""

from lionpride.services.providers.anthropic_messages import (
    AnthropicMessagesEndpoint,
    create_anthropic_config,
)
from lionpride.services.providers.claude_code import (
    ClaudeCodeEndpoint,
    create_claude_code_config,
)
from lionpride.services.providers.gemini import GeminiEndpoint, create_gemini_config
from lionpride.services.providers.gemini_code import (
    GeminiCodeEndpoint,
    create_gemini_code_config,
)
from lionpride.services.providers.match import KNOWN_PROVIDERS, match_endpoint
from lionpride.services.providers.oai_chat import OAIChatEndpoint, create_oai_chat

__all__ = [
    "KNOWN_PROVIDERS",
    "AnthropicMessagesEndpoint",
    "ClaudeCodeEndpoint",
    "GeminiCodeEndpoint",
    "GeminiEndpoint",
    "OAIChatEndpoint",
    "create_anthropic_config",
    "create_claude_code_config",
    "create_gemini_code_config",
    "create_gemini_config",
    "create_oai_chat",
    "match_endpoint",
]
