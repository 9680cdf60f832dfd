"""RateLimitedExecutor: exact limits, ordering, timeouts, capacity return, bounded queue."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable

import pytest

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, FakeClock
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.utilities.rate_limiter import RateLimitConfig, RateLimiter, TokenBucket


async def settle() -> None:
    """Let ready tasks run until they block."""
    for _ in range(10):
        await asyncio.sleep(0)


def executor(
    clock: FakeClock,
    limit_requests: int | None = 20,
    limit_tokens: int | None = None,
    period: float = 2.0,
    **kw: object,
) -> RateLimitedExecutor:
    """Build an executor on the fake clock from per-period limits."""
    return RateLimitedExecutor.from_limits(
        limit_requests=limit_requests,
        limit_tokens=limit_tokens,
        capacity_refresh_time=period,
        clock=clock,
        **kw,
    )


def returning(value: object = None) -> Callable[[], Awaitable[object]]:
    """Return an async function that returns ``value`` at once."""

    async def fn() -> object:
        return value

    return fn


def max_in_window(times: list[float], weights: list[int], limit: float, period: float) -> float:
    """Largest excess of granted amount over L + L·t/T across all intervals between grants."""
    order = sorted(range(len(times)), key=times.__getitem__)
    ts = [times[i] for i in order]
    ws = [weights[i] for i in order]
    prefix = [0]
    for w in ws:
        prefix.append(prefix[-1] + w)
    worst = -math.inf
    for i, start in enumerate(ts):
        for j in range(i, len(ts)):
            if j + 1 < len(ts) and ts[j + 1] == ts[j]:
                continue  # measure each interval to the last grant at its end time
            amount = prefix[j + 1] - prefix[i]
            worst = max(worst, amount - (limit + limit * (ts[j] - start) / period))
    return worst


async def test_interval_bound_holds_for_requests_and_tokens() -> None:
    """Under random load no interval grants more than L + L·t/T requests or tokens."""
    rng = random.Random(7)
    clock = FakeClock()
    ex = executor(clock, limit_requests=10, limit_tokens=1000, period=1.0)
    grants: list[tuple[float, int]] = []

    async def call(n: int) -> None:
        await ex.execute(
            returning(), tokens=n, on_granted=lambda _w: grants.append((clock.now(), n))
        )

    tasks: list[asyncio.Task[None]] = []
    for _ in range(40):
        tasks += [asyncio.create_task(call(rng.randint(1, 400))) for _ in range(rng.randint(0, 8))]
        await clock.advance(rng.choice([0.05, 0.3, 1.0]))
    await clock.advance(200)
    await asyncio.gather(*tasks)
    assert len(grants) == len(tasks) > 100
    times = [t for t, _ in grants]
    assert max_in_window(times, [1] * len(grants), 10, 1.0) <= 1e-6
    assert max_in_window(times, [n for _, n in grants], 1000, 1.0) <= 1e-6


async def test_saturation_uses_the_whole_budget() -> None:
    """100 calls under 20 per 2 s: 20 at once then 10/s, the last at t=8 (100% of budget)."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=20, period=2.0)
    grants: list[float] = []

    async def fn() -> None:
        grants.append(clock.now())

    tasks = [asyncio.create_task(ex.execute(fn)) for _ in range(100)]
    await clock.advance(20)
    await asyncio.gather(*tasks)
    assert grants[:20] == [0.0] * 20
    assert grants[-1] == pytest.approx(8.0)
    used = len(grants) / (20 + 20 * grants[-1] / 2.0)
    assert used >= 0.95


