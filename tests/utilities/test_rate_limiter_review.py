"""Review regressions: the token bucket's up-front timeout estimate, refund listeners."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

from lionpride.core.clock import FakeClock
from lionpride.services.utilities.rate_limiter import (
    LocalCapacity,
    RateLimitConfig,
    RateLimiter,
    TokenBucket,
)


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


class _Forwarding:
    """A capacity backend over LocalCapacity that counts refunds before waking waiters."""

    def __init__(self, inner: LocalCapacity) -> None:
        self.inner = inner
        self.kicks: list[Callable[[], None]] = []
        self.refunds = 0

    def subscribe(self, kick: Callable[[], None]) -> None:
        self.kicks.append(kick)
        self.inner.subscribe(self._refunded)

    def _refunded(self) -> None:
        self.refunds += 1
        for kick in self.kicks:
            kick()

    def check(self, requests: int, tokens: int) -> None:
        self.inner.check(requests, tokens)

    async def take(self, requests: int, tokens: int) -> float:
        return self.inner.try_take(requests, tokens)

    def give_back(self, requests: int, tokens: int) -> None:
        self.inner.give_back(requests, tokens)

    def pause(self, seconds: float) -> None:
        self.inner.pause(seconds)

    def levels(self) -> dict[str, float]:
        return self.inner.levels()


async def test_a_backend_over_local_capacity_subscribes_its_own_method() -> None:
    """LocalCapacity.subscribe takes any callable: a wrapping backend hears every refund."""
    clock = FakeClock()
    bucket = TokenBucket(RateLimitConfig(capacity=1, refill_rate=0.0), clock=clock)
    backend = _Forwarding(LocalCapacity(bucket))
    limiter = RateLimiter(backend=backend, clock=clock)
    first = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await settle()
    assert not waiter.done()
    first.release()  # refilled only by this refund: the wake-up must come through _refunded
    second = await asyncio.wait_for(waiter, 1)
    assert second.requests == 1 and backend.refunds == 1


async def test_plain_listeners_are_kept_and_bound_ones_held_weakly() -> None:
    """A function is called on every refund; a bound method's object is not kept alive."""
    clock = FakeClock()
    bucket = TokenBucket(RateLimitConfig(capacity=5, refill_rate=0.0), clock=clock)
    capacity = LocalCapacity(bucket)
    heard: list[str] = []
    capacity.subscribe(lambda: heard.append("function"))
    backend = _Forwarding(capacity)
    backend.subscribe(lambda: heard.append("forwarded"))
    bucket.release(1)
    assert heard == ["function", "forwarded"]
    ref = weakref.ref(backend)
    del backend
    gc.collect()
    assert ref() is None
    bucket.release(1)
    assert heard == ["function", "forwarded", "function"]
