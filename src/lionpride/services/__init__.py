"""lionpride.services: one async interface over LLM APIs, tools and MCP servers."""

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