async def test_ten_thousand_queued_calls_all_run_once() -> None:
    """10,000 calls queued at once all complete, each run exactly once, none left waiting."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=10_000, period=1.0, concurrency_limit=10_000)
    ex.pause(1)
    runs = [0] * 10_000

    def make(i: int) -> Callable[[], Awaitable[int]]:
        async def fn() -> int:
            runs[i] += 1
            return i

        return fn

    start = time.perf_counter()
    tasks = [asyncio.create_task(ex.execute(make(i))) for i in range(10_000)]
    await settle()
    assert ex.stats()["queued"] == 10_000
    await clock.advance(1)
    results = await asyncio.gather(*tasks)
    assert results == list(range(10_000))
    assert runs == [1] * 10_000
    assert ex.stats()["queued"] == 0 and ex.stats()["completed"] == 10_000
    assert ex.limiter.queue_depth == 0
    assert time.perf_counter() - start < 10


async def test_many_queued_calls_across_refills() -> None:
    """2,000 calls wait through many timer cycles and are granted at exactly the refill rate."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=100, period=1.0)
    grants: list[float] = []
    tasks = [
        asyncio.create_task(
            ex.execute(returning(), on_granted=lambda _w: grants.append(clock.now()))
        )
        for _ in range(2000)
    ]
    await clock.advance(30)
    await asyncio.gather(*tasks)
    assert len(grants) == 2000
    assert grants[-1] == pytest.approx(19.0)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_queue_full_rejects_without_adding() -> None:
    """A full queue raises QueueFullError at once and leaves queue and buckets untouched."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=1, limit_tokens=100, period=10.0, queue_capacity=2)
    await ex.execute(returning())
    waiting = [asyncio.create_task(ex.execute(returning(), tokens=5)) for _ in range(2)]
    await settle()
    levels = ex.limiter.levels
    with pytest.raises(errors.QueueFullError):
        await ex.execute(returning(), tokens=5)
    assert ex.stats()["queued"] == 2 and ex.stats()["rejected"] == 1
    assert ex.limiter.levels == levels and ex.limiter.queue_depth == 2
    await clock.advance(20)
    await asyncio.gather(*waiting)


async def test_cancel_while_waiting_takes_nothing() -> None:
    """A caller cancelled in the queue takes nothing, and cancellation reaches it."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=1, limit_tokens=100, period=10.0)
    await ex.execute(returning())
    task = asyncio.create_task(ex.execute(returning(), tokens=50))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ex.limiter.levels == {"requests": 0, "tokens": 100}
    assert ex.stats()["cancelled"] == 1 and ex.stats()["queued"] == 0


async def test_cancel_while_running_refunds_tokens_but_spends_request() -> None:
    """A running call cancelled by its caller gets its tokens back; the request stays spent."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=5, limit_tokens=100, period=1000.0)
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await clock.sleep(100)

    task = asyncio.create_task(ex.execute(slow, tokens=60))
    await started.wait()
    assert ex.stats()["in_flight"] == 1
    assert ex.limiter.levels == {"requests": 4, "tokens": 40}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ex.limiter.levels == {"requests": 4, "tokens": 100}
    assert ex.stats()["in_flight"] == 0 and ex.stats()["cancelled"] == 1


async def test_timeout_while_waiting_fires_exactly_and_takes_nothing() -> None:
    """A queued call with a timeout raises TimeoutError exactly at it, taking nothing."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=1, limit_tokens=100, period=100.0)
    await ex.execute(returning())
    task = asyncio.create_task(ex.execute(returning(), tokens=30, timeout=5))
    await clock.advance(4.999)
    assert not task.done()
    await clock.advance(0.001)
    with pytest.raises(errors.TimeoutError):
        await task
    assert ex.stats()["timed_out"] == 1 and ex.stats()["queued"] == 0
    assert ex.limiter.levels["tokens"] == 100


async def test_timeout_while_running_cancels_the_call() -> None:
    """The timeout bounds queue plus call: the running call is cancelled and tokens refunded."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=1, limit_tokens=100, period=1.0)
    await ex.execute(returning())
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await clock.sleep(100)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(ex.execute(slow, tokens=40, timeout=3))
    await clock.advance(1)  # granted at t=1, then runs
    assert ex.stats()["in_flight"] == 1
    await clock.advance(1.999)
    assert not task.done()
    await clock.advance(0.001)
    with pytest.raises(errors.TimeoutError, match="3"):
        await task
    assert cancelled.is_set()
    assert ex.limiter.levels["tokens"] == 100
    assert ex.stats()["timed_out"] == 1


async def test_own_timeout_error_of_fn_passes_through() -> None:
    """A TimeoutError raised by fn itself is re-raised unchanged and counted as a failure."""
    ex = executor(FakeClock())
    boom = errors.TimeoutError("read timed out")

    async def fn() -> None:
        raise boom

    with pytest.raises(errors.TimeoutError) as info:
        await ex.execute(fn, timeout=5)
    assert info.value is boom
    assert ex.stats()["failed"] == 1 and ex.stats()["timed_out"] == 0


async def test_settle_reconciles_actual_usage() -> None:
    """settle(result) refunds unused tokens or charges the overrun."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=None, limit_tokens=1000, period=1e6)
    assert await ex.execute(returning(120), tokens=500, settle=lambda r: r) == 120
    assert ex.limiter.levels["tokens"] == pytest.approx(880)
    await ex.execute(returning(300), tokens=100, settle=lambda r: r)
    assert ex.limiter.levels["tokens"] == pytest.approx(580)
    await ex.execute(returning(None), tokens=80, settle=lambda r: r)
    assert ex.limiter.levels["tokens"] == pytest.approx(500)


