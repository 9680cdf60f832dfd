"""The real programs the tests drive (DESIGN D16), installed by ``make programs`` into npm/.

:func:`program` finds one of them or skips the test with the reason; under
``LIONPRIDE_REQUIRE_CLIS=1`` (set by ``.ci/run``) a missing program fails the test instead.
:func:`claude_env` and :func:`gemini_env` give each CLI an isolated home under ``tmp_path``,
pointed at a FakeProvider on loopback, as ``../shared/cli/README.md`` describes.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lionpride.testing import FakeProvider, Reply

NPM_DIR = Path(__file__).resolve().parents[1] / "npm"
BIN_DIR = NPM_DIR / "node_modules" / ".bin"

#: The executables and the npm packages that provide them (pinned in npm/package.json).
PACKAGES = {
    "claude": "@anthropic-ai/claude-code",
    "gemini": "@google/gemini-cli",
    "mcp-server-everything": "@modelcontextprotocol/server-everything",
    "mcp-server-filesystem": "@modelcontextprotocol/server-filesystem",
}


def program(name: str) -> Path:
    """The installed executable ``name``, or skip (fail under LIONPRIDE_REQUIRE_CLIS=1)."""
    path = BIN_DIR / name
    reason = None
    if name != "claude" and shutil.which("node") is None:
        reason = f"node is not on PATH, so {PACKAGES[name]} cannot run"
    elif not path.exists():
        reason = f"{PACKAGES[name]} is not installed in {BIN_DIR} (run `make programs`)"
    if reason is not None:
        if os.environ.get("LIONPRIDE_REQUIRE_CLIS") == "1":
            pytest.fail(f"LIONPRIDE_REQUIRE_CLIS=1 but {reason}")
        pytest.skip(reason)
    return path


def _base_env(home: Path) -> dict[str, str]:
    """A minimal environment: PATH (for node), an empty home and temp dir, a dumb terminal."""
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "TERM": "dumb",
        "NO_COLOR": "1",
    }


def claude_env(home: Path, base_url: str, *, max_retries: int = 0) -> dict[str, str]:
    """The environment that points ``claude`` at ``base_url`` with nothing else reached."""
    return {
        **_base_env(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-ant-fake-key-for-tests",
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "DISABLE_GROWTHBOOK": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(max_retries),
    }


def gemini_env(home: Path, base_url: str, *, max_attempts: int = 1) -> dict[str, str]:
    """The environment (and settings file) that points ``gemini`` at ``base_url``."""
    settings = {
        "general": {
            "enableAutoUpdate": False,
            "enableAutoUpdateNotification": False,
            "maxAttempts": max_attempts,
        },
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "security": {"auth": {"selectedType": "gemini-api-key"}},
    }
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    return {
        **_base_env(home),
        "GEMINI_API_KEY": "fake-gemini-key-for-tests",
        "GOOGLE_GEMINI_BASE_URL": base_url,
    }


#: The real CLIs' recorded output (``../shared/cli`` beside the repository).
CLI_RECORDINGS = Path(__file__).resolve().parents[1].parent / "shared" / "cli"


def recording(name: str) -> list[str]:
    """The lines of one recording in ``../shared/cli``, or skip when it is absent."""
    path = CLI_RECORDINGS / name
    if not path.is_file():
        pytest.skip(f"{path} is missing (the recordings live in ../shared/cli)")
    return [line for line in path.read_text().splitlines() if line.strip()]


class RequestLog(list[Any]):
    """FakeProvider's ``requests`` list that wakes a waiter when a request arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    def append(self, item: Any) -> None:
        """Record a request and wake whoever waits for one."""
        super().append(item)
        self.arrived.set()


def process_group_of_child(name: str) -> list[int]:
    """The pids in the process group of this process's child whose command is ``name``."""
    table = _processes()
    leader = _child(name, table)
    return [pid for pid, (_, pgid, _) in table.items() if pgid == leader]


def process_tree_of_child(name: str) -> list[int]:
    """The pids of this process's child ``name``, its descendants, and their groups' members
    (a shell the CLI runs for a tool leads a group of its own)."""
    table = _processes()
    leader = _child(name, table)
    tree, todo = {leader}, [leader]
    while todo:
        parent = todo.pop()
        children = [pid for pid, (ppid, _, _) in table.items() if ppid == parent]
        tree.update(children)
        todo += children
    groups = {table[pid][1] for pid in tree}
    return [pid for pid, (_, pgid, _) in table.items() if pid in tree or pgid in groups]


