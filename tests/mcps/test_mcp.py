"""MCP tools through ServiceRegistry, against real stdio and HTTP servers built with the SDK."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests._processes import gone

pytest.importorskip("mcp")

from lionpride import errors
from lionpride.services import ServiceRegistry
from lionpride.services.mcps import MCPConnectionError, MCPToolError, MCPToolExistsError

SERVERS = Path(__file__).parent / "servers"
STDIO_TOOLS = ["echo", "add", "env", "fail", "pid", "die"]


def stdio_config(name: str | None = "echo", *extra: str, **env: str) -> dict[str, Any]:
    """A config that runs the stdio test server."""
    config: dict[str, Any] = {
        "command": sys.executable,
        "args": [str(SERVERS / "echo_stdio.py"), *extra],
        "env": env,
    }
    if name:
        config["name"] = name
    return config


@pytest.fixture
async def registry() -> AsyncIterator[ServiceRegistry]:
    """A registry whose MCP connections are closed after the test."""
    reg = ServiceRegistry()
    yield reg
    await reg.aclose()


@pytest.fixture
async def http_url() -> AsyncIterator[str]:
    """The URL of the streamable-HTTP test server, on a free loopback port."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVERS / "echo_http.py"), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 20))
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        await proc.wait()


async def call(registry: ServiceRegistry, model: str, /, **arguments: Any) -> Any:
    """Invoke a registered tool and return its value."""
    calling = await registry.get(model).invoke(**arguments)
    assert calling.response is not None
    return calling.response.data


async def test_stdio_tools_are_registered_and_called(registry: ServiceRegistry) -> None:
    """Every tool of a named server becomes <server>_<tool> with the server's schema."""
    names = await registry.register_mcp_server(stdio_config())
    assert names == [f"echo_{t}" for t in STDIO_TOOLS]
    assert await call(registry, "echo_echo", text="hi") == "hi"
    assert await call(registry, "echo_add", a=2) == "3"
    tool = registry.get("echo_add").backend
    assert tool.schema["required"] == ["a"]
    assert set(tool.schema["properties"]) == {"a", "b"}
    assert tool.description == "Add two integers."
    assert "mcp" in registry.get("echo_add").tags
    with pytest.raises(ValueError, match="'a'"):
        await registry.get("echo_add").invoke(b=1)


async def test_one_pooled_connection_per_server(registry: ServiceRegistry) -> None:
    """Calls share one server process, which registry.aclose() stops."""
    await registry.register_mcp_server(stdio_config(), tool_names=["pid", "echo"])
    first = await call(registry, "echo_pid")
    assert await call(registry, "echo_echo", text="x") == "x"
    assert await call(registry, "echo_pid") == first
    assert len(registry.mcp_pool) == 1
    await registry.aclose()
    assert gone(int(first))
    assert len(registry.mcp_pool) == 0