async def test_failure_refunds_tokens_and_propagates() -> None:
    """When fn raises, its tokens are refunded, the request stays spent, the error escapes."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=3, limit_tokens=100, period=1e6)

    async def fn() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError):
        await ex.execute(fn, tokens=70)
    assert ex.limiter.levels == {"requests": pytest.approx(2), "tokens": pytest.approx(100)}
    assert ex.stats()["failed"] == 1 and ex.stats()["completed"] == 0


async def test_priority_then_fifo_and_on_granted() -> None:
    """Waiting calls run by priority (None = 0), FIFO among equals; on_granted gets the wait."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=1, period=1.0)
    await ex.execute(returning())
    order: list[str] = []
    waits: dict[str, float] = {}

    def call(label: str, priority: float | None) -> asyncio.Task[object]:
        async def fn() -> None:
            order.append(label)

        def granted(w: float) -> None:
            waits[label] = w

        return asyncio.create_task(
            ex.execute(fn, priority=priority, on_granted=granted), name=label
        )

    tasks = []
    for label, prio in [("late", 2.0), ("n1", None), ("urgent", -1.0), ("n2", 0.0)]:
        tasks.append(call(label, prio))
        await settle()
    await clock.advance(10)
    await asyncio.gather(*tasks)
    assert order == ["urgent", "n1", "n2", "late"]
    assert waits == {"urgent": 1.0, "n1": 2.0, "n2": 3.0, "late": 4.0}


@pytest.mark.parametrize("entry", ["execute", "lease"])
async def test_a_small_call_never_overtakes_a_waiting_one(entry: str) -> None:
    """A call that could be served now still queues behind one waiting for more tokens."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=None, limit_tokens=10, period=10.0)  # 1 token/s
    await ex.execute(returning(), tokens=8)  # 2 tokens left
    order: list[str] = []

    async def run(label: str, tokens: int) -> None:
        async def fn() -> None:
            order.append(label)

        if entry == "execute":
            await ex.execute(fn, tokens=tokens)
        else:
            async with ex.lease(tokens=tokens) as reservation:
                await fn()
                reservation.settle(tokens)

    big = asyncio.create_task(run("big", 5))  # waits 3 s for its tokens
    await settle()
    small = asyncio.create_task(run("small", 1))  # 1 token is there, but "big" is first
    await settle()
    assert order == []
    await clock.advance(3)
    assert order == ["big"]
    await clock.advance(1)
    await asyncio.gather(big, small)
    assert order == ["big", "small"]


async def test_concurrency_limit_caps_running_calls() -> None:
    """No more than concurrency_limit calls run at the same time."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=None, concurrency_limit=3)
    running = peak = 0

    async def fn() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await clock.sleep(1)
        running -= 1

    tasks = [asyncio.create_task(ex.execute(fn)) for _ in range(10)]
    await settle()
    assert ex.stats()["in_flight"] == 3
    await clock.advance(4)
    await asyncio.gather(*tasks)
    assert peak == 3


async def test_pause_grants_nothing_until_it_ends() -> None:
    """After pause(s) no call starts before s seconds have passed."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=10, period=1.0)
    ex.pause(2.5)
    grants: list[float] = []
    tasks = [
        asyncio.create_task(
            ex.execute(returning(), on_granted=lambda _w: grants.append(clock.now()))
        )
        for _ in range(5)
    ]
    await clock.advance(5)
    await asyncio.gather(*tasks)
    assert grants == [2.5] * 5


async def test_aclose_fails_waiters_and_leaves_no_task() -> None:
    """aclose() fails queued callers with ExecutionError, stops the timer, refuses new calls."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=1, period=10.0)
    await ex.execute(returning())
    waiters = [asyncio.create_task(ex.execute(returning())) for _ in range(3)]
    await settle()
    await ex.aclose()
    for task in waiters:
        with pytest.raises(errors.ExecutionError, match="executor closed"):
            await task
    await settle()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert ex.stats()["cancelled"] == 3 and ex.stats()["queued"] == 0
    with pytest.raises(errors.ExecutionError, match="executor closed"):
        await ex.execute(returning())


