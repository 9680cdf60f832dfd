"""Review regressions: a queue waiting on Redis buckets hears when learned limits grow."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from lionpride.core.clock import FakeClock
from lionpride.services.distributed.redis_learned import SharedAdaptiveCapacity
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.utilities.rate_limiter import RateLimiter

if TYPE_CHECKING:
    from conftest import RedisServer


async def settle() -> None:
    """Let ready tasks run until they block (Redis round trips included)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_a_learned_limit_growing_wakes_a_call_waiting_on_redis(
    redis_server: RedisServer,
) -> None:
    """A call queued behind the first-answer gate is granted once an answer opens it."""
    clock = FakeClock()
    capacity = SharedAdaptiveCapacity(redis_server.url, "grows", clock=clock)
    executor = RateLimitedExecutor(limiter=RateLimiter(clock=clock, backend=capacity), clock=clock)
    try:
        async with executor.lease():  # the gate's one call
            pass
        second = asyncio.create_task(executor.execute(lambda: asyncio.sleep(0)))
        while executor.stats()["queued"] == 0 or clock.sleepers == 0:
            await asyncio.sleep(0.01)  # queued, its timer asleep for the gate's second
        capacity.answered(
            {
                "x-ratelimit-limit-requests": "100",
                "x-ratelimit-remaining-requests": "99",
                "x-ratelimit-reset-requests": "1s",
            },
            capacity.sent(),
            False,
        )
        await capacity.flush()
        await asyncio.wait_for(asyncio.shield(second), 5)  # no fake time passes
        assert executor.stats()["completed"] == 2
    finally:
        await executor.aclose()
        await capacity.aclose()
