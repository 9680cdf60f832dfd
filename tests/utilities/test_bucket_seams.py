"""The token bucket's public methods and the one wait queue of a set of buckets, on a fake clock."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from lionpride.core.clock import FakeClock
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.utilities.loops import runs_here
from lionpride.services.utilities.rate_limiter import (
    LocalCapacity,
    RateLimitConfig,
    RateLimiter,
    TokenBucket,
)


def bucket(clock: FakeClock, capacity: int = 10, rate: float = 1.0) -> TokenBucket:
    """Build a bucket on the fake clock."""
    return TokenBucket(RateLimitConfig(capacity, rate), clock=clock)


async def settle() -> None:
    """Let ready tasks run until they block."""
    for _ in range(20):
        await asyncio.sleep(0)


# The bucket's primitives


async def test_refill_returns_the_level_at_the_given_time() -> None:
    """refill(now) adds rate·elapsed, capped at capacity, and never moves time backwards."""
    clock = FakeClock()
    b = bucket(clock, 10, 2.0)
    assert b.take(10, 0.0) == 0.0
    assert b.refill(0.0) == 0
    assert b.refill(1.5) == pytest.approx(3.0)
    assert b.refill(1.0) == pytest.approx(3.0)  # an earlier time changes nothing
    assert b.refill(100.0) == 10


async def test_delay_is_the_exact_wait_for_an_amount() -> None:
    """delay() answers 0.0 for what is there, the deficit over the rate otherwise."""
    clock = FakeClock()
    b = bucket(clock, 10, 2.0)
    assert b.delay(10, 0.0) == 0.0
    assert b.level == 10  # delay takes nothing
    b.take(10, 0.0)
    assert b.delay(4, 0.0) == pytest.approx(2.0)
    assert b.delay(4, 1.0) == pytest.approx(1.0)
    assert b.delay(0, 1.0) == 0.0


async def test_delay_counts_a_pause_and_is_infinite_without_refill() -> None:
    """A pause holds even a full bucket; a bucket refilled by nothing waits forever."""
    clock = FakeClock()
    b = bucket(clock, 10, 1.0)
    b.pause(3)
    assert b.delay(1) == pytest.approx(3.0)
    still = bucket(clock, 2, 0.0)
    still.take(2)
    assert still.delay(1) == math.inf


async def test_take_takes_all_or_nothing_and_untake_undoes_it() -> None:
    """take answers 0.0 and takes, or the wait and takes nothing; untake puts a take back."""
    clock = FakeClock()
    b = bucket(clock, 10, 2.0)
    assert b.take(6) == 0.0
    assert b.take(6) == pytest.approx(1.0)
    assert b.level == 4
    b.untake(6)
    assert b.level == 10
    b.pause(0.5)
    assert b.take(1) == pytest.approx(0.5) and b.level == 10


async def test_take_refund_and_charge_move_the_level() -> None:
    """take subtracts, refund adds back capped at capacity, charge goes into debt."""
    clock = FakeClock()
    b = bucket(clock, 10, 1.0)
    assert b.take(4) == 0.0
    assert b.level == 6
    b.refund(100)
    assert b.level == 10
    b.charge(15)
    assert b.level == -5
    assert b.delay(1) == pytest.approx(6.0)
    await clock.advance(6)
    assert b.delay(1) == 0.0


async def test_refund_tells_subscribers_and_take_tells_nobody() -> None:
    """Only capacity coming back (refund, reset, reshape) calls the listeners."""
    clock = FakeClock()
    b = bucket(clock, 10, 1.0)
    heard: list[str] = []
    b.subscribe(lambda: heard.append("back"))
    b.take(5)
    b.charge(1)
    assert heard == []
    b.refund(1)
    b.reset()
    b.reshape(20, 2.0)
    assert heard == ["back", "back", "back"]


# One queue per set of buckets


async def test_cancelled_waiter_takes_nothing_and_the_next_is_served_on_time() -> None:
    """A waiter cancelled while queued leaves the level as it was: the one behind it is
    served exactly when it would have been had the cancelled one never come."""
    clock = FakeClock()
    rb = bucket(clock, 1, 1.0)
    limiter = RateLimiter(rb, clock=clock)
    await limiter.acquire()
    cancelled = asyncio.create_task(limiter.acquire())
    behind = asyncio.create_task(limiter.acquire())
    await settle()
    cancelled.cancel()
    await settle()
    assert limiter.queue_depth == 1
    await clock.advance(1)
    await settle()
    assert behind.done() and clock.now() == 1
    assert rb.level == 0


async def test_waiters_are_served_first_come_first_served_across_sizes() -> None:
    """A large request at the head is served before smaller ones behind it."""
    clock = FakeClock()
    tb = bucket(clock, 10, 1.0)
    limiter = RateLimiter(None, tb, clock=clock)
    await limiter.acquire(0, 10)
    order: list[int] = []

    async def take(tokens: int) -> None:
        await limiter.acquire(0, tokens)
        order.append(tokens)

    tasks = []
    for tokens in (8, 1, 2, 1):
        tasks.append(asyncio.create_task(take(tokens)))
        await settle()
    await clock.advance(12)
    await asyncio.gather(*tasks)
    assert order == [8, 1, 2, 1]


async def test_no_wake_up_is_lost_among_ten_thousand_waiters() -> None:
    """10,000 waiters on a bucket refilled only by refunds are all served, in order."""
    clock = FakeClock()
    rb = bucket(clock, 1, 0.0)
    limiter = RateLimiter(rb, clock=clock)
    served: list[int] = []

    async def one(index: int) -> None:
        reservation = await limiter.acquire()
        served.append(index)
        reservation.release()

    tasks = [asyncio.create_task(one(i)) for i in range(10_000)]
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert served == list(range(10_000))
    assert limiter.queue_depth == 0 and rb.level == 1


async def test_an_impossible_request_is_refused_at_once() -> None:
    """More than a bucket can ever hold raises ValueError and queues nothing."""
    clock = FakeClock()
    limiter = RateLimiter(bucket(clock, 5, 1.0), bucket(clock, 100, 1.0), clock=clock)
    with pytest.raises(ValueError, match="capacity 100"):
        await limiter.acquire(1, 101)
    with pytest.raises(ValueError, match="capacity 5"):
        await limiter.acquire(6, 0)
    assert limiter.queue_depth == 0


async def test_local_capacity_takes_both_or_neither() -> None:
    """try_take takes from both buckets only when both suffice, and names the wait."""
    clock = FakeClock()
    rb, tb = bucket(clock, 2, 1.0), bucket(clock, 10, 5.0)
    capacity = LocalCapacity(rb, tb)
    assert capacity.try_take(1, 10) == 0.0
    assert capacity.try_take(1, 5) == pytest.approx(1.0)
    assert rb.level == 1 and tb.level == 0


# The executor's grant path


async def test_a_free_lease_is_granted_without_suspending() -> None:
    """Entering a lease with capacity free completes on the first step of the coroutine."""
    ex = RateLimitedExecutor.from_limits(limit_requests=5, limit_tokens=100, clock=FakeClock())
    lease = ex.lease(tokens=10)
    entering = lease.__aenter__()
    with pytest.raises(StopIteration) as done:
        entering.send(None)
    reservation = done.value.value
    assert reservation.waited == 0.0 and reservation.tokens == 10
    assert ex.stats()["in_flight"] == 1
    reservation.settle(4)
    await lease.__aexit__(None, None, None)
    assert ex.stats()["in_flight"] == 0 and ex.stats()["completed"] == 1
    assert ex.limiter.levels["tokens"] == pytest.approx(96)


async def test_lease_books_failures_and_cancellations_as_execute_does() -> None:
    """A lease left by an error counts as failed, by a cancellation as cancelled; both refund
    the tokens and keep the request spent."""
    ex = RateLimitedExecutor.from_limits(limit_requests=5, limit_tokens=100, clock=FakeClock())
    with pytest.raises(RuntimeError):
        async with ex.lease(tokens=30):
            raise RuntimeError("boom")
    with pytest.raises(asyncio.CancelledError):
        async with ex.lease(tokens=30):
            raise asyncio.CancelledError
    stats = ex.stats()
    assert (stats["failed"], stats["cancelled"], stats["in_flight"]) == (1, 1, 0)
    assert ex.limiter.levels == {"requests": 3, "tokens": 100}


# Which loop runs here


async def test_runs_here_tells_the_running_loop_from_others() -> None:
    """runs_here is true for the running loop only."""
    assert runs_here(asyncio.get_running_loop())
    other = asyncio.new_event_loop()
    try:
        assert not runs_here(other)
    finally:
        other.close()
    assert not runs_here(None)
    seen: list[bool] = []
    loop = asyncio.get_running_loop()
    thread = threading.Thread(target=lambda: seen.append(runs_here(loop)))
    thread.start()
    thread.join()
    assert seen == [False]