async def test_bad_arguments_raise_value_error_naming_them() -> None:
    """Invalid execute or constructor arguments raise ValueError naming the parameter."""
    ex = executor(FakeClock(), limit_tokens=100)
    with pytest.raises(ValueError, match=r"tokens=101.*capacity 100"):
        await ex.execute(returning(), tokens=101)
    with pytest.raises(ValueError, match="timeout"):
        await ex.execute(returning(), timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        await ex.execute(returning(), timeout=math.nan)
    with pytest.raises(ValueError, match="priority"):
        await ex.execute(returning(), priority=math.nan)
    with pytest.raises(ValueError, match="queue_capacity"):
        RateLimitedExecutor(queue_capacity=0)
    with pytest.raises(ValueError, match="concurrency_limit"):
        RateLimitedExecutor(concurrency_limit=0)
    with pytest.raises(ValueError, match="capacity_refresh_time"):
        RateLimitedExecutor.from_limits(
            limit_requests=1, limit_tokens=None, capacity_refresh_time=0
        )
    with pytest.raises(ValueError, match="limit_requests"):
        RateLimitedExecutor.from_limits(limit_requests=0, limit_tokens=None)
    with pytest.raises(ValueError, match="clock"):
        RateLimitedExecutor(limiter=RateLimiter(clock=FakeClock()))


async def test_config_round_trip_starts_full() -> None:
    """to_dict holds only configuration; from_dict rebuilds full buckets."""
    clock = FakeClock()
    ex = executor(clock, limit_requests=30, limit_tokens=6000, period=60.0, queue_capacity=7)
    await ex.execute(returning(), tokens=5000)
    d = ex.to_dict()
    assert d == {
        "name": "rate_limited_executor",
        "queue_capacity": 7,
        "concurrency_limit": 100,
        "request_bucket": {"capacity": 30, "refill_rate": 0.5},
        "token_bucket": {"capacity": 6000, "refill_rate": 100.0},
    }
    again = RateLimitedExecutor.from_dict(d, clock=clock)
    assert again.to_dict() == d
    assert again.limiter.levels == {"requests": 30, "tokens": 6000}


def test_executor_builds_outside_a_loop() -> None:
    """An executor with limits can be created in synchronous code."""
    ex = RateLimitedExecutor(request_bucket=TokenBucket(RateLimitConfig(5, 1.0)))
    assert ex.stats()["queued"] == 0


async def test_real_clock_respects_the_bound() -> None:
    """On the system clock, 30 calls at 10 per 0.5 s keep the bound and finish near 1 s."""
    ex = RateLimitedExecutor.from_limits(
        limit_requests=10, limit_tokens=None, capacity_refresh_time=0.5
    )
    grants: list[float] = []
    start = SYSTEM_CLOCK.now()
    await asyncio.gather(
        *(
            ex.execute(returning(), on_granted=lambda _w: grants.append(SYSTEM_CLOCK.now()))
            for _ in range(30)
        )
    )
    elapsed = SYSTEM_CLOCK.now() - start
    assert 0.95 <= elapsed < 1.5
    assert max_in_window(grants, [1] * 30, 10, 0.5) <= 1.0


async def test_stats_count_each_timeout_and_cancellation_once() -> None:
    """A call that times out counts as timed out only; cancelled calls (with or without a
    deadline) count as cancelled once each."""
    executor = RateLimitedExecutor.from_limits(limit_requests=100, limit_tokens=None)
    never = asyncio.Event()

    async def slow() -> None:
        await never.wait()

    with pytest.raises(errors.TimeoutError):
        await executor.execute(slow, timeout=0.05)
    for timeout in (None, 5.0):
        task = asyncio.ensure_future(executor.execute(slow, timeout=timeout))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    stats = executor.stats()
    assert (stats["timed_out"], stats["cancelled"], stats["in_flight"]) == (1, 2, 0)
