"""MCP server configs carry credentials (env, headers): none may show in errors or task names."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests._processes import gone

pytest.importorskip("mcp")

from lionpride import errors
from lionpride.services.mcps import MCPConnectionError, MCPConnectionPool

SECRET = "sk-live-0123456789abcdef"
SERVER = Path(__file__).parent / "servers" / "echo_stdio.py"


@pytest.fixture
async def pool() -> AsyncIterator[MCPConnectionPool]:
    """A pool closed after the test."""
    mcp_pool = MCPConnectionPool(connect_timeout=20)
    yield mcp_pool
    await mcp_pool.aclose()


async def test_config_error_does_not_quote_the_config(pool: MCPConnectionPool) -> None:
    """A config without command or url is refused without echoing its headers or env."""
    config = {"name": "remote", "headers": {"Authorization": f"Bearer {SECRET}"}}
    with pytest.raises(errors.ConfigurationError, match="'command'") as info:
        await pool.connection(config)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


async def test_unnamed_server_task_name_has_no_credentials(pool: MCPConnectionPool) -> None:
    """The owner task of an unnamed server is not named after its config (env holds keys)."""
    config = {"command": sys.executable, "args": [str(SERVER)], "env": {"API_TOKEN": SECRET}}
    await pool.connection(config)
    assert len(pool) == 1
    names = [task.get_name() + repr(task) for task in asyncio.all_tasks()]
    assert not [name for name in names if SECRET in name]


async def test_silent_server_fails_within_the_connect_timeout(tmp_path: Path) -> None:
    """A server that never answers fails after connect_timeout, not seconds later."""
    pid_file = tmp_path / "pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    pool = MCPConnectionPool(connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(MCPConnectionError, match=r"did not answer within 0\.5s"):
        await pool.connection({"name": "mute", "command": sys.executable, "args": ["-c", script]})
    assert time.monotonic() - started < 5
    await pool.aclose()
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("lionpride-mcp")] == []
    pid = int(pid_file.read_text())
    if not gone(pid):
        os.kill(pid, 9)
        pytest.fail("the silent server outlived its pool")


async def test_a_slow_server_starting_does_not_hold_up_another(tmp_path: Path) -> None:
    """While one server is still starting, a call to another server goes through."""
    script = "import time; time.sleep(60)"
    pool = MCPConnectionPool(connect_timeout=3)
    slow = asyncio.ensure_future(
        pool.connection({"name": "slow", "command": sys.executable, "args": ["-c", script]})
    )
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await pool.connection({"name": "echo", "command": sys.executable, "args": [str(SERVER)]})
    assert time.monotonic() - started < 2.5 and not slow.done()
    with pytest.raises(MCPConnectionError):
        await slow
    await pool.aclose()
