"""`lionpride run` tells what happened: sent or not, why calls failed, whether a rerun resumes."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.cli._subprocess import cli_env, run_cli, start_cli

from lionpride.cli import main
from lionpride.cli._stats import Summary
from lionpride.testing import FakeProvider, Reply

ENV = cli_env(OPENAI_API_KEY="test")


def _line(custom_id: str, **body: Any) -> str:
    request = {"model": "m", "messages": [{"role": "user", "content": "q"}], **body}
    return json.dumps({"custom_id": custom_id, **request})


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def _run_args(fp: FakeProvider, src: Path, out: str | Path, *extra: str) -> list[str]:
    base = ["run", str(src), "--output", str(out), "--provider", "openai"]
    return [*base, "--base-url", fp.base_url("openai"), *extra]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
@pytest.mark.parametrize("to_pipe", [False, True], ids=["file", "stdout-pipe"])
async def test_interrupted_run_counts_queued_calls_as_not_sent(
    tmp_path: Path, to_pipe: bool
) -> None:
    """SIGTERM with 4 calls in flight and 8 waiting or unread: 4 sent and unanswered, 8 not
    sent, no failure and no TimeoutError; a rerun is promised only for a regular file."""
    src = tmp_path / "in.jsonl"
    _write(src, [_line(f"r{i}") for i in range(12)])
    out = "/dev/stdout" if to_pipe else tmp_path / "out.jsonl"
    limits = ["--concurrency", "8", "--limit-requests", "4", "--capacity-refresh-time", "3600"]
    async with FakeProvider(latency=60) as fp:
        proc = await start_cli(*_run_args(fp, src, out, *limits), env=ENV)
        async with asyncio.timeout(30):
            await fp.wait_for_requests(4)
            proc.send_signal(signal.SIGTERM)
            _, raw = await proc.communicate()
        sent = len(fp.requests)
    err = raw.decode()
    assert proc.returncode == 130, err
    assert sent == 4
    assert "4 sent: 0 succeeded, 0 failed, 4 unanswered (stopped in flight); 8 not sent" in err
    assert "TimeoutError" not in err and "failures:" not in err
    resume = "interrupted: run the same command again to send the rest"
    if to_pipe:
        assert resume not in err
        assert "the output is not a regular file, so nothing can be resumed from it" in err
    else:
        assert resume in err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
async def test_interrupted_resume_counts_the_done_lines_it_had_not_reached(
    tmp_path: Path,
) -> None:
    """A resume whose one pending request is in flight when SIGTERM comes counts the 11 lines
    after it as already done, not as not sent."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, [_line(f"r{i}") for i in range(12)])
    ok = {"response": {"status_code": 200, "body": {}}, "error": None}
    _write(out, [json.dumps({"custom_id": f"r{i}", **ok}) for i in range(1, 12)])
    async with FakeProvider(latency=60) as fp:
        proc = await start_cli(*_run_args(fp, src, out, "--concurrency", "1"), env=ENV)
        async with asyncio.timeout(30):
            await fp.wait_for_requests(1)
            proc.send_signal(signal.SIGTERM)
            _, raw = await proc.communicate()
    err = raw.decode()
    assert proc.returncode == 130, err
    assert "1 sent: 0 succeeded, 0 failed, 1 unanswered (stopped in flight); 11 already done" in err
    assert "not sent" not in err


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm (Linux)")
async def test_a_file_of_its_own_under_dev_resumes_like_any_file(tmp_path: Path) -> None:
    """An output file in /dev/shm is no descriptor's name: the rerun sends nothing again and
    the file keeps one line per request."""
    src = tmp_path / "in.jsonl"
    _write(src, [_line(f"r{i}") for i in range(3)])
    out = Path("/dev/shm") / f"lionpride-test-{tmp_path.name}.jsonl"
    try:
        async with FakeProvider() as fp:
            for _ in range(2):
                code, _, err = await run_cli(*_run_args(fp, src, out), env=ENV)
                assert code == 0, err
            sent = len(fp.requests)
        lines = out.read_text().splitlines()
    finally:
        out.unlink(missing_ok=True)
    assert sent == 3
    assert len(lines) == 3
    assert "0 sent: 0 succeeded, 0 failed; 3 already done" in err


