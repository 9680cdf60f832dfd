"""lionpride.services: one async interface over LLM APIs, tools and MCP servers.

The public names load on first use (``from lionpride.services import iModel`` imports the
model layer and aiohttp then), so ``import lionpride.services`` itself stays cheap (D9).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'lionpride.services' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