def _child(name: str, table: dict[int, tuple[int, int, str]]) -> int:
    """The pid of this process's one child whose command is ``name``."""
    leaders = [p for p, (ppid, _, cmd) in table.items() if ppid == os.getpid() and name in cmd]
    assert len(leaders) == 1, f"expected one {name} child, found {leaders}"
    return leaders[0]


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid → (parent pid, process group, command) of every live process, from /proc."""
    out: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            out[int(entry.name)] = (int(fields[1]), int(fields[2]), cmdline)
    return out


async def ends_soon(pid: int, within: float = 5.0) -> bool:
    """Whether the process ends (becomes a zombie or is reaped) within ``within`` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()
    # A pidfd turns readable when its process exits: a wait without polling.
    loop.add_reader(fd, lambda: ended.done() or ended.set_result(None))
    try:
        async with asyncio.timeout(within):
            await ended
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def start_until_request(
    fp: FakeProvider, path: str, start: Callable[[], Awaitable[Any]]
) -> asyncio.Task[Any]:
    """Start a call and return its task once its request to ``path`` arrived (left
    unanswered: FakeProvider stalls it)."""
    log = RequestLog()
    fp.requests = log
    fp.script(Reply(stall_after=0), path=path)
    task = asyncio.create_task(start())
    while not any(path in r.path for r in log):  # woken by each request, never a timed poll
        log.arrived.clear()
        await log.arrived.wait()
    return task


def command_lines_of_child(name: str) -> list[str]:
    """The command lines of this process's child ``name`` and all it started."""
    table = _processes()
    return [table[pid][2] for pid in process_tree_of_child(name) if pid in table]


async def assert_cancel_stops_the_cli(
    fp: FakeProvider, path: str, name: str, start: Callable[[], Awaitable[Any]]
) -> None:
    """Start a call, cancel it once the CLI ``name`` has sent its request to ``path`` (left
    unanswered), and check that the cancellation comes out and the CLI's processes end."""
    task = await start_until_request(fp, path, start)
    group = process_group_of_child(name)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert group and all([await ends_soon(pid) for pid in group])


class Fifo:
    """A FIFO read line by line as it is written: a program says where it got to.

    Opened read-write, so that a writer closing it never ends the reading.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.reader = asyncio.StreamReader()
        self.transport: asyncio.ReadTransport | None = None

    async def open(self) -> None:
        """Start reading."""
        pipe = os.fdopen(os.open(self.path, os.O_RDWR | os.O_NONBLOCK), "rb", buffering=0)
        protocol = asyncio.StreamReaderProtocol(self.reader)
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.connect_read_pipe(lambda: protocol, pipe)

    async def wait_for(self, text: str) -> None:
        """Return once a line containing ``text`` was written (fail after 20 s)."""
        async with asyncio.timeout(20):
            while line := await self.reader.readline():
                if text in line.decode():
                    return

    def close(self) -> None:
        """Stop reading."""
        if self.transport is not None:
            self.transport.close()


def closed_port_url() -> str:
    """The URL of a loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def assert_cancel_during_a_tool_stops_it(
    fp: FakeProvider, path: str, tool: str, name: str, start: Callable[[], Awaitable[Any]]
) -> None:
    """Script the provider at ``path`` to have the shell ``tool`` run a command that starts a
    sleep outliving any test, start a call, cancel it once the command runs, and check that
    the CLI ``name`` and the command both end."""
    fifo = Fifo(Path(tempfile.mkdtemp()) / "started.fifo")
    command = f"sleep 600 & echo started > {shlex.quote(str(fifo.path))}; wait"
    fp.script(Reply(tool_calls=[{"name": tool, "arguments": {"command": command}}]), path=path)
    await fifo.open()
    try:
        task = asyncio.create_task(start())
        await fifo.wait_for("started")
        tree = process_tree_of_child(name)
        table = _processes()
        assert any("echo started" in table[pid][2] for pid in tree if pid in table)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        left = [pid for pid in tree if not await ends_soon(pid)]
        for pid in left:  # so that a failing run leaves nothing behind either
            os.kill(pid, signal.SIGKILL)
        assert left == []
    finally:
        fifo.close()
        shutil.rmtree(fifo.path.parent)


async def assert_leaving_early_stops_the_cli(stream: AsyncGenerator[Any, None], name: str) -> None:
    """Read ``stream`` up to its first text chunk, leave it, and check that the CLI ``name``
    and everything it started end."""
    async for chunk in stream:
        if chunk.content:
            break
    group = process_group_of_child(name)
    await stream.aclose()
    assert group and all([await ends_soon(pid) for pid in group])
