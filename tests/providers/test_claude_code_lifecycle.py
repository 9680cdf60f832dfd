"""ClaudeCodeEndpoint process lifecycle: stdin that is never read, tools left running."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest
from tests._programs import ends_soon

from lionpride import errors
from lionpride.services.providers import ClaudeCodeEndpoint
from lionpride.services.providers.claude_code import ClaudeCodeError

RESULT = {"type": "result", "subtype": "success", "is_error": False, "result": "ok"}
BIG_PROMPT = "p" * 300_000  # over the argv limit (sent on stdin) and over a pipe's buffer


def _cli(tmp_path: Path, body: str) -> ClaudeCodeEndpoint:
    """An endpoint whose ``claude`` is a Python script with ``body``."""
    path = tmp_path / "claude"
    path.write_text(f"#!{sys.executable}\nimport json, os, subprocess, sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return ClaudeCodeEndpoint(cli_path=str(path), repo=str(tmp_path))


async def test_cli_exiting_without_reading_stdin_is_a_typed_error(tmp_path: Path) -> None:
    """A CLI that dies before reading a long prompt fails as ClaudeCodeError, not BrokenPipe."""
    backend = _cli(tmp_path, "sys.stderr.write('Error: bad flag'); sys.exit(3)")
    with pytest.raises(ClaudeCodeError, match=r"status 3.*bad flag"):
        await backend.call(backend.create_payload({"prompt": BIG_PROMPT}))


async def test_cli_never_reading_stdin_times_out(tmp_path: Path) -> None:
    """Writing a long prompt to a CLI that never reads it is bounded by the call's timeout."""
    backend = _cli(tmp_path, "time.sleep(30)")
    started = time.monotonic()
    with pytest.raises(errors.TimeoutError, match="did not finish"):
        await backend.call(backend.create_payload({"prompt": BIG_PROMPT}), timeout=0.5)
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="waits for the process on a pidfd")
async def test_tool_left_running_by_the_cli_is_stopped(tmp_path: Path) -> None:
    """A process the CLI started and left behind in its group does not outlive the call."""
    pid_file = tmp_path / "child.pid"
    backend = _cli(
        tmp_path,
        "child = subprocess.Popen(['sleep', '60'], stdin=subprocess.DEVNULL,"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        f"print(json.dumps({RESULT!r}), flush=True)",
    )
    response = await backend.call(backend.create_payload({"prompt": "x"}))
    assert response.data == "ok"
    child = int(pid_file.read_text())
    try:
        assert await ends_soon(child)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
