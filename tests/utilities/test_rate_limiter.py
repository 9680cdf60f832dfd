"""Token buckets and the dual limiter, driven by a fake clock."""

from __future__ import annotations

import asyncio
import gc
import math
import weakref
from collections.abc import Callable
from dataclasses import FrozenInstanceError

import pytest

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.services.utilities.rate_limiter import (
    CapacityBackend,
    LocalCapacity,
    RateLimitConfig,
    RateLimiter,
    Reservation,
    TokenBucket,
)


def bucket(
    clock: FakeClock, capacity: int = 10, rate: float = 1.0, initial: int | None = None
) -> TokenBucket:
    """Build a bucket on the fake clock."""
    return TokenBucket(RateLimitConfig(capacity, rate, initial), clock=clock)


async def settle() -> None:
    """Let ready tasks run until they block."""
    for _ in range(10):
        await asyncio.sleep(0)


# RateLimitConfig


def test_config_defaults_to_full_and_is_frozen() -> None:
    """initial_tokens defaults to None (full) and the config cannot be changed."""
    config = RateLimitConfig(5, 1.5)
    assert config.initial_tokens is None
    with pytest.raises(FrozenInstanceError):
        config.capacity = 6  # type: ignore[misc]
    assert not hasattr(config, "__dict__")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"capacity": 0, "refill_rate": 1}, "capacity"),
        ({"capacity": -3, "refill_rate": 1}, "capacity"),
        ({"capacity": math.nan, "refill_rate": 1}, "capacity"),
        ({"capacity": math.inf, "refill_rate": 1}, "capacity"),
        ({"capacity": 5, "refill_rate": -1}, "refill_rate"),
        ({"capacity": 5, "refill_rate": math.nan}, "refill_rate"),
        ({"capacity": 5, "refill_rate": math.inf}, "refill_rate"),
        ({"capacity": 5, "refill_rate": 1, "initial_tokens": -1}, "initial_tokens"),
        ({"capacity": 5, "refill_rate": 1, "initial_tokens": 6}, "initial_tokens"),
    ],
)
def test_config_rejects_bad_values_naming_them(kwargs: dict[str, float], name: str) -> None:
    """Out-of-range configs raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=name):
        RateLimitConfig(**kwargs)  # type: ignore[arg-type]


def test_zero_refill_rate_is_allowed() -> None:
    """refill_rate=0 builds a reset-only bucket."""
    assert TokenBucket(RateLimitConfig(3, 0)).refill_rate == 0


# TokenBucket


def test_bucket_and_limiter_build_outside_a_loop() -> None:
    """Buckets and limiters can be built in plain synchronous code."""
    limiter = RateLimiter(TokenBucket(RateLimitConfig(2, 1)), TokenBucket(RateLimitConfig(9, 1)))
    assert limiter.queue_depth == 0


async def test_clock_is_read_lazily() -> None:
    """The refill starts at first use, not at construction."""
    clock = FakeClock()
    b = bucket(clock, capacity=10, rate=1, initial=0)
    await clock.advance(5)
    assert b.level == 0
    await clock.advance(2)
    assert b.level == pytest.approx(2)


async def test_try_acquire_never_waits() -> None:
    """try_acquire takes what is there and answers False otherwise, at once."""
    clock = FakeClock()
    b = bucket(clock, capacity=3, rate=1)
    assert b.try_acquire(2)
    assert not b.try_acquire(2)
    assert b.try_acquire(1)
    assert not b.try_acquire(4)
    assert b.level == 0
    assert clock.sleepers == 0


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf])
async def test_bad_token_amounts_raise(value: float) -> None:
    """Non-positive or non-finite token amounts raise ValueError naming tokens."""
    b = bucket(FakeClock())
    with pytest.raises(ValueError, match="tokens"):
        await b.acquire(value)
    with pytest.raises(ValueError, match="tokens"):
        b.try_acquire(value)
    with pytest.raises(ValueError, match="tokens"):
        b.release(value)


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf])
async def test_bad_timeouts_and_pauses_raise(value: float) -> None:
    """Non-positive or non-finite timeouts and pauses raise ValueError naming them."""
    b = bucket(FakeClock())
    with pytest.raises(ValueError, match="timeout"):
        await b.acquire(1, timeout=value)
    with pytest.raises(ValueError, match="seconds"):
        b.pause(value)


async def test_acquire_over_capacity_names_both_numbers() -> None:
    """Asking for more than the capacity fails at once with both numbers."""
    with pytest.raises(ValueError, match=r"11 tokens.*capacity 10"):
        await bucket(FakeClock()).acquire(11)


async def test_acquire_waits_exactly_for_the_deficit() -> None:
    """A waiter is served at the moment the refill covers its deficit, not before."""
    clock = FakeClock()
    b = bucket(clock, capacity=10, rate=2, initial=0)
    task = asyncio.create_task(b.acquire(4))
    await clock.advance(1.999)
    assert not task.done()
    await clock.advance(0.001)
    assert task.done() and task.result() is True
    assert b.level == pytest.approx(0)


async def test_acquire_returns_false_at_once_when_timeout_is_too_short() -> None:
    """If the refill cannot cover the deficit within the timeout, acquire says False at once."""
    clock = FakeClock()
    b = bucket(clock, capacity=10, rate=1, initial=0)
    assert await b.acquire(5, timeout=4.9) is False
    assert clock.now() == 0 and b.level == 0


async def test_acquire_waits_when_timeout_suffices() -> None:
    """A timeout long enough for the refill means waiting and then True."""
    clock = FakeClock()
    b = bucket(clock, capacity=10, rate=1, initial=0)
    task = asyncio.create_task(b.acquire(5, timeout=6))
    await clock.advance(5)
    assert await task is True


async def test_acquire_counts_waiters_ahead_when_judging_timeout() -> None:
    """The up-front timeout check accounts for the waiters queued ahead."""
    clock = FakeClock()
    b = bucket(clock, capacity=10, rate=1, initial=0)
    first = asyncio.create_task(b.acquire(5))
    await settle()
    assert await b.acquire(1, timeout=5.5) is False
    second = asyncio.create_task(b.acquire(1, timeout=6.5))
    await clock.advance(6)
    assert first.done() and second.done() and second.result() is True


async def test_fifo_big_head_is_not_starved() -> None:
    """Small requests arriving later wait behind a large one at the head."""
    clock = FakeClock()
    b = bucket(clock, capacity=10, rate=1, initial=0)
    order: list[str] = []

    async def take(label: str, n: int) -> None:
        await b.acquire(n)
        order.append(label)

    big = asyncio.create_task(take("big", 8))
    await settle()
    smalls = [asyncio.create_task(take(f"s{i}", 1)) for i in range(3)]
    await settle()
    assert not b.try_acquire(1)  # the queue may not be jumped either
    await clock.advance(7.9)
    assert order == []
    await clock.advance(0.1)
    assert order == ["big"]
    await clock.advance(3)
    assert order == ["big", "s0", "s1", "s2"]
    await asyncio.gather(big, *smalls)


async def test_one_timer_for_many_waiters() -> None:
    """Fifty waiters share one sleeping timer; none of them polls."""
    clock = FakeClock()
    b = bucket(clock, capacity=50, rate=10, initial=0)
    tasks = [asyncio.create_task(b.acquire(1)) for _ in range(50)]
    await settle()
    assert clock.sleepers == 1
    await clock.advance(5)
    await asyncio.gather(*tasks)
    await settle()
    assert clock.sleepers == 0
    assert len(asyncio.all_tasks()) == 1


async def test_cancelled_waiter_takes_nothing_and_blocks_no_one() -> None:
    """Cancelling the head lets the next waiter be served as soon as it can be."""
    clock = FakeClock()
    b = bucket(clock, capacity=10, rate=1, initial=2)
    head = asyncio.create_task(b.acquire(8))
    await settle()
    nxt = asyncio.create_task(b.acquire(2))
    await settle()
    assert not nxt.done()
    head.cancel()
    with pytest.raises(asyncio.CancelledError):
        await head
    await settle()
    assert nxt.done()
    assert b.level == pytest.approx(0)


async def test_zero_rate_waits_for_reset_or_release() -> None:
    """With refill_rate=0 a waiter is served by reset() or release(), or times out."""
    clock = FakeClock()
    b = bucket(clock, capacity=4, rate=0, initial=0)
    waiter = asyncio.create_task(b.acquire(3))
    await clock.advance(100)
    assert not waiter.done()
    b.release(2)
    await settle()
    assert not waiter.done()
    b.reset()
    await settle()
    assert waiter.done()
    assert b.level == 1
    timed = asyncio.create_task(b.acquire(3, timeout=2))
    await clock.advance(1.99)
    assert not timed.done()
    await clock.advance(0.01)
    assert await timed is False
    assert b.level == 1


async def test_release_is_capped_at_capacity() -> None:
    """release() never fills a bucket past its capacity."""
    b = bucket(FakeClock(), capacity=5, rate=1, initial=4)
    b.release(3)
    assert b.level == 5


async def test_pause_grants_nothing_before_it_ends() -> None:
    """During a pause nothing is granted, even with tokens in the bucket."""
    clock = FakeClock()
    b = bucket(clock, capacity=5, rate=1)
    b.pause(3)
    assert not b.try_acquire(1)
    waiter = asyncio.create_task(b.acquire(1))
    await clock.advance(2.99)
    assert not waiter.done()
    await clock.advance(0.01)
    assert waiter.done()


async def test_bucket_to_dict_is_config_only() -> None:
    """to_dict holds capacity and refill_rate, never the level."""
    b = bucket(FakeClock(), capacity=7, rate=0.5, initial=1)
    assert b.to_dict() == {"capacity": 7, "refill_rate": 0.5}


# RateLimiter


def limiter(
    clock: FakeClock,
    requests: tuple[int, float] | None = (5, 1.0),
    tokens: tuple[int, float] | None = (100, 10.0),
) -> RateLimiter:
    """Build a dual limiter on the fake clock."""
    rb = None if requests is None else bucket(clock, *requests)
    tb = None if tokens is None else bucket(clock, *tokens)
    return RateLimiter(rb, tb, clock=clock)


async def test_limiter_takes_both_and_release_gives_back_once() -> None:
    """acquire takes requests and tokens together; release returns them exactly once."""
    clock = FakeClock()
    lim = limiter(clock)
    res = await lim.acquire(2, 30)
    assert (res.requests, res.tokens, res.waited) == (2, 30, 0.0)
    assert lim.levels == {"requests": 3, "tokens": 70}
    res.release()
    res.release()
    assert lim.levels == {"requests": 5, "tokens": 100}


async def test_try_acquire_is_all_or_nothing() -> None:
    """A token shortfall leaves the request bucket untouched, and nothing waits."""
    clock = FakeClock()
    lim = limiter(clock)
    assert lim.try_acquire(1, 90) is not None
    assert lim.try_acquire(1, 20) is None
    assert lim.levels == {"requests": 4, "tokens": 10}
    assert clock.sleepers == 0


@pytest.mark.parametrize(
    ("requests", "tokens", "pattern"),
    [
        (6, 0, r"requests=6.*capacity 5"),
        (1, 101, r"tokens=101.*capacity 100"),
        (-1, 0, "requests"),
        (1, -5, "tokens"),
    ],
)
async def test_limiter_rejects_impossible_amounts(requests: int, tokens: int, pattern: str) -> None:
    """Amounts above capacity or below zero fail at once, naming the numbers."""
    with pytest.raises(ValueError, match=pattern):
        await limiter(FakeClock()).acquire(requests, tokens)


@pytest.mark.parametrize("priority", [math.nan, math.inf])
async def test_limiter_rejects_non_finite_priority(priority: float) -> None:
    """A NaN or infinite priority raises ValueError naming priority."""
    with pytest.raises(ValueError, match="priority"):
        await limiter(FakeClock()).acquire(priority=priority)


async def test_limiter_rejects_buckets_on_another_clock() -> None:
    """A bucket reading a different clock than the limiter is refused."""
    with pytest.raises(ValueError, match="request_bucket"):
        RateLimiter(bucket(FakeClock()), clock=FakeClock())


async def test_limiter_timeout_takes_nothing() -> None:
    """A waiter that times out raises TimeoutError exactly at its timeout, taking nothing."""
    clock = FakeClock()
    lim = limiter(clock, requests=(1, 0.1))
    await lim.acquire()
    task = asyncio.create_task(lim.acquire(timeout=3))
    await clock.advance(2.999)
    assert not task.done() and lim.queue_depth == 1
    await clock.advance(0.001)
    with pytest.raises(errors.TimeoutError):
        await task
    assert isinstance(task.exception(), TimeoutError)
    assert lim.queue_depth == 0
    assert lim.levels["requests"] == pytest.approx(0.3)


async def test_limiter_serves_by_priority_then_arrival() -> None:
    """Waiters are granted in (priority, arrival) order."""
    clock = FakeClock()
    lim = limiter(clock, requests=(1, 1.0), tokens=None)
    await lim.acquire()
    order: list[str] = []

    async def wait(label: str, priority: float) -> None:
        await lim.acquire(priority=priority)
        order.append(label)

    tasks = []
    for label, prio in [("c1", 5), ("a1", 1), ("b", 3), ("a2", 1), ("c2", 5)]:
        tasks.append(asyncio.create_task(wait(label, prio)))
        await settle()
    await clock.advance(10)
    await asyncio.gather(*tasks)
    assert order == ["a1", "a2", "b", "c1", "c2"]


async def test_limiter_big_token_request_is_not_starved() -> None:
    """A large token request at the head holds back later small ones."""
    clock = FakeClock()
    lim = limiter(clock, requests=None, tokens=(100, 10.0))
    await lim.acquire(0, 100)
    order: list[str] = []

    async def wait(label: str, n: int) -> None:
        await lim.acquire(1, n)
        order.append(label)

    big = asyncio.create_task(wait("big", 90))
    await settle()
    smalls = [asyncio.create_task(wait(f"s{i}", 5)) for i in range(4)]
    await clock.advance(8.9)
    assert order == []
    await clock.advance(0.1)
    assert order == ["big"]
    await clock.advance(2)
    assert order == ["big", "s0", "s1", "s2", "s3"]
    await asyncio.gather(big, *smalls)


async def test_new_higher_priority_head_is_considered_at_once() -> None:
    """A small urgent request arriving while a big one waits is granted if capacity allows."""
    clock = FakeClock()
    lim = limiter(clock, requests=None, tokens=(100, 1.0))
    await lim.acquire(0, 95)
    big = asyncio.create_task(lim.acquire(0, 50, priority=1))
    await settle()
    urgent = asyncio.create_task(lim.acquire(0, 5, priority=0))
    await settle()
    assert urgent.done()
    assert not big.done()
    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big


async def test_cancelled_limiter_waiter_wakes_the_next() -> None:
    """Cancelling the head makes the limiter consider the next waiter immediately."""
    clock = FakeClock()
    lim = limiter(clock, requests=None, tokens=(100, 1.0))
    await lim.acquire(0, 90)
    head = asyncio.create_task(lim.acquire(0, 60))
    await settle()
    nxt = asyncio.create_task(lim.acquire(0, 10))
    await settle()
    assert not nxt.done()
    head.cancel()
    await settle()
    assert nxt.done() and head.cancelled()
    assert lim.levels["tokens"] == pytest.approx(0)
    assert lim.queue_depth == 0


async def test_settle_refunds_or_charges_the_difference() -> None:
    """settle refunds unused tokens or charges extra ones, once."""
    clock = FakeClock()
    lim = limiter(clock, tokens=(100, 0.0))
    res = await lim.acquire(1, 40)
    res.settle(25)
    res.settle(0)
    res.release()
    assert lim.levels == {"requests": 4, "tokens": 75}
    over = await lim.acquire(1, 10)
    over.settle(30)
    assert lim.levels["tokens"] == 45
    keep = await lim.acquire(1, 5)
    keep.settle(None)
    assert lim.levels["tokens"] == 40
    with pytest.raises(ValueError, match="actual_tokens"):
        Reservation(1, 1, 0.0).settle(-1)


async def test_charge_into_debt_makes_later_calls_wait() -> None:
    """A charge may push the token level below zero; later callers wait for the refill."""
    clock = FakeClock()
    lim = limiter(clock, requests=None, tokens=(100, 10.0))
    lim.adjust_tokens(150)
    assert lim.levels["tokens"] == -50
    task = asyncio.create_task(lim.acquire(0, 10))
    await clock.advance(5.9)
    assert not task.done()
    await clock.advance(0.1)
    assert task.done()
    lim.adjust_tokens(-10)
    assert lim.levels["tokens"] == pytest.approx(10)


@pytest.mark.parametrize("explicit_backend", [False, True])
async def test_settle_refund_wakes_a_waiter_on_local_buckets(explicit_backend: bool) -> None:
    """A settle refund wakes a token waiter at once, with buckets or a LocalCapacity backend."""
    clock = FakeClock()
    tokens = bucket(clock, 100, 0.01)
    lim = (
        RateLimiter(clock=clock, backend=LocalCapacity(None, tokens))
        if explicit_backend
        else RateLimiter(None, tokens, clock=clock)
    )
    first = await lim.acquire(0, 100)
    waiter = asyncio.create_task(lim.acquire(0, 50))
    await settle()
    assert not waiter.done()
    first.settle(10)
    await settle()
    assert waiter.done() and clock.now() == 0
    assert lim.levels["tokens"] == 40


async def test_limiter_release_validates_and_wakes_waiters() -> None:
    """release() returns capacity and wakes a waiter that can now be served."""
    clock = FakeClock()
    lim = limiter(clock, requests=(1, 0.0), tokens=None)
    first = await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await settle()
    assert not waiter.done()
    lim.release(first.requests, 0)
    await settle()
    assert waiter.done()
    with pytest.raises(ValueError, match="requests"):
        lim.release(-1, 0)


async def test_limiter_pause_holds_both_buckets() -> None:
    """pause() holds every grant until it ends."""
    clock = FakeClock()
    lim = limiter(clock)
    lim.pause(2)
    assert lim.try_acquire(0, 1) is None
    assert lim.try_acquire(1, 0) is None
    task = asyncio.create_task(lim.acquire(1, 1))
    await clock.advance(1.999)
    assert not task.done()
    await clock.advance(0.001)
    assert task.done()


async def test_timer_task_ends_when_nobody_waits() -> None:
    """After the last waiter is served no limiter task remains."""
    clock = FakeClock()
    lim = limiter(clock, requests=(2, 1.0), tokens=None)
    tasks = [asyncio.create_task(lim.acquire()) for _ in range(6)]
    await settle()
    assert len(asyncio.all_tasks()) == 6  # four waiting callers, the timer, this test
    await clock.advance(4)
    await asyncio.gather(*tasks)
    await settle()
    assert asyncio.all_tasks() == {asyncio.current_task()}


class RemoteLikeBackend:
    """A backend with only an async take, as a shared (Redis) backend would have."""

    def __init__(self, inner: LocalCapacity) -> None:
        self.inner = inner
        self.takes = 0

    def check(self, requests: int, tokens: int) -> None:
        self.inner.check(requests, tokens)

    async def take(self, requests: int, tokens: int) -> float:
        self.takes += 1
        await asyncio.sleep(0)  # a round trip
        return self.inner.try_take(requests, tokens)

    def give_back(self, requests: int, tokens: int) -> None:
        self.inner.give_back(requests, tokens)

    def pause(self, seconds: float) -> None:
        self.inner.pause(seconds)

    def levels(self) -> dict[str, float]:
        return self.inner.levels()


class ForwardingBackend(RemoteLikeBackend):
    """A backend over LocalCapacity that hears refunds through its own method, then wakes
    the limiter's waiters."""

    def __init__(self, inner: LocalCapacity) -> None:
        super().__init__(inner)
        self.kicks: list[Callable[[], None]] = []
        self.refunds = 0

    def subscribe(self, kick: Callable[[], None]) -> None:
        self.kicks.append(kick)
        self.inner.subscribe(self._refunded)

    def _refunded(self) -> None:
        self.refunds += 1
        for kick in self.kicks:
            kick()