async def test_stdio_env_is_only_what_was_given(
    registry: ServiceRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server sees its configured variables and PATH, not the parent's other variables."""
    monkeypatch.setenv("LIONPRIDE_TEST_SECRET", "leak")
    await registry.register_mcp_server(stdio_config(GREETING="hello"), tool_names=["env"])
    assert await call(registry, "echo_env", name="GREETING") == "hello"
    assert await call(registry, "echo_env", name="LIONPRIDE_TEST_SECRET") == "<unset>"
    assert await call(registry, "echo_env", name="PATH") == os.environ["PATH"]


async def test_unnamed_server_uses_bare_tool_names(registry: ServiceRegistry) -> None:
    """Without a server name, tools keep their own names."""
    names = await registry.register_mcp_server(stdio_config(None), tool_names=["echo"])
    assert names == ["echo"]
    assert await call(registry, "echo", text="bare") == "bare"


async def test_unknown_tool_name_is_refused(registry: ServiceRegistry) -> None:
    """Asking for a tool the server lacks names the tools it offers."""
    with pytest.raises(ValueError, match=r"'nope'.*offered: echo"):
        await registry.register_mcp_server(stdio_config(), tool_names=["echo", "nope"])
    assert len(registry) == 0


async def test_tool_error_carries_the_server_message(registry: ServiceRegistry) -> None:
    """A tool that fails raises MCPToolError with the server's own message."""
    await registry.register_mcp_server(stdio_config(), tool_names=["fail"])
    with pytest.raises(MCPToolError, match="disk is full") as info:
        await registry.get("echo_fail").invoke(message="disk is full")
    assert (info.value.server, info.value.tool) == ("echo", "fail")
    assert info.value.calling is not None


async def test_name_collision_needs_update(registry: ServiceRegistry) -> None:
    """Registering a server twice fails unless update=True, and a failure registers nothing."""
    await registry.register_mcp_server(stdio_config(), tool_names=["echo"])
    first = registry.get("echo_echo")
    with pytest.raises(MCPToolExistsError, match="echo_echo"):
        await registry.register_mcp_server(stdio_config(), tool_names=["add", "echo"])
    assert registry.list_names() == ["echo_echo"]
    assert isinstance(MCPToolExistsError("x"), ValueError)
    await registry.register_mcp_server(stdio_config(), tool_names=["echo"], update=True)
    assert registry.get("echo_echo") is not first


async def test_server_that_will_not_start(registry: ServiceRegistry, tmp_path: Path) -> None:
    """A crashing or missing server command is an MCPConnectionError naming the cause."""
    with pytest.raises(MCPConnectionError, match="cannot start"):
        await registry.register_mcp_server(stdio_config("bad", "--crash"))
    missing = {"name": "ghost", "command": str(tmp_path / "no-such-server")}
    with pytest.raises(MCPConnectionError, match="ghost"):
        await registry.register_mcp_server(missing)
    with pytest.raises(errors.ConfigurationError, match="command"):
        await registry.register_mcp_server({"name": "empty"})
    assert len(registry) == 0


async def test_server_dying_mid_call_fails_and_reconnects(registry: ServiceRegistry) -> None:
    """A server that exits during a call fails that call; the next call starts a new one."""
    await registry.register_mcp_server(stdio_config(), tool_names=["die", "pid"])
    before = await call(registry, "echo_pid")
    with pytest.raises(MCPConnectionError, match="die"):
        await registry.get("echo_die").invoke()
    after = await call(registry, "echo_pid")
    assert after != before and gone(int(before))


async def test_http_server_with_headers(registry: ServiceRegistry, http_url: str) -> None:
    """A streamable-HTTP server is reached with the configured headers."""
    config = {"name": "web", "url": http_url, "headers": {"x-test-token": "secret"}}
    names = await registry.register_mcp_server(config)
    assert names == ["web_shout", "web_stats"]
    assert await call(registry, "web_shout", text="hi") == "HI"
    assert json.loads(await call(registry, "web_stats", values=[3, 1, 2])) == {
        "min": 1,
        "max": 3,
    }


async def test_http_server_refusing_the_client(registry: ServiceRegistry, http_url: str) -> None:
    """An HTTP server that refuses the connection is an MCPConnectionError."""
    with pytest.raises(MCPConnectionError, match="web"):
        await registry.register_mcp_server({"name": "web", "url": http_url})


async def test_load_mcp_config_file(registry: ServiceRegistry, tmp_path: Path) -> None:
    """A {"mcpServers": ...} file registers each server; one that fails maps to []."""
    path = tmp_path / "mcp.json"
    servers = {
        "echo": {k: v for k, v in stdio_config().items() if k != "name"},
        "broken": {k: v for k, v in stdio_config(None, "--crash").items()},
    }
    path.write_text(json.dumps({"mcpServers": servers}))
    loaded = await registry.load_mcp_config(path)
    assert loaded == {"echo": [f"echo_{t}" for t in STDIO_TOOLS], "broken": []}
    assert await call(registry, "echo_echo", text="file") == "file"
    # Once loaded, a server can be registered again by name alone.
    assert await registry.register_mcp_server({"server": "echo"}, ["add"], update=True) == [
        "echo_add"
    ]


async def test_load_mcp_config_errors(registry: ServiceRegistry, tmp_path: Path) -> None:
    """Missing files, bad JSON, bad shapes and unknown server names raise clearly."""
    with pytest.raises(FileNotFoundError):
        await registry.load_mcp_config(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        await registry.load_mcp_config(bad)
    bad.write_text(json.dumps({"servers": {}}))
    with pytest.raises(ValueError, match="mcpServers"):
        await registry.load_mcp_config(bad)
    bad.write_text(json.dumps({"mcpServers": {"a": {"command": "x"}}}))
    with pytest.raises(ValueError, match="'b'"):
        await registry.load_mcp_config(bad, server_names=["b"])
    with pytest.raises(ValueError, match="load_mcp_config"):
        await registry.register_mcp_server({"server": "unknown"})


def test_importing_services_does_not_import_mcp() -> None:
    """The mcp SDK is loaded by the first connection, never by importing the library."""
    code = (
        "import sys, lionpride.services; print(any(m.split('.')[0] == 'mcp' for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_discovery_skips_taken_names_and_reports_them(
    registry: ServiceRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Without tool_names, a tool whose name is taken is skipped, warned about (a log record
    and a warning) and reported."""
    await registry.register_mcp_server(stdio_config(), tool_names=["echo"])
    first = registry.get("echo_echo")
    with pytest.warns(UserWarning, match="echo_echo"):
        names = await registry.register_mcp_server(stdio_config())
    assert names == [f"echo_{t}" for t in STDIO_TOOLS if t != "echo"]
    assert names.skipped == ["echo_echo"]
    assert registry.get("echo_echo") is first
    assert any("echo_echo" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert await call(registry, "echo_add", a=1) == "2"
    again = await registry.register_mcp_server(stdio_config(), update=True)
    assert again == [f"echo_{t}" for t in STDIO_TOOLS] and again.skipped == []
    assert registry.get("echo_echo") is not first


async def test_load_mcp_config_skips_taken_names_and_expands_home(
    registry: ServiceRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config file at ``~/...`` loads; loading it again skips every name already taken."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".claude").mkdir()
    server = {k: v for k, v in stdio_config().items() if k != "name"}
    (tmp_path / ".claude" / "mcp.json").write_text(json.dumps({"mcpServers": {"echo": server}}))
    loaded = await registry.load_mcp_config("~/.claude/mcp.json")
    assert loaded == {"echo": [f"echo_{t}" for t in STDIO_TOOLS]}
    reloaded = await registry.load_mcp_config("~/.claude/mcp.json")
    assert reloaded == {"echo": []}
    assert reloaded["echo"].skipped == [f"echo_{t}" for t in STDIO_TOOLS]
    assert len(registry) == len(STDIO_TOOLS)
