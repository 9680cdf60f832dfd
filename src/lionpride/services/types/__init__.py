"""The foundations every backend shares.

The names load on first use, so that a module needing only ``response`` or ``backend`` does not
load the HTTP endpoint and aiohttp with them (D9).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lionpride.lazy import lazy_names

if TYPE_CHECKING:
    from lionpride.services.types.backend import Calling, ServiceBackend, ServiceConfig
    from lionpride.services.types.endpoint import APICalling, Endpoint, EndpointConfig
    from lionpride.services.types.response import NormalizedResponse, ToolCall, Usage
    from lionpride.services.types.tool import Tool, ToolCalling, ToolConfig

__all__ = [
    "APICalling",
    "Calling",
    "Endpoint",
    "EndpointConfig",
    "NormalizedResponse",
    "ServiceBackend",
    "ServiceConfig",
    "Tool",
    "ToolCall",
    "ToolCalling",
    "ToolConfig",
    "Usage",
]

_HOMES = {
    "APICalling": "lionpride.services.types.endpoint",
    "Calling": "lionpride.services.types.backend",
    "Endpoint": "lionpride.services.types.endpoint",
    "EndpointConfig": "lionpride.services.types.endpoint",
    "NormalizedResponse": "lionpride.services.types.response",
    "ServiceBackend": "lionpride.services.types.backend",
    "ServiceConfig": "lionpride.services.types.backend",
    "Tool": "lionpride.services.types.tool",
    "ToolCall": "lionpride.services.types.response",
    "ToolCalling": "lionpride.services.types.tool",
    "ToolConfig": "lionpride.services.types.tool",
    "Usage": "lionpride.services.types.response",
}


__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())
