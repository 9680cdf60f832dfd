"""lionpride: one async interface over LLM APIs, tools and MCP servers."""

import logging

logging.getLogger("lionpride").addHandler(logging.NullHandler())

__version__ = "0.1.0"
__all__ = ["__version__"]
