"""ServiceRegistry with the reference MCP servers (npm/, pinned): everything and filesystem."""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from tests._programs import Fifo, ends_soon, process_group_of_child, program

from lionpride import errors
from lionpride.services import ServiceRegistry
from lionpride.services.mcps import MCPToolError


def server(name: str, *args: str) -> dict[str, Any]:
    """The stdio config of one pinned reference server, registered as ``name``."""
    binary = {"ev": "mcp-server-everything", "fs": "mcp-server-filesystem"}[name]
    return {"name": name, "command": str(program(binary)), "args": list(args)}


class ServerLog(Fifo):
    """A server's stderr through a FIFO, read line by line as the server writes it.

    The filesystem server applies the roots it listed in the background and says so on
    stderr; a test waits for that line instead of racing it.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(directory / "stderr.fifo")

    def config(self, name: str) -> dict[str, Any]:
        """``server(name)`` run through ``sh`` with its stderr sent to the FIFO."""
        binary = server(name)["command"]
        script = f'exec "$0" 2>{shlex.quote(str(self.path))}'
        return {"name": name, "command": "/bin/sh", "args": ["-c", script, binary]}


@pytest.fixture
async def fs_log(tmp_path: Path) -> AsyncIterator[ServerLog]:
    """A FIFO to run the filesystem server with, read while the test runs."""
    log = ServerLog(tmp_path)
    await log.open()
    yield log
    log.close()


#: What the filesystem server writes once it applied the roots it listed.
ROOTS_APPLIED = "Updated allowed directories from MCP roots"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A directory holding one file, ``a.txt``, and a sibling directory it does not contain."""
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "a.txt").write_text("inside\n")
    (tmp_path / "outside.txt").write_text("outside\n")
    return (tmp_path / "ws").resolve()


@pytest.fixture
async def registry(workspace: Path) -> AsyncIterator[ServiceRegistry]:
    """A registry whose workspace is ``workspace``, closed after the test."""
    reg = ServiceRegistry(workspace=workspace)
    yield reg
    await reg.aclose()


async def call(registry: ServiceRegistry, name: str, **arguments: Any) -> Any:
    """The value one registered MCP tool returns."""
    calling = await registry.get(name).invoke(**arguments)
    assert calling.response is not None
    return calling.response.data


async def test_filesystem_server_is_confined_to_the_workspace_root(
    registry: ServiceRegistry, workspace: Path, fs_log: ServerLog
) -> None:
    """Started without a directory, the server takes the registry's workspace as its root."""
    names = await registry.register_mcp_server(fs_log.config("fs"))
    await fs_log.wait_for(ROOTS_APPLIED)
    assert {"fs_read_text_file", "fs_list_allowed_directories"} <= set(names)
    assert str(workspace) in await call(registry, "fs_list_allowed_directories")
    assert await call(registry, "fs_read_text_file", path=str(workspace / "a.txt")) == "inside\n"


async def test_filesystem_server_reports_its_errors(
    registry: ServiceRegistry, workspace: Path, fs_log: ServerLog
) -> None:
    """A path outside the roots and a missing file fail with the server's own message."""
    await registry.register_mcp_server(fs_log.config("fs"))
    await fs_log.wait_for(ROOTS_APPLIED)
    outside = workspace.parent / "outside.txt"
    with pytest.raises(MCPToolError, match="outside allowed directories") as caught:
        await call(registry, "fs_read_text_file", path=str(outside))
    assert caught.value.server == "fs" and caught.value.tool == "read_text_file"
    with pytest.raises(MCPToolError, match=r"ENOENT|no such file"):
        await call(registry, "fs_read_text_file", path=str(workspace / "missing.txt"))


async def test_explicit_roots_win_and_no_roots_means_no_access(
    workspace: Path, tmp_path: Path, fs_log: ServerLog
) -> None:
    """roots= replaces the workspace; a registry without either declares no roots at all."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.txt").write_text("other\n")
    reg = ServiceRegistry(workspace=workspace)
    bare = ServiceRegistry()
    try:
        await reg.register_mcp_server(fs_log.config("fs"), roots=[other])
        await fs_log.wait_for(ROOTS_APPLIED)
        assert await call(reg, "fs_read_text_file", path=str(other / "b.txt")) == "other\n"
        with pytest.raises(MCPToolError, match="outside allowed directories"):
            await call(reg, "fs_read_text_file", path=str(workspace / "a.txt"))
        await bare.register_mcp_server(server("fs"))
        with pytest.raises(MCPToolError, match="outside allowed directories"):
            await call(bare, "fs_read_text_file", path=str(other / "b.txt"))
    finally:
        await reg.aclose()
        await bare.aclose()


async def test_everything_server_discovery_calls_and_roots(
    registry: ServiceRegistry, workspace: Path
) -> None:
    """The everything server's tools are found and called; it lists the declared root."""
    names = await registry.register_mcp_server(server("ev"))
    assert {"ev_echo", "ev_get-sum", "ev_get-roots-list"} <= set(names)
    assert await call(registry, "ev_echo", message="hi") == "Echo: hi"
    assert await call(registry, "ev_get-sum", a=2, b=3) == "The sum of 2 and 3 is 5."
    listed = await call(registry, "ev_get-roots-list")
    assert workspace.as_uri() in listed
    with pytest.raises(errors.ValidationError, match="'b'"):
        await call(registry, "ev_get-sum", a=2)


async def test_roots_with_spaces_and_unicode_keep_their_names(tmp_path: Path) -> None:
    """A root whose path holds a space, an accent, '#' and '%' is listed by URI and by name."""
    odd = tmp_path / "my dir é#%x"
    odd.mkdir()
    reg = ServiceRegistry(workspace=odd)
    try:
        await reg.register_mcp_server(server("ev"))
        listed = await call(reg, "ev_get-roots-list")
    finally:
        await reg.aclose()
    assert f"URI: {odd.as_uri()}" in listed and "%20dir%20%C3%A9%23%25x" in odd.as_uri()
    assert "1. my dir é#%x\n" in listed


async def test_everything_server_without_roots_hides_the_roots_tool() -> None:
    """Without declared roots the server offers no roots tool (the capability is off)."""
    reg = ServiceRegistry()
    try:
        names = await reg.register_mcp_server(server("ev"))
        assert "ev_echo" in names and "ev_get-roots-list" not in names
    finally:
        await reg.aclose()


async def test_closing_the_registry_stops_the_servers(workspace: Path) -> None:
    """aclose ends both server processes and everything they started."""
    reg = ServiceRegistry(workspace=workspace)
    await reg.register_mcp_server(server("ev"))
    await reg.register_mcp_server(server("fs"))
    groups = process_group_of_child("mcp-server-everything")
    groups += process_group_of_child("mcp-server-filesystem")
    await reg.aclose()
    assert groups and all([await ends_soon(pid) for pid in groups])


@pytest.mark.parametrize("roots", ["/a/single/string", ["https://example.invalid/dir"]])
async def test_malformed_roots_are_refused_before_the_server_starts(roots: Any) -> None:
    """A single string or a non-file URI as roots is a ConfigurationError naming the problem."""
    reg = ServiceRegistry()
    try:
        with pytest.raises(errors.ConfigurationError, match=r"roots? must be"):
            await reg.register_mcp_server({"name": "x", "command": "/nonexistent"}, roots=roots)
        assert len(reg.mcp_pool) == 0
    finally:
        await reg.aclose()
