"""Built-in providers, one module each, and :func:`match_endpoint`."""

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
