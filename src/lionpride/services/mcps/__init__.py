"""Tools from MCP servers, as Tool-backed models (``ServiceRegistry.register_mcp_server``).

A server config is a dict in the ``mcpServers`` format that Claude Desktop and Claude Code use:
stdio servers have ``command`` (plus ``args`` and ``env``), streamable-HTTP servers have
``url`` (plus ``headers``); ``name`` names the server. Importing this package does not import
the ``mcp`` SDK; the first connection does.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from lionpride import errors
from lionpride.errors import MCPToolExistsError
from lionpride.services.mcps._pool import (
    MCPConnectionError,
    MCPConnectionPool,
    MCPToolError,
    tool_value,
)
from lionpride.services.types.tool import Tool, ToolConfig

__all__ = [
    "MCPConnectionError",
    "MCPConnectionPool",
    "MCPToolError",
    "MCPToolExistsError",
    "RegisteredTools",
    "create_mcp_callable",
    "load_mcp_config",
    "load_mcp_tools",
    "tool_value",
]


class RegisteredTools(list[str]):
    """The registry names of the tools one MCP server registration added, in order.

    A plain list of names, plus ``skipped``: the tools found by discovery (no explicit
    ``tool_names``) that were left out because their names were already registered.
    """

    def __init__(self, names: Iterable[str] = (), skipped: Iterable[str] = ()) -> None:
        super().__init__(names)
        self.skipped: list[str] = list(skipped)


def load_mcp_config(
    path: str | Path, server_names: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Read a ``{"mcpServers": {name: config}}`` file; each config gets its ``name``.

    Args:
        path: The JSON file (``~`` is expanded).
        server_names: Only these servers (all when ``None``).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not JSON, not that shape, a server without ``command`` or ``url``, or a
            requested server that is not in the file.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"MCP config file not found: {file}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise errors.ConfigurationError(f"{file} is not valid JSON: {exc}") from exc
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise errors.ConfigurationError(f"{file} has no 'mcpServers' object")
    wanted = list(servers) if server_names is None else list(server_names)
    missing = [n for n in wanted if n not in servers]
    if missing:
        raise errors.ConfigurationError(
            f"server(s) {', '.join(map(repr, missing))} not in {file}; "
            f"available: {', '.join(servers) or '(none)'}"
        )
    out: dict[str, dict[str, Any]] = {}
    for name in wanted:
        config = servers[name]
        if not isinstance(config, dict) or not (config.get("command") or config.get("url")):
            raise errors.ConfigurationError(
                f"server {name!r} in {file} needs 'command' (stdio) or 'url' (HTTP)"
            )
        out[name] = {**config, "name": name}
    return out


def create_mcp_callable(
    pool: MCPConnectionPool, config: Mapping[str, Any], tool: str
) -> Callable[..., Awaitable[Any]]:
    """An async function that calls ``tool`` on the server of ``config`` through ``pool``.

    It returns the tool's text (or structured content) and raises :class:`MCPToolError` with
    the server's message when the tool fails.
    """
    frozen = dict(config)

    async def call_mcp_tool(**arguments: Any) -> Any:
        return await pool.call_tool(frozen, tool, arguments)

    call_mcp_tool.__name__ = tool
    call_mcp_tool.__qualname__ = tool
    return call_mcp_tool


async def load_mcp_tools(
    pool: MCPConnectionPool, config: Mapping[str, Any], tool_names: list[str] | None = None
) -> list[Tool]:
    """Connect to a server and wrap its tools (or the named ones) as :class:`Tool` backends.

    Each tool keeps the server's input schema and description; its name is
    ``<server>_<tool>`` when the config has a ``name``, else the tool's own name.

    Raises:
        MCPConnectionError: The server would not start or answer.
        ValueError: A name in ``tool_names`` that the server does not offer.
    """
    conn = await pool.connection(config)
    offered = {t.name: t for t in await conn.list_tools()}
    names = list(offered) if tool_names is None else list(tool_names)
    missing = [n for n in names if n not in offered]
    if missing:
        raise errors.ValidationError(
            f"{conn.label} has no tool(s) {', '.join(map(repr, missing))}; "
            f"offered: {', '.join(offered) or '(none)'}"
        )
    server = conn.name
    tools = []
    for name in names:
        remote = offered[name]
        function: dict[str, Any] = {"name": name, "parameters": dict(remote.input_schema or {})}
        if remote.description:
            function["description"] = remote.description
        tools.append(
            Tool(
                func_callable=create_mcp_callable(pool, config, name),
                config=ToolConfig(
                    name=f"{server}_{name}" if server else name,
                    provider=server or "mcp",
                    tags=("mcp", server) if server else ("mcp",),
                ),
                tool_schema={"type": "function", "function": function},
            )
        )
    return tools
