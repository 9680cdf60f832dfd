"""lionpride.services: one async interface over LLM APIs, tools and MCP servers."""

from lionpride.services.imodel import iModel
from lionpride.services.types.backend import Calling, ServiceBackend
from lionpride.services.types.endpoint import Endpoint, EndpointConfig

__all__ = ["Calling", "Endpoint", "EndpointConfig", "ServiceBackend", "iModel"]
