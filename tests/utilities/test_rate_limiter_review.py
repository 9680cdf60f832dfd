"""Review regressions for the token bucket's up-front timeout estimate."""

from __future__ import annotations

import asyncio

from lionpride.core.clock import FakeClock
from lionpride.services.utilities.rate_limiter import RateLimitConfig, TokenBucket


async def settle() -> None:
    """Let ready tasks run until they block."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_timeout_estimate_counts_the_refill_since_the_last_grant() -> None:
    """acquire(timeout) behind a queued waiter succeeds when the tokens arrive within timeout."""
    clock = FakeClock()
    bucket = TokenBucket(RateLimitConfig(capacity=10, refill_rate=1.0), clock=clock)
    assert await bucket.acquire(10)
    first = asyncio.create_task(bucket.acquire(1))  # served at t=1
    await settle()
    await clock.advance(0.5)
    # At t=0.5 the bucket holds 0.5: the head needs 0.5 s more, this caller 1 s after that,
    # so it is served at t=2.0, 1.5 s from now, inside its 1.6 s timeout.
    second = asyncio.create_task(bucket.acquire(1, timeout=1.6))
    await settle()
    assert not second.done(), "refused at once although the tokens arrive in time"
    await clock.advance(1.5)
    assert await first and await second
    assert clock.now() == 2.0
