"""lionpride.services: one async interface over LLM APIs, tools and MCP servers.

The door: every name a user of the client needs is exported here (the errors are in
:mod:`lionpride.errors`, the test helpers in :mod:`lionpride.testing`). The modules that
define them keep their import paths (``lionpride.services.utilities.resilience``, ...).

The names load on first use (``from lionpride.services import iModel`` imports the model
layer and aiohttp then), so ``import lionpride.services`` itself stays cheap (D9).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lionpride.lazy import lazy_names

if TYPE_CHECKING:
    from lionpride.services._limits import Limits
    from lionpride.services.execution import RateLimitedExecutor
    from lionpride.services.fallback import Fallback
    from lionpride.services.imodel import iModel
    from lionpride.services.observability.pricing import PriceTable
    from lionpride.services.providers import (
        AnthropicMessagesEndpoint,
        ClaudeCodeEndpoint,
        GeminiCodeEndpoint,
        GeminiEndpoint,
        OAIChatEndpoint,
        match_endpoint,
    )
    from lionpride.services.registry import ServiceRegistry
    from lionpride.services.streaming.channel import StreamChannel, StreamChunk
    from lionpride.services.types.backend import Calling, ServiceBackend, ServiceConfig
    from lionpride.services.types.endpoint import Endpoint, EndpointConfig
    from lionpride.services.types.hook import HookPhase, HookRegistry
    from lionpride.services.types.response import NormalizedResponse, ToolCall, Usage
    from lionpride.services.types.tool import Tool, ToolConfig
    from lionpride.services.utilities.rate_limiter import TokenBucket
    from lionpride.services.utilities.resilience import CircuitBreaker, RetryConfig

__all__ = [
    "AnthropicMessagesEndpoint",
    "Calling",
    "CircuitBreaker",
    "ClaudeCodeEndpoint",
    "Endpoint",
    "EndpointConfig",
    "Fallback",
    "GeminiCodeEndpoint",
    "GeminiEndpoint",
    "HookPhase",
    "HookRegistry",
    "Limits",
    "NormalizedResponse",
    "OAIChatEndpoint",
    "PriceTable",
    "RateLimitedExecutor",
    "RetryConfig",
    "ServiceBackend",
    "ServiceConfig",
    "ServiceRegistry",
    "StreamChannel",
    "StreamChunk",
    "TokenBucket",
    "Tool",
    "ToolCall",
    "ToolConfig",
    "Usage",
    "iModel",
    "match_endpoint",
]

_PROVIDERS = "lionpride.services.providers"
_HOMES = {
    "AnthropicMessagesEndpoint": _PROVIDERS,
    "Calling": "lionpride.services.types.backend",
    "CircuitBreaker": "lionpride.services.utilities.resilience",
    "ClaudeCodeEndpoint": _PROVIDERS,
    "Endpoint": "lionpride.services.types.endpoint",
    "EndpointConfig": "lionpride.services.types.endpoint",
    "Fallback": "lionpride.services.fallback",
    "GeminiCodeEndpoint": _PROVIDERS,
    "GeminiEndpoint": _PROVIDERS,
    "HookPhase": "lionpride.services.types.hook",
    "HookRegistry": "lionpride.services.types.hook",
    "Limits": "lionpride.services._limits",
    "NormalizedResponse": "lionpride.services.types.response",
    "OAIChatEndpoint": _PROVIDERS,
    "PriceTable": "lionpride.services.observability.pricing",
    "RateLimitedExecutor": "lionpride.services.execution",
    "RetryConfig": "lionpride.services.utilities.resilience",
    "ServiceBackend": "lionpride.services.types.backend",
    "ServiceConfig": "lionpride.services.types.backend",
    "ServiceRegistry": "lionpride.services.registry",
    "StreamChannel": "lionpride.services.streaming.channel",
    "StreamChunk": "lionpride.services.streaming.channel",
    "TokenBucket": "lionpride.services.utilities.rate_limiter",
    "Tool": "lionpride.services.types.tool",
    "ToolCall": "lionpride.services.types.response",
    "ToolConfig": "lionpride.services.types.tool",
    "Usage": "lionpride.services.types.response",
    "iModel": "lionpride.services.imodel",
    "match_endpoint": _PROVIDERS,
}


__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())