async def test_a_backend_over_local_capacity_subscribes_its_own_method() -> None:
    """LocalCapacity.subscribe takes any callable: a wrapping backend hears every refund."""
    clock = FakeClock()
    bucket = TokenBucket(RateLimitConfig(capacity=1, refill_rate=0.0), clock=clock)
    backend = ForwardingBackend(LocalCapacity(bucket))
    limiter = RateLimiter(backend=backend, clock=clock)
    first = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    for _ in range(20):
        await asyncio.sleep(0)
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
    backend = ForwardingBackend(capacity)
    backend.subscribe(lambda: heard.append("forwarded"))
    bucket.release(1)
    assert heard == ["function", "forwarded"]
    ref = weakref.ref(backend)
    del backend
    gc.collect()
    assert ref() is None
    bucket.release(1)
    assert heard == ["function", "forwarded", "function"]


async def test_custom_async_backend_plugs_in() -> None:
    """A backend offering only async take gets the same ordered, exact waiting."""
    clock = FakeClock()
    backend = RemoteLikeBackend(LocalCapacity(bucket(clock, 2, 1.0)))
    assert isinstance(backend, CapacityBackend)
    lim = RateLimiter(clock=clock, backend=backend)
    with pytest.raises(NotImplementedError):
        lim.try_acquire()
    grants: list[float] = []

    async def call() -> None:
        await lim.acquire()
        grants.append(clock.now())

    tasks = [asyncio.create_task(call()) for _ in range(5)]
    await clock.advance(3)
    await asyncio.gather(*tasks)
    assert grants == [0, 0, 1, 2, 3]
    assert lim.queue_depth == 0
    with pytest.raises(ValueError, match="backend"):
        RateLimiter(bucket(clock), clock=clock, backend=backend)
