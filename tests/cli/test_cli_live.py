"""The live line of `lionpride run`: an ETA the limits govern, calls in flight, limit waits."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride.cli._live import RunGauges
from lionpride.cli._progress import Pace, Progress, eta_seconds
from lionpride.services import iModel
from lionpride.testing import FakeProvider

MESSAGES = [{"role": "user", "content": "Hi"}]


def _limited(fp: FakeProvider, **limits: Any) -> iModel:
    """An OpenAI-format model on ``fp`` with the limits given, and only those (no limits
    learned from the answers, whose first-call gate would hold the queue on requests)."""
    return iModel(
        provider="openai",
        base_url=fp.base_url("openai"),
        api_key=SecretStr("k"),
        adaptive_limits=False,
        **limits,
    )


def test_eta_after_the_burst_follows_the_limit_not_the_average() -> None:
    """500 done in 10 s by the burst, 1000 left at 1 req/s: 1000 s, not the 20 s the
    average since the start would promise."""
    assert eta_seconds(1000, rate=50.0, paces=[Pace(available=0, per_second=1.0)]) == 1000
    assert eta_seconds(1000, rate=50.0) == 20


def test_eta_within_the_burst_follows_the_achieved_rate() -> None:
    """What the burst still covers goes at the achieved rate; only the rest waits on refill."""
    assert eta_seconds(100, rate=10.0, paces=[Pace(available=200, per_second=1.0)]) == 10
    assert eta_seconds(300, rate=10.0, paces=[Pace(available=200, per_second=1.0)]) == 100


def test_eta_takes_the_slowest_limit_and_knows_when_it_cannot_tell() -> None:
    """Of a request and a token limit the slower governs; with nothing done and room left
    there is no ETA, and nothing left is zero."""
    paces = [Pace(available=0, per_second=2.0), Pace(available=10, per_second=0.5)]
    assert eta_seconds(20, rate=100.0, paces=paces) == 20
    assert eta_seconds(20, rate=0.0, paces=[Pace(available=50, per_second=1.0)]) is None
    assert eta_seconds(20, rate=0.0, paces=[Pace(available=5, per_second=1.0)]) == 15
    assert eta_seconds(20, rate=0.0) is None
    assert eta_seconds(0, rate=0.0) == 0


async def test_live_line_shows_in_flight_waiting_and_the_limit_eta() -> None:
    """With 2 requests per hour and 3 calls, the line shows 2 in flight, 1 waiting on the
    request limit with its next slot, and an ETA set by the refill, not by the calls."""
    async with FakeProvider(latency=60) as fp:
        model = _limited(fp, limit_requests=2, capacity_refresh_time=3600)
        gauges = RunGauges(model, limits=model.limits)
        stream = io.StringIO()
        progress = Progress(10, label="run", stream=stream, tty=False, gauges=gauges)
        calls = [asyncio.create_task(model.invoke(model="m", messages=MESSAGES)) for _ in range(3)]
        gauges.calling = 3  # as the run's workers count the calls they hand to the model
        try:
            async with asyncio.timeout(10):
                while len(fp.requests) < 2:
                    await asyncio.sleep(0.02)
            line = progress.line()
        finally:
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            await model.aclose()
    assert "2 in flight, 0 429s, 0 retries, 1 waiting on the request limit (next in " in line
    assert re.search(r"next in (29m5\d|30m00)s\)", line), line
    # 10 to finish, 2 of them granted: 8 more at one per 30 minutes.
    assert re.search(r"ETA (3h59m|4h00m)", line), line


def test_live_line_without_gauges_keeps_its_counters() -> None:
    """A Progress without gauges (the demo's) shows counts and tokens only."""
    progress = Progress(4, label="load", stream=io.StringIO(), tty=False)
    progress.advance(ok=True, tokens=7)
    line = progress.line()
    assert line.startswith("load, 1/4, 0 failed, ") and line.endswith("7 tokens")
    assert "in flight" not in line


async def _waiting_line(model: iModel, fp: FakeProvider, sent: int, calls: int) -> str:
    """The gauges' phrases once ``sent`` of ``calls`` concurrent calls reached ``fp``."""
    gauges = RunGauges(model)
    tasks = [
        asyncio.create_task(model.invoke(model="m", messages=MESSAGES, max_tokens=60))
        for _ in range(calls)
    ]
    gauges.calling = calls
    try:
        async with asyncio.timeout(10):
            while len(fp.requests) < sent:
                await asyncio.sleep(0.02)
            while model.executor is not None and model.executor.limiter.queue_depth < calls - sent:
                await asyncio.sleep(0.02)
        return ", ".join(gauges.parts())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await model.aclose()


async def test_live_line_names_the_token_limit_and_a_429_pause() -> None:
    """A call queued for tokens waits on the token limit; one held by a 429's pause, with
    room in every bucket, waits on the pause."""
    async with FakeProvider(latency=60) as fp:
        tokens = _limited(fp, limit_tokens=100, capacity_refresh_time=3600)
        line = await _waiting_line(tokens, fp, sent=1, calls=2)
        assert "1 in flight" in line and line.endswith("1 waiting on the token limit"), line
        fp.reset()
        paused = _limited(fp, limit_requests=100)
        assert paused.executor is not None
        paused.executor.pause(60)
        line = await _waiting_line(paused, fp, sent=0, calls=1)
        assert line.endswith("1 waiting on a rate-limit pause"), line


def test_terminal_redraws_fit_the_width_and_the_final_line_is_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a 60-column terminal each redraw stays within one row; the last line is complete."""
    monkeypatch.setenv("COLUMNS", "60")
    stream = io.StringIO()
    progress = Progress(1000, label="run", stream=stream, tty=True)
    progress.advance(ok=True, tokens=123_456_789)
    progress.draw()
    progress.message("r1 (line 1) failed: ServerError: boom")
    redraws = stream.getvalue().split("\r\x1b[2K")[1:]
    assert len(redraws) == 2
    assert len(redraws[0]) == 59
    assert redraws[1].startswith("r1 (line 1) failed: ServerError: boom\n")
    assert len(redraws[1].split("\n", 1)[1]) == 59
    progress.finish()
    assert stream.getvalue().endswith("123,456,789 tokens\n")
