"""Four processes share one limit in Redis; FakeProvider checks what really arrives."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lionpride.testing import FakeProvider

if TYPE_CHECKING:
    from conftest import RedisServer

WORKER = Path(__file__).with_name("_worker.py")
PROCESSES, CALLS, LIMIT, PERIOD = 4, 30, 20, 2.0
#: Arrival times are taken at FakeProvider, after the grant: loopback and scheduling jitter
#: between processes can bring two arrivals this much closer than their grants were.
JITTER = 0.05


def worst_window(times: list[float], burst: int, rate: float, jitter: float) -> float:
    """Largest count / (burst + rate·(t + jitter)) over all windows of the arrivals."""
    times = sorted(times)
    return max(
        (j - i + 1) / (burst + rate * (times[j] - times[i] + jitter))
        for i in range(len(times))
        for j in range(i, len(times))
    )


@pytest.mark.parametrize("mode", ["requests", "tokens"])
async def test_four_processes_share_one_limit(redis_server: RedisServer, mode: str) -> None:
    """4 x 30 calls under 20 per 2 s (of requests, or of tokens): no overrun, ~10 s in all."""
    async with FakeProvider() as fp:
        url = fp.base_url("openai") + "/chat/completions"
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER),
                url,
                redis_server.url,
                f"mp-{mode}",
                str(CALLS),
                mode,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(PROCESSES)
        ]
        outputs = [await proc.communicate() for proc in procs]
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err.decode()
            assert out.decode().strip() == f"done {CALLS}"
        arrivals = list(fp.arrivals)
    assert len(arrivals) == PROCESSES * CALLS
    assert worst_window(arrivals, LIMIT, LIMIT / PERIOD, JITTER) <= 1.0
    # 20 at once, then 100 more at 10 per second: 10 s, and not more than 15 % over.
    assert 9.9 <= max(arrivals) - min(arrivals) <= 11.5
