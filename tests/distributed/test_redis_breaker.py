"""Circuit-breaker state shared in Redis: one open breaker for all, probes bounded globally."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

import pytest
from tests.distributed._shared import one_strike_breaker

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.services.distributed import RedisCircuitBreaker
from lionpride.services.utilities.resilience import CircuitBreakerOpenError, CircuitState

if TYPE_CHECKING:
    from conftest import RedisServer


def breakers(url: str, n: int, **kw: float) -> list[RedisCircuitBreaker]:
    """``n`` breakers on one key, each with its own client, as separate processes would be."""
    return [
        RedisCircuitBreaker(
            failure_threshold=2, recovery_time=0.2, redis_url=url, breaker_key="svc", **kw
        )
        for _ in range(n)
    ]


async def fail() -> None:
    raise errors.ServerError("boom", status_code=500)


async def ok() -> str:
    return "ok"


async def test_failures_in_one_process_open_the_breaker_for_all(
    redis_server: RedisServer,
) -> None:
    """Consecutive failures counted across processes open every process's breaker."""
    a, b = breakers(redis_server.url, 2)
    with pytest.raises(errors.ServerError):
        await a.execute(fail)
    with pytest.raises(errors.ServerError):
        await b.execute(fail)
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1

    with pytest.raises(CircuitBreakerOpenError) as info:
        await a.execute(counted)
    assert calls == 0 and 0 < info.value.retry_after <= 0.2  # type: ignore[operator]
    assert a.state is CircuitState.OPEN
    assert b.metrics["state_changes"][-1]["to"] == "open"
    for breaker in (a, b):
        await breaker.aclose()


async def test_success_resets_the_shared_failure_count(redis_server: RedisServer) -> None:
    """A success anywhere resets the consecutive-failure count for everyone."""
    a, b = breakers(redis_server.url, 2)
    with pytest.raises(errors.ServerError):
        await a.execute(fail)
    assert await b.execute(ok) == "ok"
    with pytest.raises(errors.ServerError):
        await a.execute(fail)
    assert await b.execute(ok) == "ok"
    for breaker in (a, b):
        await breaker.aclose()


async def test_half_open_admits_one_probe_across_processes(redis_server: RedisServer) -> None:
    """After recovery, three processes racing get exactly half_open_max_calls probes; it closes."""
    group = breakers(redis_server.url, 3)
    for _ in range(2):
        with pytest.raises(errors.ServerError):
            await group[0].execute(fail)
    await asyncio.sleep(0.25)  # the recovery time, on Redis's clock
    release = asyncio.Event()
    running = 0

    async def probe() -> str:
        nonlocal running
        running += 1
        await release.wait()
        return "probed"

    tasks = [asyncio.create_task(b.execute(probe)) for b in group]
    finished = asyncio.as_completed(tasks)
    for _ in range(2):  # the probe blocks, so the first two to finish were refused
        with pytest.raises(CircuitBreakerOpenError):
            await next(finished)
    assert running == 1
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("probed") == 1
    assert sum(isinstance(r, CircuitBreakerOpenError) for r in results) == 2
    assert await group[1].execute(ok) == "ok"
    assert group[1].state is CircuitState.CLOSED
    for breaker in group:
        await breaker.aclose()


async def test_a_cancelled_probe_frees_its_slot(redis_server: RedisServer) -> None:
    """Cancellation is neither success nor failure, and the probe slot comes back at once."""
    a, b = breakers(redis_server.url, 2)
    for _ in range(2):
        with pytest.raises(errors.ServerError):
            await a.execute(fail)
    await asyncio.sleep(0.25)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(a.execute(hang))
    await started.wait()
    with pytest.raises(CircuitBreakerOpenError):
        await b.execute(ok)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await b.execute(ok) == "ok"
    for breaker in (a, b):
        await breaker.aclose()


async def test_an_open_breaker_reads_half_open_once_its_recovery_time_passed(
    redis_server: RedisServer,
) -> None:
    """Like CircuitBreaker.state, the shared state reads HALF_OPEN after recovery_time."""
    clock = FakeClock()
    breaker = one_strike_breaker(redis_server.url, "svc", clock)
    with pytest.raises(errors.ServerError):
        await breaker.execute(fail)
    assert breaker.state is CircuitState.OPEN
    await clock.advance(29.9)
    assert breaker.state is CircuitState.OPEN
    await clock.advance(0.1)
    assert breaker.state is CircuitState.HALF_OPEN
    await breaker.aclose()


async def test_a_rejected_caller_reads_half_open_when_the_remaining_wait_passed(
    redis_server: RedisServer,
) -> None:
    """A process that only saw the open state in a rejection counts from the wait Redis reported."""
    clock = FakeClock()
    opener, other = (
        RedisCircuitBreaker(
            failure_threshold=2,
            recovery_time=30.0,
            redis_url=redis_server.url,
            breaker_key="svc",
            clock=each,
        )
        for each in (FakeClock(), clock)
    )
    for _ in range(2):
        with pytest.raises(errors.ServerError):
            await opener.execute(fail)
    with pytest.raises(CircuitBreakerOpenError) as info:
        await other.execute(ok)
    wait = info.value.retry_after
    assert wait is not None and 29 < wait <= 30
    assert other.state is CircuitState.OPEN
    await clock.advance(wait)
    assert other.state is CircuitState.HALF_OPEN
    for breaker in (opener, other):
        await breaker.aclose()


async def test_unreachable_redis_falls_back_to_the_local_breaker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without Redis the breaker works in-process after one warning; "raise" fails instead."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    caplog.set_level(logging.WARNING, logger="lionpride.distributed")
    (breaker,) = breakers(url, 1)
    for _ in range(2):
        with pytest.raises(errors.ServerError):
            await breaker.execute(fail)
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.execute(ok)
    assert breaker.state is CircuitState.OPEN and not breaker.link.shared
    assert len(caplog.records) == 1
    strict = RedisCircuitBreaker(redis_url=url, breaker_key="svc", on_redis_error="raise")
    with pytest.raises(errors.ConnectionError):
        await strict.execute(ok)
    await breaker.aclose()
    await strict.aclose()
