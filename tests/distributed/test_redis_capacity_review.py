"""Review regressions: the switch to local limits happens once, whatever was in flight."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from lionpride.core.clock import FakeClock
from lionpride.services.distributed import RedisCapacity
from lionpride.services.utilities.rate_limiter import RateLimitConfig


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections (into the backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


async def test_a_late_failure_does_not_refill_the_local_fallback(silent_url: str) -> None:
    """A give-back failing after the switch to local keeps what local buckets already granted."""
    clock = FakeClock()
    backend = RedisCapacity(
        silent_url,
        "late-failure",
        requests=RateLimitConfig(1, 0.001),
        tokens=RateLimitConfig(100, 1.0),
        clock=clock,
        socket_timeout=0.3,
    )
    take = asyncio.create_task(backend.take(1, 0))
    await asyncio.sleep(0.1)  # the give-back below times out 0.1 s after the take
    backend.give_back(0, -1)  # a token charge, in flight while Redis goes silent
    assert await take == 0.0  # served by the local fallback, which is now empty
    await backend.flush()
    assert not backend.shared
    # No fake time has passed: the one request of the bucket is spent.
    assert await backend.take(1, 0) > 0
    assert backend.levels()["tokens"] == 99
    await backend.aclose()
