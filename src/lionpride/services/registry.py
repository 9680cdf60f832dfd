"""ServiceRegistry: named ``iModel`` instances, looked up by name, id or tag.

The registry lives in memory only; rebuild it from configuration at start-up (SPEC §11.13).
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from lionpride import errors
from lionpride.services.imodel import iModel
from lionpride.services.mcps import (
    MCPConnectionError,
    MCPConnectionPool,
    MCPToolExistsError,
    RegisteredTools,
    load_mcp_tools,
)
from lionpride.services.mcps import load_mcp_config as read_mcp_config

__all__ = ["ServiceRegistry"]

#: What :meth:`ServiceRegistry.get` accepts: a name, an id (or its string form), or the model.
ServiceKey = str | UUID | iModel

_log = logging.getLogger(__name__)


class ServiceRegistry:
    """Models by name, with a tag index.

    Safe for concurrent use by many asyncio tasks without a lock: every method that changes
    the registry is synchronous, so no other task can run between its check (is the name
    taken?) and its update. Only :meth:`aclose` awaits, and it works on a snapshot. The
    registry is not thread-safe; use it from one event loop.

    Args:
        workspace: The directory the registry's tools work in, if any: MCP servers
            registered without ``roots`` are given it as their one root.

    Example:
        >>> registry = ServiceRegistry()
        >>> registry.register(iModel(backend=Tool(func_callable=get_weather)))
        >>> calling = await registry.get("get_weather").invoke(location="Paris")
    """

    __slots__ = ("_by_id", "_by_name", "_by_tag", "_mcp", "_name_of", "workspace")

    def __init__(self, workspace: str | os.PathLike[str] | None = None) -> None:
        self.workspace = Path(workspace) if workspace is not None else None
        self._by_id: dict[UUID, iModel] = {}
        self._by_name: dict[str, UUID] = {}  # in registration order
        self._name_of: dict[UUID, str] = {}
        self._by_tag: dict[str, dict[UUID, None]] = {}  # ordered sets of ids
        self._mcp: MCPConnectionPool | None = None  # opened on the first MCP server

    # -- registration ----------------------------------------------------------------------

    def register(self, model: iModel, update: bool = False) -> UUID:
        """Add ``model`` under its current name and return its id.

        Args:
            model: The model; its ``name`` at this moment is the key.
            update: Replace a model already registered under that name (or the same model
                registered under another name) instead of failing.

        Raises:
            TypeError: ``model`` is not an :class:`iModel`.
            ValueError: The name is taken and ``update`` is false; nothing changes.
        """
        if not isinstance(model, iModel):
            raise TypeError(f"register() needs an iModel, got {type(model).__name__}")
        name = model.name
        taken = self._by_name.get(name)
        previous = self._name_of.get(model.id)
        if not update:
            if taken is not None:
                raise errors.ValidationError(
                    f"Service '{name}' already registered (pass update=True to replace it)"
                )
            if previous is not None:
                raise errors.ValidationError(
                    f"this model is already registered as '{previous}' "
                    "(pass update=True to re-register it)"
                )
        if taken is not None:
            self._remove(name)
        if previous is not None and previous != name:
            self._remove(previous)
        self._by_id[model.id] = model
        self._by_name[name] = model.id
        self._name_of[model.id] = name
        for tag in model.tags:
            self._by_tag.setdefault(tag, {})[model.id] = None
        return model.id

    def unregister(self, key: ServiceKey) -> iModel:
        """Remove a model (by name, id or instance) and return it; it is not closed.

        Raises:
            KeyError: No such model (the message lists the registered names).
        """
        return self._remove(self._name_of[self.get(key).id])

    def clear(self) -> None:
        """Remove every model (without closing them)."""
        self._by_id.clear()
        self._by_name.clear()
        self._name_of.clear()
        self._by_tag.clear()

    def _remove(self, name: str) -> iModel:
        model_id = self._by_name.pop(name)
        model = self._by_id.pop(model_id)
        del self._name_of[model_id]
        for tag, ids in list(self._by_tag.items()):
            ids.pop(model_id, None)
            if not ids:
                del self._by_tag[tag]
        return model

    # -- lookup ----------------------------------------------------------------------------

    def get(self, key: ServiceKey) -> iModel:
        """Return the model registered under a name, an id (or its string form) or itself.

        Raises:
            KeyError: No such model; the message lists the registered names.
        """
        model = self._find(key)
        if model is None:
            raise KeyError(f"Service '{key}' not found; registered: {self._names_text()}")
        return model

    def _find(self, key: Any) -> iModel | None:
        if isinstance(key, iModel):
            return self._by_id.get(key.id)
        if isinstance(key, UUID):
            return self._by_id.get(key)
        if not isinstance(key, str):
            return None
        model_id = self._by_name.get(key)
        if model_id is None:
            try:
                model_id = UUID(key)
            except ValueError:
                return None
        return self._by_id.get(model_id)

    def has(self, key: object) -> bool:
        """Whether a name, id (or its string form) or model is registered."""
        return self._find(key) is not None

    def __contains__(self, key: object) -> bool:
        return self._find(key) is not None

    def list_names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._by_name)

    def list_by_tag(self, tag: str) -> list[iModel]:
        """Models carrying ``tag``, in registration order."""
        return [self._by_id[i] for i in self._by_tag.get(tag, ())]

    def count(self) -> int:
        """The number of registered models."""
        return len(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[iModel]:
        # A snapshot, so registering while iterating is safe.
        return iter(list(self._by_id.values()))

    def __repr__(self) -> str:
        return f"ServiceRegistry(count={len(self._by_id)})"

    def _names_text(self) -> str:
        return ", ".join(self._by_name) or "(none)"

    # -- MCP servers -----------------------------------------------------------------------

    @property
    def mcp_pool(self) -> MCPConnectionPool:
        """This registry's MCP connections (closed by :meth:`aclose`)."""
        if self._mcp is None:
            self._mcp = MCPConnectionPool()
        return self._mcp

    async def register_mcp_server(
        self,
        config: Mapping[str, Any],
        tool_names: list[str] | None = None,
        update: bool = False,
        *,
        roots: Sequence[str | os.PathLike[str]] | None = None,
    ) -> RegisteredTools:
        """Register the tools of one MCP server as Tool-backed models; return their names.

        Args:
            config: A server config: ``{"name": ..., "command": ..., "args": [...],
                "env": {...}}`` (stdio) or ``{"name": ..., "url": ..., "headers": {...}}``
                (streamable HTTP); or ``{"server": name}`` for a server read by
                :meth:`load_mcp_config`. With a name, tools are registered as
                ``<server>_<tool>``; without, under their own names.
            tool_names: Only these tools (all the server offers when ``None``).
            update: Replace models already registered under the same names.
            roots: Directories (paths or ``file://`` URIs) the client declares as its roots
                and lists when the server asks (``roots/list``); default the config's
                ``roots``, else the registry's ``workspace``, else none (no roots
                capability). They are fixed when the server's connection opens.

        Returns:
            The registered names; without ``tool_names`` and ``update``, a discovered tool
            whose name is taken is skipped with a warning and listed in ``.skipped``.

        Raises:
            MCPConnectionError: The server would not start or answer.
            MCPToolExistsError: A name in ``tool_names`` is taken and ``update`` is false
                (a ``ValueError``); nothing is registered then.
            ValueError: A bad config, or a requested tool the server does not offer.
        """
        pool = self.mcp_pool
        config = dict(config)
        server = config.pop("server", None)
        if server is not None:
            known = pool.configs.get(str(server), {})
            config = {**known, **config, "name": str(server)}
            if not (config.get("command") or config.get("url")):
                raise errors.ConfigurationError(
                    f"MCP server {server!r} is unknown: load it with load_mcp_config() first, "
                    "or give its 'command' or 'url'"
                )
        if roots is not None:
            config["roots"] = roots
        elif config.get("roots") is None and self.workspace is not None:
            config["roots"] = [self.workspace]
        tools = await load_mcp_tools(pool, config, tool_names)
        taken = [tool.name for tool in tools if tool.name in self._by_name]
        skipped: list[str] = []
        if taken and not update:
            listed = ", ".join(map(repr, taken))
            if tool_names is not None:
                raise MCPToolExistsError(
                    f"MCP tool name(s) {listed} already registered "
                    "(pass update=True to replace them)"
                )
            # Discovery asked for whatever the server offers: the models already registered
            # under those names stay, the server's duplicates are left out.
            _log.warning(
                "MCP tool name(s) %s already registered; skipped (pass update=True to "
                "replace them)",
                listed,
            )
            warnings.warn(f"MCP tool name(s) {listed} already registered; skipped", stacklevel=2)
            skipped = taken
            tools = [tool for tool in tools if tool.name not in taken]
        for tool in tools:
            self.register(iModel(backend=tool), update=update)
        return RegisteredTools((tool.name for tool in tools), skipped=skipped)

    async def load_mcp_config(
        self,
        config_path: str | Path,
        server_names: list[str] | None = None,
        update: bool = False,
    ) -> dict[str, RegisteredTools]:
        """Register the tools of the servers in a ``{"mcpServers": {...}}`` file.

        A server that will not start is logged and maps to ``[]``; the others still load.
        Tools whose names are already registered are skipped with a warning unless
        ``update`` (each server's ``.skipped``, see :meth:`register_mcp_server`).

        Returns:
            Server name → the registered tool names.

        Raises:
            FileNotFoundError: No such file.
            ValueError: Bad JSON or shape, or an unknown server name.
        """
        # File reading is blocking work: done in a thread, off the event loop.
        configs = await asyncio.to_thread(read_mcp_config, config_path, server_names)
        self.mcp_pool.configs.update(configs)
        loaded: dict[str, RegisteredTools] = {}
        for name in configs:
            try:
                loaded[name] = await self.register_mcp_server({"server": name}, update=update)
            except MCPConnectionError as exc:
                _log.warning("MCP server %r not loaded: %s", name, exc)
                warnings.warn(f"MCP server {name!r} not loaded: {exc}", stacklevel=2)
                loaded[name] = RegisteredTools()
        return loaded

    # -- lifetime --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every registered model and the MCP connections; models stay registered.

        One model failing to close does not stop the others. Afterwards the only error is
        re-raised, or several are raised together as an ``ExceptionGroup``.
        """
        failures: list[Exception] = []
        for model in list(self._by_id.values()):
            try:
                await model.aclose()
            except Exception as exc:  # close the rest first; cancellation still propagates
                failures.append(exc)
        if self._mcp is not None:
            try:
                await self._mcp.aclose()
            except Exception as exc:
                failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise ExceptionGroup(f"{len(failures)} services failed to close", failures)
