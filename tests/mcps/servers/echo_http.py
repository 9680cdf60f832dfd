"""A streamable-HTTP MCP server for the tests: binds a free loopback port and prints it.

Requests without the header ``x-test-token: secret`` are refused with 401, so the tests can
tell that configured headers reach the server.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("web")


@server.tool()
def shout(text: str) -> str:
    """Return the text in upper case."""
    return text.upper()


@server.tool()
def stats(values: list[float]) -> dict[str, float]:
    """Minimum and maximum of the values."""
    return {"min": min(values), "max": max(values)}


def guarded(app: Any) -> Any:
    """Refuse HTTP requests that lack the test token."""

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"x-test-token") != b"secret":
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"missing token"})
            return
        await app(scope, receive, send)

    return wrapper


async def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections wait in the backlog until uvicorn accepts them
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(guarded(server.streamable_http_app()), log_level="warning")
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    asyncio.run(main())
