"""A stdio MCP server for the tests, built with the official ``mcp`` SDK."""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("echo")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def env(name: str) -> str:
    """The value of an environment variable of the server process, or '<unset>'."""
    return os.environ.get(name, "<unset>")


@server.tool()
def fail(message: str) -> str:
    """Fail with the given message."""
    raise ToolError(message)


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def die() -> str:
    """Exit the server process in the middle of the call."""
    os._exit(3)


if __name__ == "__main__":
    if "--crash" in sys.argv:
        sys.stderr.write("echo server: cannot start (--crash given)\n")
        sys.exit(1)
    server.run()
