"""`lionpride run` sends each batch line to the endpoint its ``url`` names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.cli._subprocess import cli_env, run_cli

from lionpride.cli._batch_io import BadLine, BatchItem, read_requests
from lionpride.testing import FakeProvider, Reply


def _line(custom_id: str, url: str, body: dict[str, Any]) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def test_url_picks_the_endpoint_and_unknown_urls_are_bad_lines(tmp_path: Path) -> None:
    """Each served url maps to its endpoint; another url is a bad line naming the choices."""
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(
            [
                _line("c", "/v1/chat/completions", {"model": "m", "messages": []}),
                _line("r", "/v1/responses", {"model": "m", "input": "hi"}),
                _line("e", "/v1/embeddings", {"model": "m", "input": ["a"]}),
                _line("x", "/v1/completions", {"model": "m", "prompt": "hi"}),
            ]
        )
        + "\n"
    )
    items = list(read_requests(str(src)))
    assert [i.endpoint for i in items if isinstance(i, BatchItem)] == [
        "chat/completions",
        "responses",
        "embeddings",
    ]
    (bad,) = [i for i in items if isinstance(i, BadLine)]
    assert bad.line_no == 4 and "/v1/completions" in bad.reason and "/v1/embeddings" in bad.reason


async def test_run_sends_each_line_to_its_endpoint(tmp_path: Path) -> None:
    """Chat, responses and embeddings lines reach their paths; the bad line is never sent."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        _line(
            "c",
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "a"}]},
        ),
        _line("r", "/v1/responses", {"model": "m", "input": "hi"}),
        _line("e", "/v1/embeddings", {"model": "m", "input": ["a", "b"]}),
        _line("x", "/v1/audio/speech", {"model": "m", "input": "hi"}),
    ]
    src.write_text("\n".join(lines) + "\n")
    async with FakeProvider() as fp:
        args = ["run", str(src), "--output", str(out), "--provider", "openai"]
        args += ["--base-url", fp.base_url("openai"), "--limit-requests", "100"]
        code, _, err = await run_cli(*args, env=cli_env(OPENAI_API_KEY="test"))
        paths = sorted(r.path for r in fp.requests)
    assert code == 1, err
    assert paths == ["/v1/chat/completions", "/v1/embeddings", "/v1/responses"]
    assert "line 4:" in err and "/v1/audio/speech" in err
    assert "3 sent: 3 succeeded, 0 failed" in err
    records = {r["custom_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {"c", "r", "e"}
    assert records["r"]["text"] and records["r"]["response"]["body"]["object"] == "response"
    assert len(records["e"]["response"]["body"]["data"]) == 2


async def test_live_line_counts_the_429s_and_retries_of_every_endpoint(tmp_path: Path) -> None:
    """A 429 retried on a responses line shows on the live line, not only in the summary."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(_line("r", "/v1/responses", {"model": "m", "input": "hi"}) + "\n")
    async with FakeProvider() as fp:
        fp.script(Reply(status=429))
        args = ["run", str(src), "--output", str(out), "--provider", "openai"]
        args += ["--base-url", fp.base_url("openai")]
        code, _, err = await run_cli(*args, env=cli_env(OPENAI_API_KEY="test"))
    assert code == 0, err
    assert "retries 1, 429s 1" in err
    (live,) = [line for line in err.splitlines() if line.startswith("run, 1/1, ")]
    assert "1 429s, 1 retries" in live, live


@pytest.mark.parametrize(
    ("url", "body", "advice"),
    [
        (
            "/v1/responses",
            {"input": "hi", "max_output_tokens": 5000},
            "lower its max_output_tokens",
        ),
        ("/v1/embeddings", {"input": ["word " * 2000] * 4}, "split its input over several"),
    ],
)
async def test_request_that_never_fits_names_what_to_lower_for_its_endpoint(
    tmp_path: Path, url: str, body: dict[str, Any], advice: str
) -> None:
    """A responses or embeddings line larger than --limit-tokens stops the run with advice
    that fits it, not the max_tokens its endpoint does not take."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(_line("big", url, {"model": "m", **body}) + "\n")
    async with FakeProvider() as fp:
        args = ["run", str(src), "--output", str(out), "--provider", "openai"]
        args += ["--base-url", fp.base_url("openai"), "--limit-tokens", "1000"]
        code, _, err = await run_cli(*args, env=cli_env(OPENAI_API_KEY="test"))
        sent = len(fp.requests)
    assert code == 2, err
    assert sent == 0
    assert f"it can never be sent; raise --limit-tokens or {advice}" in err
    assert "max_tokens" not in err
