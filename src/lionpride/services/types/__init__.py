"""The foundations every backend shares."""

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
