"""Review regressions: calls held back by the concurrency limit never start above the rate."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from lionpride.core.clock import FakeClock
from lionpride.services.execution import RateLimitedExecutor


async def settle() -> None:
    """Let ready tasks run until they block."""
    for _ in range(20):
        await asyncio.sleep(0)


def one_slot(clock: FakeClock, limit_requests: int, refresh: float) -> RateLimitedExecutor:
    """An executor with ``limit_requests`` per ``refresh`` seconds and one concurrency slot."""
    return RateLimitedExecutor.from_limits(
        limit_requests=limit_requests,
        limit_tokens=None,
        capacity_refresh_time=refresh,
        clock=clock,
        concurrency_limit=1,
    )


async def occupy(ex: RateLimitedExecutor, gate: asyncio.Event) -> asyncio.Task[None]:
    """A call started on ``ex`` that holds its slot until ``gate`` is set."""
    task = asyncio.create_task(ex.execute(gate.wait))
    await settle()
    return task


async def test_calls_waiting_for_a_concurrency_slot_do_not_start_in_a_burst() -> None:
    """Grants made while every slot is busy must not let more than L calls start at once."""
    clock = FakeClock()
    ex = one_slot(clock, 2, 2.0)
    starts: list[float] = []

    async def slow() -> None:
        starts.append(clock.now())
        await clock.sleep(10)

    async def fast() -> None:
        starts.append(clock.now())

    first = asyncio.create_task(ex.execute(slow))
    await settle()
    rest = [asyncio.create_task(ex.execute(fast)) for _ in range(12)]
    await settle()
    await clock.advance(10)
    await clock.advance(10)
    await asyncio.gather(first, *rest)
    at_ten = sum(1 for t in starts if t == 10.0)
    # Bucket of 2 refilling 1/s: in a zero-length interval at most L = 2 calls may start.
    assert at_ten <= 2, starts


async def test_priority_still_orders_calls_blocked_by_concurrency() -> None:
    """A high-priority call queued behind a busy slot runs before earlier low-priority ones."""
    clock = FakeClock()
    ex = one_slot(clock, 100, 1.0)
    order: list[str] = []
    gate = asyncio.Event()

    def named(name: str) -> Callable[[], Awaitable[None]]:
        async def fn() -> None:
            order.append(name)

        return fn

    first = await occupy(ex, gate)
    low = [asyncio.create_task(ex.execute(named(f"low{i}"), priority=5)) for i in range(3)]
    await settle()
    high = asyncio.create_task(ex.execute(named("high"), priority=1))
    await settle()
    gate.set()
    await asyncio.gather(first, *low, high)
    assert order == ["high", "low0", "low1", "low2"]


async def test_cancelled_while_waiting_for_a_slot_gives_everything_back() -> None:
    """A call cancelled before it ran returns its request and leaves no slot taken."""
    clock = FakeClock()
    ex = one_slot(clock, 2, 1000.0)
    gate = asyncio.Event()

    async def quick() -> str:
        return "ok"

    first = await occupy(ex, gate)
    waiting = asyncio.create_task(ex.execute(quick))
    await settle()
    waiting.cancel()
    await settle()
    assert waiting.cancelled()
    gate.set()
    await first
    assert await ex.execute(quick) == "ok"
    assert ex.stats()["in_flight"] == 0 and ex.stats()["queued"] == 0
    await ex.aclose()
    await settle()
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize(("tokens", "used"), [(5, 5.0), (1, True), (3, -1)])
async def test_settle_must_give_a_token_count(tokens: int, used: object) -> None:
    """A settle result that is not a non-negative int is refused, even one equal to the
    reservation; the call is booked all the same (its slot comes back)."""
    ex = RateLimitedExecutor.from_limits(
        limit_requests=None, limit_tokens=10, capacity_refresh_time=1e6, clock=FakeClock()
    )

    async def fn() -> int:
        return 1

    with pytest.raises(ValueError, match="settle"):
        await ex.execute(fn, tokens=tokens, settle=lambda _: used)  # type: ignore[arg-type,return-value]
    assert ex.stats()["in_flight"] == 0
