"""`lionpride run` end to end: a real subprocess against a FakeProvider on loopback."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from tests.cli._subprocess import cli_env, run_cli, start_cli

from lionpride.testing import FakeProvider, Reply

N = 300


def _body(i: int) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": f"question {i}"}]}


def _write_input(path: Path, n: int = N) -> list[str]:
    """Write ``n`` requests, alternating batch-format and plain lines; return their ids."""
    ids = []
    with path.open("w") as file:
        for i in range(n):
            if i % 3 == 0:  # plain body without an id: named after its line number
                line: dict[str, Any] = _body(i)
                ids.append(f"line-{i + 1}")
            elif i % 3 == 1:  # plain body with an id
                line = {"custom_id": f"plain-{i}", **_body(i)}
                ids.append(f"plain-{i}")
            else:
                line = {
                    "custom_id": f"batch-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": _body(i),
                }
                ids.append(f"batch-{i}")
            file.write(json.dumps(line) + "\n")
    return ids


def _records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "output ends with a partial line"
    return [json.loads(line) for line in text.splitlines()]


def _run_args(fp: FakeProvider, src: Path, out: Path, *extra: str) -> list[str]:
    base = ["run", str(src), "--output", str(out), "--provider", "openai"]
    return [*base, "--base-url", fp.base_url("openai"), *extra]


async def test_all_results_once_and_resume_sends_nothing(tmp_path: Path) -> None:
    """300 mixed lines give 300 results, and a second run sends no request at all."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_input(src)
    async with FakeProvider() as fp:
        code, _, err = await run_cli(*_run_args(fp, src, out), env=cli_env(OPENAI_API_KEY="test"))
        assert code == 0, err
        records = _records(out)
        assert sorted(r["custom_id"] for r in records) == sorted(ids)
        assert len(fp.requests) == N
        first = records[0]
        assert first["error"] is None and first["response"]["status_code"] == 200
        assert first["response"]["body"]["object"] == "chat.completion"
        assert first["text"] and first["finish_reason"] == "stop"
        assert first["usage"]["output_tokens"] > 0
        assert "300 sent: 300 succeeded, 0 failed" in err

        code, _, err = await run_cli(*_run_args(fp, src, out), env=cli_env(OPENAI_API_KEY="test"))
        assert code == 0, err
        assert len(fp.requests) == N
        assert len(_records(out)) == N
        assert "0 sent" in err and "300 already done" in err


async def test_killed_run_resumes_with_every_result_exactly_once(tmp_path: Path) -> None:
    """SIGKILL part-way, then a resume, leaves each request's result exactly once."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_input(src)
    env = cli_env(OPENAI_API_KEY="test")
    async with FakeProvider(latency=0.02) as fp:
        proc = await start_cli(*_run_args(fp, src, out, "--concurrency", "4"), env=env)
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            # Off a terminal, progress prints a line every 100 finished requests.
            line = await proc.stderr.readline()
        assert b"100/300" in line, line
        proc.kill()
        await proc.wait()
        survived = _records(out)
        assert 100 <= len(survived) < N
        # A kill in the middle of a write would leave a partial tail; the resume must drop it.
        with out.open("ab") as file:
            file.write(b'{"custom_id": "line-1", "response": {"status_co')
        sent_before = len(fp.requests)

        code, _, err = await run_cli(*_run_args(fp, src, out, "--concurrency", "4"), env=env)
        assert code == 0, err
        records = _records(out)
        assert Counter(r["custom_id"] for r in records) == Counter(ids)
        assert all(r["error"] is None for r in records)
        assert len(fp.requests) - sent_before == N - len(survived)


async def test_failed_requests_are_sent_again_on_resume(tmp_path: Path) -> None:
    """A failed request is recorded with its status, exits 1, and is retried by the resume."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_input(src, 5)
    env = cli_env(OPENAI_API_KEY="test")
    async with FakeProvider() as fp:
        fp.script(Reply(status=400))
        code, _, err = await run_cli(*_run_args(fp, src, out, "--concurrency", "1"), env=env)
        assert code == 1, err
        failed = [r for r in _records(out) if r["error"] is not None]
        assert len(failed) == 1
        assert failed[0]["error"]["code"] == "BadRequestError"
        assert failed[0]["response"]["status_code"] == 400

        code, _, err = await run_cli(*_run_args(fp, src, out), env=env)
        assert code == 0, err
        assert len(fp.requests) == 6
        records = _records(out)
        assert Counter(r["custom_id"] for r in records) == Counter(ids)
        assert all(r["error"] is None for r in records)


async def test_bad_lines_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    """Invalid JSON, a batch line without body and a duplicate id are skipped; exit code 1."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        json.dumps({"custom_id": "a", **_body(1)}),
        "this is not json",
        json.dumps({"custom_id": "b", "method": "POST", "url": "/v1/chat/completions"}),
        "",
        json.dumps({"custom_id": "a", **_body(2)}),
        json.dumps({"custom_id": "c", **_body(3)}),
    ]
    src.write_text("\n".join(lines) + "\n")
    async with FakeProvider() as fp:
        code, _, err = await run_cli(*_run_args(fp, src, out), env=cli_env(OPENAI_API_KEY="test"))
    assert code == 1
    assert "line 2: not JSON" in err
    assert 'line 3: missing "body"' in err
    assert "line 5: duplicate custom_id 'a' (first on line 1)" in err
    assert sorted(r["custom_id"] for r in _records(out)) == ["a", "c"]
    assert len(fp.requests) == 2


async def test_missing_key_exits_2_naming_the_variable(tmp_path: Path) -> None:
    """Without OPENAI_API_KEY the run stops before doing anything, with exit code 2."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src, 1)
    code, _, err = await run_cli(
        "run", str(src), "-o", str(out), "--provider", "openai", env=cli_env()
    )
    assert code == 2
    assert "set OPENAI_API_KEY (or --api-key-env NAME)" in err
    assert not out.exists()


async def test_unknown_provider_exits_2_listing_valid_ones(tmp_path: Path) -> None:
    """An unknown provider exits 2 with the list of the valid ones."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src, 1)
    args = ["run", str(src), "-o", str(out), "--provider", "nosuch"]
    code, _, err = await run_cli(*args, env=cli_env(NOSUCH_API_KEY="x"))
    assert code == 2
    assert "unknown provider 'nosuch'" in err and "anthropic" in err and "openai" in err


async def test_bad_usage_exits_2(tmp_path: Path) -> None:
    """A missing input file and a missing --output both exit 2."""
    env = cli_env(OPENAI_API_KEY="test")
    missing = str(tmp_path / "nope.jsonl")
    code, _, err = await run_cli("run", missing, "-o", "x", "--provider", "openai", env=env)
    assert code == 2 and "cannot read" in err
    code, _, err = await run_cli("run", missing, "--provider", "openai", env=env)
    assert code == 2 and "--output" in err
