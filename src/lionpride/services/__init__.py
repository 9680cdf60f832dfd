"""lionpride.services: one async interface over LLM APIs, tools and MCP servers.

The public names load on first use (``from lionpride.services import iModel`` imports the
model layer and aiohttp then), so ``import lionpride.services`` itself stays cheap (D9).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lionpride._lazy import lazy_names

if TYPE_CHECKING:
    from lionpride.services.imodel import iModel
    from lionpride.services.registry import ServiceRegistry
    from lionpride.services.types.backend import Calling, ServiceBackend
    from lionpride.services.types.endpoint import Endpoint, EndpointConfig
    from lionpride.services.types.tool import Tool

__all__ = [
    "Calling",
    "Endpoint",
    "EndpointConfig",
    "ServiceBackend",
    "ServiceRegistry",
    "Tool",
    "iModel",
]

_HOMES = {
    "Calling": "lionpride.services.types.backend",
    "Endpoint": "lionpride.services.types.endpoint",
    "EndpointConfig": "lionpride.services.types.endpoint",
    "ServiceBackend": "lionpride.services.types.backend",
    "ServiceRegistry": "lionpride.services.registry",
    "Tool": "lionpride.services.types.tool",
    "iModel": "lionpride.services.imodel",
}


__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())