async def test_request_larger_than_the_token_limit_stops_the_run_with_exit_2(
    tmp_path: Path,
) -> None:
    """A request whose reservation exceeds --limit-tokens stops the run at once (exit 2) and
    says why, instead of being skipped as invalid while the run goes on."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(
        src,
        [
            _line("small", max_tokens=10),
            _line("huge", max_tokens=1000),
            _line("after", max_tokens=10),
        ],
    )
    async with FakeProvider() as fp:
        args = _run_args(fp, src, out, "--limit-tokens", "50", "--concurrency", "1")
        code, _, err = await run_cli(*args, env=ENV)
        sent = len(fp.requests)
    assert code == 2, err
    assert "lionpride run: error: request 'huge' (line 2) needs " in err
    assert "but --limit-tokens is 50: it can never be sent" in err
    assert "1 sent: 1 succeeded, 0 failed; 2 not sent" in err
    assert sent == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
async def test_a_result_the_output_refuses_still_counts_as_sent(tmp_path: Path) -> None:
    """When the output is full, the answered request whose line failed counts as sent, and
    only the two requests after it as not sent."""
    src = tmp_path / "in.jsonl"
    _write(src, [_line(f"r{i}") for i in range(3)])
    async with FakeProvider() as fp:
        args = _run_args(fp, src, "/dev/full", "--concurrency", "1")
        code, _, err = await run_cli(*args, env=ENV)
        sent = len(fp.requests)
    assert code == 2, err
    assert "cannot write /dev/full: No space left on device" in err
    assert sent == 1
    assert "1 sent: 1 succeeded, 0 failed; 2 not sent" in err


async def test_max_retries_flag_and_failure_reasons_on_screen(tmp_path: Path) -> None:
    """--max-retries 0 sends a 503'd request once, and its reason is printed on screen."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, [_line("only")])
    async with FakeProvider() as fp:
        fp.script(Reply(status=503), Reply(status=503))
        code, _, err = await run_cli(*_run_args(fp, src, out, "--max-retries", "0"), env=ENV)
        sent = len(fp.requests)
    assert code == 1, err
    assert sent == 1
    assert "only (line 1) failed: ServerError: " in err
    assert "Service Unavailable" in err


async def test_timeout_flag_bounds_each_request(tmp_path: Path) -> None:
    """--timeout 0.3 fails a request the provider takes 30 s to answer, as a TimeoutError."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, [_line("slow")])
    async with FakeProvider(latency=30) as fp:
        args = _run_args(fp, src, out, "--timeout", "0.3", "--max-retries", "0")
        code, _, err = await run_cli(*args, env=ENV, limit=20)
    assert code == 1, err
    assert "slow (line 1) failed: TimeoutError: " in err
    assert json.loads(out.read_text())["error"]["code"] == "TimeoutError"


async def test_only_the_first_failure_reasons_are_printed(tmp_path: Path) -> None:
    """Eight failures print five reasons and a note that the rest are in the output file."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, [_line(f"r{i}") for i in range(8)])
    async with FakeProvider() as fp:
        fp.script(*[Reply(status=400) for _ in range(8)])
        code, _, err = await run_cli(*_run_args(fp, src, out, "--concurrency", "1"), env=ENV)
    assert code == 1, err
    assert err.count("failed: BadRequestError: ") == 5
    assert "(only the first 5 failures are shown; all are in the output)" in err
    assert len(out.read_text().splitlines()) == 8


async def test_input_on_a_pipe_exits_2_instead_of_sending_nothing(tmp_path: Path) -> None:
    """`/dev/stdin` fed by a pipe is refused as bad usage: counting its lines used them up,
    so the run sent nothing and still exited 0."""
    lines = "".join(_line(f"r{i}") + "\n" for i in range(3)).encode()
    async with FakeProvider() as fp:
        args = _run_args(fp, Path("/dev/stdin"), tmp_path / "out.jsonl")
        code, _, err = await run_cli(*args, env=ENV, stdin=lines)
        sent = len(fp.requests)
    assert code == 2, err
    assert "/dev/stdin is not a regular file: run reads its input more than once" in err
    assert sent == 0


def test_timeout_help_says_what_it_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    """`run --help` says --timeout starts when the request is sent, not while it waits for
    the limits, and what it bounds in a stream."""
    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "seconds a request may take from when it is sent, its retries included" in text
    assert "the wait for the limits does not count" in text
    assert "a stream's is the wait for its first words and for each word after" in text


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-retries", "11", "--max-retries: must be 0 to 10, got 11"),
        ("--timeout", "0", "--timeout: must be > 0, got 0"),
    ],
)
async def test_bad_retry_and_timeout_values_exit_2(
    tmp_path: Path, flag: str, value: str, message: str
) -> None:
    """An out-of-range --max-retries or --timeout is bad usage naming the value."""
    src = tmp_path / "in.jsonl"
    _write(src, [_line("a")])
    args = ["run", str(src), "-o", str(tmp_path / "out.jsonl"), "--provider", "openai"]
    code, _, err = await run_cli(*args, flag, value, env=ENV)
    assert code == 2
    assert message in err


def _summary(**counts: Any) -> Summary:
    fields: dict[str, Any] = {
        "calls": 10,
        "successes": 3,
        "failures": 7,
        "failures_by_type": {"cancelled": 6, "ServerError": 1},
        "retries": 0,
        "rate_limited": 0,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost_usd": 0.0,
        "unpriced_calls": 0,
        "p50": None,
        "p99": None,
        "elapsed": 1.0,
    }
    return Summary(**(fields | counts))


def test_summary_less_cancelled_splits_unsent_from_unanswered() -> None:
    """Unsent calls leave the call count, and no cancelled call stays a failure."""
    summary = _summary().less_cancelled(unsent=4, unanswered=2)
    assert (summary.calls, summary.successes, summary.failures) == (6, 3, 1)
    assert summary.failures_by_type == {"ServerError": 1}
    partial = _summary().less_cancelled(unsent=1, unanswered=0)
    assert partial.failures_by_type == {"cancelled": 5, "ServerError": 1}
    excess = _summary().less_cancelled(unsent=5, unanswered=3)
    assert (excess.calls, excess.failures, excess.failures_by_type) == (5, 1, {"ServerError": 1})
