"""`lionpride run` and `fake-provider` defects found by probing them as a user would."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.cli._subprocess import cli_env, run_cli, start_cli

from lionpride.cli import main
from lionpride.testing import FakeProvider


def _line(custom_id: str, text: str = "q", **body: Any) -> str:
    request = {"model": "m", "messages": [{"role": "user", "content": text}], **body}
    return json.dumps({"custom_id": custom_id, **request}, ensure_ascii=False)


def _write_input(path: Path, n: int) -> list[str]:
    path.write_text("".join(_line(f"r{i}", f"question {i}") + "\n" for i in range(n)))
    return [f"r{i}" for i in range(n)]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run_args(fp: FakeProvider, src: Path, out: str | Path, *extra: str) -> list[str]:
    base = ["run", str(src), "--output", str(out), "--provider", "openai"]
    return [*base, "--base-url", fp.base_url("openai"), *extra]


async def test_non_utf8_and_streamed_lines_are_bad_lines_never_sent(tmp_path: Path) -> None:
    """A non-UTF-8 line is not sent with its bytes replaced, a "stream": true line is not
    sent (its reply could never be recorded, so every resume would pay for it again), a
    leading byte order mark is ignored, and a bad custom_id is named."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        b"\xef\xbb\xbf" + _line("bom").encode(),
        _line("latin", "caf\u00e9").encode("latin-1"),
        _line("streamed", stream=True).encode(),
        _line("plain", stream=False).encode(),
        json.dumps(
            {"custom_id": 7, "method": "POST", "url": "/v1/chat/completions", "body": {}}
        ).encode(),
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    async with FakeProvider() as fp:
        code, _, err = await run_cli(*_run_args(fp, src, out), env=cli_env(OPENAI_API_KEY="test"))
        sent = [r.body["messages"][0]["content"] for r in fp.requests]
    assert code == 1, err
    assert "line 2: not UTF-8 (byte 0xe9 at offset" in err
    assert 'line 3: "stream": true is not supported by run; remove it' in err
    assert 'line 5: "custom_id" must be a non-empty string, got 7' in err
    assert sorted(r["custom_id"] for r in _records(out)) == ["bom", "plain"]
    assert sent == ["q", "q"]


async def test_output_to_a_pipe_does_not_hang(tmp_path: Path) -> None:
    """``--output /dev/stdout`` into a pipe writes every line instead of waiting forever to
    read the pipe for results to resume."""
    src = tmp_path / "in.jsonl"
    ids = _write_input(src, 5)
    async with FakeProvider() as fp:
        args = _run_args(fp, src, "/dev/stdout")
        code, out, err = await run_cli(*args, env=cli_env(OPENAI_API_KEY="test"))
    assert code == 0, err
    assert sorted(json.loads(line)["custom_id"] for line in out.splitlines()) == ids


def _small_file_limit() -> None:
    # Room for a few result lines only: the next write fails with EFBIG (Python ignores
    # SIGXFSZ), as it would on a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
async def test_output_that_fills_up_exits_2_naming_the_file_and_resumes(tmp_path: Path) -> None:
    """A write that fails mid-run stops the run with one clear message and exit code 2 (not a
    traceback and "some failed"); the resumed run completes every result exactly once."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_input(src, 60)
    env = cli_env(OPENAI_API_KEY="test")
    async with FakeProvider() as fp:
        args = _run_args(fp, src, out, "--concurrency", "4")
        code, _, err = await run_cli(*args, env=env, preexec_fn=_small_file_limit)
        assert code == 2, err
        assert "Traceback" not in err
        assert f"lionpride run: error: cannot write {out}: File too large" in err
        assert "running the same command again sends only the rest" in err

        code, _, err = await run_cli(*args, env=env)
    assert code == 0, err
    records = _records(out)
    assert Counter(r["custom_id"] for r in records) == Counter(ids)
    assert all(r["error"] is None for r in records)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
async def test_sigterm_stops_like_ctrl_c_with_summary_and_exit_130(tmp_path: Path) -> None:
    """SIGTERM (``kill``, ``timeout``, a container stopping) ends the run as Ctrl-C does:
    summary printed, exit code 130; the resumed run completes every result exactly once."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_input(src, 300)
    env = cli_env(OPENAI_API_KEY="test")
    async with FakeProvider(latency=0.02) as fp:
        args = _run_args(fp, src, out, "--concurrency", "4")
        proc = await start_cli(*args, env=env)
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            # Off a terminal, progress prints a line every 100 finished requests.
            line = await proc.stderr.readline()
            assert b"100/300" in line, line
            proc.send_signal(signal.SIGTERM)
            _, rest = await proc.communicate()
        err = rest.decode()
        assert proc.returncode == 130, err
        assert " sent: " in err
        assert "interrupted: run the same command again to send the rest" in err

        code, _, err = await run_cli(*args, env=env)
    assert code == 0, err
    records = _records(out)
    assert Counter(r["custom_id"] for r in records) == Counter(ids)


async def test_unreachable_redis_is_reported(tmp_path: Path) -> None:
    """When --redis-url cannot be reached the limits are local to this process: the user is
    told (the library's warning reaches stderr), instead of the run staying silent."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src, 2)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with FakeProvider() as fp:
        args = _run_args(fp, src, out, "--limit-requests", "100")
        code, _, err = await run_cli(
            *args, "--redis-url", f"redis://127.0.0.1:{port}/0", env=cli_env(OPENAI_API_KEY="t")
        )
    assert code == 0, err
    assert f"Redis at redis://127.0.0.1:{port}/0 is unreachable" in err
    assert "falls back to local state" in err


def test_redis_url_without_a_redis_scheme_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --redis-url that is no Redis URL is bad usage, not a run whose every request fails."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src, 2)
    args = ["run", str(src), "-o", str(out), "--provider", "openai", "--limit-requests", "5"]
    code = main([*args, "--redis-url", "localhost:6379"])
    assert code == 2
    assert "--redis-url 'localhost:6379': expected redis://" in capsys.readouterr().err
    assert not out.exists()


def test_fake_provider_bad_values_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A taken port, a port out of range and a limit of 0 are usage errors, not tracebacks."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main(["fake-provider", "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert f"lionpride fake-provider: error: cannot listen on 127.0.0.1:{port}" in err
    assert main(["fake-provider", "--port", "70000"]) == 2
    assert "--port: must be 0 to 65535, got 70000" in capsys.readouterr().err
    assert main(["fake-provider", "--port", "0", "--limit-requests", "0"]) == 2
    assert "--limit-requests: must be at least 1, got 0" in capsys.readouterr().err
    assert main(["fake-provider", "--port", "0", "--latency", "-1"]) == 2
    assert "--latency: must be >= 0, got -1" in capsys.readouterr().err
