"""MCP connections, one per server, pooled per registry.

Each connection is owned by one background task that enters the SDK's transport and
``ClientSession`` contexts and leaves them when the pool closes: the SDK's anyio task groups
must be entered and left by the same task. Calls from other tasks race the owner task, so a
server that dies mid-call fails the call at once instead of leaving it waiting.

A config with ``roots`` (directories as paths or ``file://`` URIs) declares the client's
``roots`` capability and answers the server's ``roots/list`` with them: servers such as the
reference filesystem server confine themselves to the roots the client names. A server asks
for them when it likes (the filesystem server right after the handshake, then applies them
in the background), so a call made at once may still find it without them.

The ``mcp`` SDK (the ``mcp`` extra, 2.x) is imported only when a connection is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO, cast
from urllib.parse import unquote, urlsplit

from lionpride import errors
from lionpride.errors import MCPConnectionError, MCPToolError

__all__ = ["MCPConnectionError", "MCPConnectionPool", "MCPToolError", "root_uris", "server_key"]

#: Seconds to connect and initialize a server before giving up.
CONNECT_TIMEOUT = 30.0
_INSTALL_HINT = "MCP tools need the mcp SDK: pip install 'lionpride[mcp]'"


def server_key(config: Mapping[str, Any]) -> str:
    """The pool key of a server config: its name, else the config itself as JSON."""
    name = config.get("name")
    return str(name) if name else json.dumps(dict(config), sort_keys=True, default=str)


def root_uris(roots: Iterable[str | os.PathLike[str]]) -> list[str]:
    """``file://`` URIs of ``roots``: a URI is kept, a path is made absolute and resolved.

    Raises:
        ConfigurationError: ``roots`` is a single string instead of a list, or a URI is not
            a ``file://`` URI.
    """
    if isinstance(roots, str | os.PathLike):
        raise errors.ConfigurationError(f"roots must be a list of directories, got {roots!r}")
    uris = []
    for root in roots:
        text = os.fspath(root)
        if "://" in text:
            if not text.startswith("file://"):
                raise errors.ConfigurationError(f"an MCP root must be a file:// URI: {text!r}")
            uris.append(text)
        else:
            uris.append(Path(text).expanduser().resolve().as_uri())
    return uris


def _import_mcp() -> Any:
    try:
        import mcp
    except ImportError as exc:  # pragma: no cover - the extra is installed in the test env
        raise errors.ConfigurationError(_INSTALL_HINT, cause=exc) from exc
    return mcp


class _Connection:
    """One live session with one server, owned by one background task."""

    def __init__(self, key: str, name: str | None, config: Mapping[str, Any]) -> None:
        self.key = key
        self.name = name
        self.config = dict(config)
        self.session: Any = None
        self.task: asyncio.Task[None] | None = None
        self.closing = asyncio.Event()
        self.stderr: TextIO | None = None

    @property
    def label(self) -> str:
        return f"MCP server {self.name!r}" if self.name else "MCP server"

    @property
    def alive(self) -> bool:
        task = self.task
        return (
            self.session is not None
            and task is not None
            and not task.done()
            and not self.closing.is_set()
        )

    async def open(self, timeout: float) -> None:
        """Start the owner task and wait until the session is initialized."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Named after the server, never the key: an unnamed config's key holds its env/headers.
        task_name = f"lionpride-mcp:{self.name or 'unnamed'}"
        self.task = asyncio.create_task(self._serve(ready), name=task_name)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait({ready, self.task}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError as exc:
            message = f"{self.label} did not answer within {timeout:g}s{self._stderr_tail()}"
            await self.close()
            raise MCPConnectionError(message) from exc
        except BaseException:
            await self.close()
            raise
        if not ready.done() or ready.exception() is not None:
            cause = ready.exception() if ready.done() else None
            message = f"{self.label} failed to start: {_describe(cause)}{self._stderr_tail()}"
            await self.close()
            raise MCPConnectionError(message, cause=cause)

    async def _serve(self, ready: asyncio.Future[None]) -> None:
        mcp = _import_mcp()
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport(stack))
                options: dict[str, Any] = {}
                if self.config.get("roots") is not None:
                    # Giving the callback is what declares the roots capability.
                    options["list_roots_callback"] = self._list_roots
                session = await stack.enter_async_context(mcp.ClientSession(read, write, **options))
                await session.initialize()
                self.session = session
                ready.set_result(None)
                await self.closing.wait()
        except Exception as exc:  # reported through ``ready`` or to the waiting calls
            if not ready.done():
                ready.set_exception(exc)
                ready.exception()  # retrieved: the opener reports it
        finally:
            self.session = None
            if not ready.done():
                ready.cancel()

    async def _list_roots(self, context: Any) -> Any:
        """The answer to the server's ``roots/list``: the config's roots."""
        from mcp_types import ListRootsResult, Root

        uris = root_uris(self.config.get("roots") or ())
        # The name is for people: the directory's own name, not its percent-encoded form.
        roots = [Root(uri=uri, name=Path(unquote(urlsplit(uri).path)).name) for uri in uris]
        return ListRootsResult(roots=roots)

    def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        cfg = self.config
        if cfg.get("url"):
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            client = httpx2.AsyncClient(
                headers=dict(cfg.get("headers") or {}),
                timeout=httpx2.Timeout(30.0, read=300.0),
            )
            stack.push_async_callback(client.aclose)
            return streamable_http_client(str(cfg["url"]), http_client=client)
        from mcp.client.stdio import StdioServerParameters, stdio_client

        # Only the variables given, plus PATH (and the SDK's short safe list: HOME, USER...).
        env = {"PATH": os.environ.get("PATH", os.defpath), **(cfg.get("env") or {})}
        params = StdioServerParameters(
            command=str(cfg["command"]),
            args=[str(a) for a in cfg.get("args") or ()],
            env={k: str(v) for k, v in env.items()},
            cwd=cfg.get("cwd"),
        )
        self.stderr = _stderr_file()
        return stdio_client(params, errlog=self.stderr)

    def _stderr_tail(self) -> str:
        if self.stderr is None or self.stderr.closed:
            return ""
        self.stderr.seek(0)
        text = self.stderr.read().strip()[-1000:]
        return f"; stderr: {text}" if text else ""

    async def call_tool(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call a tool, failing at once if the connection ends meanwhile."""
        session, owner = self.session, self.task
        if session is None or owner is None or not self.alive:
            raise MCPConnectionError(f"{self.label} is not connected")
        call = asyncio.ensure_future(session.call_tool(tool, arguments))
        try:
            await asyncio.wait({call, owner}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await call
        if not call.done() or call.cancelled():
            raise MCPConnectionError(f"{self.label} closed during a call of {tool!r}")
        exc = call.exception()
        if exc is None:
            return call.result()
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        if isinstance(exc, MCPError) and exc.code != CONNECTION_CLOSED:
            # The server answered with a JSON-RPC error: the tool failed, the link is fine.
            raise MCPToolError(exc.message, server=self.name, tool=tool) from exc
        # The link is gone: end this connection so that the pool opens a new one.
        self.closing.set()
        raise MCPConnectionError(
            f"{self.label} failed during a call of {tool!r}: {_describe(exc)}{self._stderr_tail()}",
            cause=exc,
        ) from exc

    async def list_tools(self) -> list[Any]:
        """Every tool the server offers, following pagination."""
        if self.session is None:
            raise MCPConnectionError(f"{self.label} is not connected")
        from mcp_types import PaginatedRequestParams

        tools: list[Any] = []
        cursor = None
        while True:
            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self.session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def close(self) -> None:
        """Leave the session and stop the server (stdio) or end the HTTP session."""
        self.closing.set()
        task = self.task
        try:
            if task is not None and not task.done():
                if self.session is None:
                    # Still starting (a slow or silent server): only ``closing.wait()`` sees
                    # ``closing``, so stop the start now rather than after the grace period.
                    task.cancel()
                # wait() neither raises the task's outcome nor cancels it at the timeout, and
                # lets a cancellation of this caller through.
                _, pending = await asyncio.wait({task}, timeout=10.0)
                if pending:
                    task.cancel()
                    await asyncio.wait(pending)
        finally:
            if self.stderr is not None:
                self.stderr.close()


class MCPConnectionPool:
    """The MCP connections of one registry: opened on first use, closed by :meth:`aclose`.

    Connections are keyed by server name (or, for unnamed inline configs, by the config); a
    connection that died is reopened on the next use.
    """

    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.connect_timeout = connect_timeout
        self.configs: dict[str, dict[str, Any]] = {}
        self._connections: dict[str, _Connection] = {}
        # One lock per server: a slow server starting up never holds up calls to the others.
        self._locks: dict[str, asyncio.Lock] = {}

    async def connection(self, config: Mapping[str, Any]) -> _Connection:
        """The live connection for ``config``, opened (or reopened) now if needed.

        Raises:
            ConfigurationError: The config has neither ``command`` nor ``url``.
            MCPConnectionError: The server would not start or answer.
        """
        if not config.get("command") and not config.get("url"):
            # Only the keys: the values may be credentials (env, headers).
            raise errors.ConfigurationError(
                "MCP server config needs 'command' (stdio) or 'url' (HTTP); "
                f"got keys {sorted(map(str, config))}"
            )
        if config.get("roots") is not None:
            root_uris(config["roots"])  # a bad root fails here, not inside the server's request
        key = server_key(config)
        conn = self._connections.get(key)
        if conn is not None and conn.alive:
            return conn
        async with self._locks.setdefault(key, asyncio.Lock()):
            conn = self._connections.get(key)
            if conn is not None and conn.alive:
                return conn
            if conn is not None:
                await conn.close()
            name = config.get("name")
            conn = _Connection(key, str(name) if name else None, config)
            await conn.open(self.connect_timeout)
            self._connections[key] = conn
            return conn

    async def call_tool(
        self, config: Mapping[str, Any], tool: str, arguments: dict[str, Any]
    ) -> Any:
        """Call ``tool`` on the server of ``config``; the result's value as :func:`tool_value`."""
        conn = await self.connection(config)
        result = await conn.call_tool(tool, arguments)
        return tool_value(result, server=conn.name, tool=tool)

    async def aclose(self) -> None:
        """Close every connection (stdio servers stop); the pool can be used again."""
        conns, self._connections = list(self._connections.values()), {}
        for conn in conns:
            await conn.close()

    def __len__(self) -> int:
        return sum(1 for c in self._connections.values() if c.alive)


def tool_value(result: Any, *, server: str | None, tool: str) -> Any:
    """The value of a ``CallToolResult``: its text, else its structured content, else content.

    Raises:
        MCPToolError: The result is an error; the message is the server's text.
    """
    content = list(getattr(result, "content", None) or ())
    texts = [c.text for c in content if getattr(c, "type", None) == "text"]
    if getattr(result, "is_error", False):
        message = "\n".join(texts) or f"tool {tool!r} failed"
        raise MCPToolError(message, server=server, tool=tool)
    if texts and len(texts) == len(content):
        return "\n".join(texts)
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        return structured
    return [c.model_dump(mode="json", exclude_none=True) for c in content]


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "the connection ended before the session was initialized"
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _stderr_file() -> TextIO:
    # A real file: the SDK hands it to the child process as its stderr.
    return cast(TextIO, tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace"))
