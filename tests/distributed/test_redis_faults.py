"""Redis faults against a real redis-server (LIMITS-AND-RETRIES F12-F15, F17; I1, I5).

Admission is checked on Redis ``TIME``: every grant is bracketed by two ``TIME`` readings, so
the server moment it happened is known to lie between them, and a window is only charged
with grants that certainly fell inside it. Slow machines widen the brackets, which weakens
the check but never fails it wrongly.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio as aioredis
from tests.distributed._shared import bucket_and_breaker, reconnecting_bucket

from lionpride import errors
from lionpride.services.distributed import RedisCapacity, RedisCircuitBreaker
from lionpride.services.utilities.rate_limiter import RateLimitConfig, RateLimiter
from lionpride.services.utilities.resilience import CircuitBreakerOpenError, CircuitState

if TYPE_CHECKING:
    from conftest import RedisServer

Grant = tuple[float, float]  # (Redis TIME before the take, Redis TIME after it)


async def fail() -> None:
    raise errors.ServerError("boom", status_code=500)


async def ok() -> str:
    return "ok"


def admin(server: RedisServer) -> redis.Redis:
    """A plain client for the test's own commands (CLIENT PAUSE, REPLICAOF, ...)."""
    return redis.Redis(port=server.port, socket_timeout=5)


def dead_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def server_time(client: aioredis.Redis) -> float:
    seconds, micros = await client.time()
    return float(seconds) + micros / 1_000_000


async def grant_until(
    backends: list[RedisCapacity], server: RedisServer, count: int, grants: list[Grant]
) -> None:
    """Let every backend take one request at a time until ``grants`` holds ``count``."""
    async with aioredis.Redis(port=server.port, socket_timeout=5) as clock:

        async def one(backend: RedisCapacity) -> None:
            while len(grants) < count:
                before = await server_time(clock)
                wait = await backend.take(1, 0)
                after = await server_time(clock)
                if wait == 0:
                    grants.append((before, after))
                else:
                    await asyncio.sleep(wait)

        await asyncio.gather(*(one(backend) for backend in backends))


def worst_overrun(grants: list[Grant], burst: float, rate: float) -> float:
    """Largest excess over burst + rate·t of any window, counting only certain grants.

    The window from one grant's ``before`` to another's ``after`` surely holds every grant
    whose bracket lies inside it; more than burst + rate·(after - before) of them is an
    over-admission on the server's clock.
    """
    worst = -float("inf")
    for start, _ in grants:
        for _, end in grants:
            if end < start:
                continue
            inside = sum(1 for b, a in grants if b >= start and a <= end)
            worst = max(worst, inside - (burst + rate * (end - start)))
    return worst


async def test_processes_together_never_exceed_the_bound_on_redis_time(
    redis_server: RedisServer,
) -> None:
    """Three clients racing for one bucket: no server-time window holds more than b + r·t (I1)."""
    shape = RateLimitConfig(5, 40.0)
    backends = [
        RedisCapacity(redis_server.url, "bound", requests=shape, tokens=None) for _ in "abc"
    ]
    grants: list[Grant] = []
    await grant_until(backends, redis_server, 40, grants)
    assert worst_overrun(grants, 5, 40.0) <= 0
    for backend in backends:
        await backend.aclose()


@pytest.mark.parametrize(
    ("fault", "extra_burst"),
    [("script flush", 0), ("keys deleted", 5), ("restart", 5)],
)
async def test_lost_scripts_reload_and_lost_keys_cost_at_most_one_bucket(
    redis_server: RedisServer, fault: str, extra_burst: int
) -> None:
    """NOSCRIPT reloads the script, lost keys read as one full bucket; no fallback either way."""
    shape = RateLimitConfig(5, 40.0)
    backends = [RedisCapacity(redis_server.url, "lost", requests=shape, tokens=None) for _ in "ab"]
    grants: list[Grant] = []
    await grant_until(backends, redis_server, 15, grants)
    if fault == "restart":
        redis_server.kill()
        redis_server.start()
    else:
        client = admin(redis_server)
        try:
            if fault == "script flush":
                client.script_flush()
            else:
                client.delete(*backends[0].keys)
        finally:
            client.close()
    await grant_until(backends, redis_server, 30, grants)
    assert worst_overrun(grants, 5 + extra_burst, 40.0) <= 0
    for backend in backends:
        assert backend.shared and backend.link.fallbacks == 0
        await backend.aclose()


async def test_breaker_state_survives_a_script_flush(redis_server: RedisServer) -> None:
    """After NOSCRIPT the shared breaker reloads its scripts and keeps its failure count."""
    a, b = (
        RedisCircuitBreaker(
            failure_threshold=2, recovery_time=30.0, redis_url=redis_server.url, breaker_key="k"
        )
        for _ in "ab"
    )
    with pytest.raises(errors.ServerError):
        await a.execute(fail)
    client = admin(redis_server)
    try:
        client.script_flush()
    finally:
        client.close()
    with pytest.raises(errors.ServerError):
        await b.execute(fail)
    with pytest.raises(CircuitBreakerOpenError):
        await a.execute(ok)
    assert a.link.shared and b.link.shared
    for breaker in (a, b):
        await breaker.aclose()


async def max_loop_gap(during: Awaitable[object]) -> float:
    """Await ``during`` while measuring the longest stretch the event loop did not tick."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        await during
    finally:
        stop.set()
        await ticker
    return max(gaps, default=0.0)


async def test_a_paused_redis_costs_a_deadline_or_one_socket_timeout(
    redis_server: RedisServer,
) -> None:
    """Redis stalled (CLIENT PAUSE): deadlines hold, the loop runs on, local state serves (F13)."""
    timeout = 1.0
    backend = RedisCapacity(
        redis_server.url,
        "slow",
        requests=RateLimitConfig(5, 1.0),
        tokens=None,
        socket_timeout=timeout,
    )
    limiter = RateLimiter(backend=backend)
    breaker = RedisCircuitBreaker(
        redis_url=redis_server.url, breaker_key="slow", socket_timeout=timeout
    )
    await limiter.acquire()  # connected, script loaded
    assert await breaker.execute(ok) == "ok"
    client = admin(redis_server)
    client.execute_command("CLIENT", "PAUSE", "10000", "WRITE")  # scripts stall, TIME answers
    try:

        async def scenario() -> None:
            start = time.monotonic()
            with pytest.raises(errors.TimeoutError):
                await limiter.acquire(timeout=0.1)
            assert time.monotonic() - start < timeout  # the deadline, not the socket timeout
            cancelled = asyncio.create_task(breaker.execute(ok))
            await asyncio.sleep(0.05)  # its admission is waiting on Redis
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            start = time.monotonic()
            granted, answer = await asyncio.gather(limiter.acquire(), breaker.execute(ok))
            assert granted.requests == 1 and answer == "ok"
            assert time.monotonic() - start < 5  # one socket timeout, far from the 10 s pause

        assert await max_loop_gap(scenario()) < timeout
        assert not backend.shared and not breaker.link.shared
    finally:
        client.execute_command("CLIENT", "UNPAUSE")
        client.close()
    await backend.aclose()
    await breaker.aclose()


async def test_redis_down_at_start_is_used_once_it_comes_up(redis_server: RedisServer) -> None:
    """Started without Redis, limits and breaker run locally, then share once Redis is up (F12)."""
    redis_server.kill()
    clock, backend, breaker = bucket_and_breaker(redis_server.url, "late", 5)
    assert await backend.take(2, 0) == 0
    with pytest.raises(errors.ServerError):
        await breaker.execute(fail)  # opens the local breaker
    assert not backend.shared and not breaker.link.shared
    redis_server.start()
    await clock.advance(1.0)  # the first reconnect backoff
    assert await backend.take(1, 0) == 0
    assert backend.shared and backend.levels()["requests"] == pytest.approx(4, abs=0.01)
    assert await breaker.execute(ok) == "ok"  # the shared breaker, closed, answers now
    assert breaker.link.shared and breaker.state is CircuitState.CLOSED
    await backend.aclose()
    await breaker.aclose()


async def test_flapping_redis_never_hands_out_a_fresh_local_bucket(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Each outage starts local buckets from the last shared levels; one log line per switch."""
    caplog.set_level(logging.WARNING, logger="lionpride.distributed")
    backend = reconnecting_bucket(redis_server.url, "flap", 3, 1.0, retry_every=0.1)
    for _ in range(3):
        assert await backend.take(3, 0) == 0  # a full shared bucket (a restart lost its key)
        assert backend.shared
        redis_server.kill()
        assert await backend.take(1, 0) > 0.5  # local, and as empty as the shared one was
        assert not backend.shared
        redis_server.start()
        await asyncio.sleep(0.15)
    assert await backend.take(0, 0) == 0 and backend.shared
    assert backend.link.fallbacks == 3
    messages = [record.message for record in caplog.records]
    assert len(messages) == 6
    assert all("unreachable" in m for m in messages[::2])
    assert all("answers again" in m for m in messages[1::2])
    await backend.aclose()


@pytest.mark.parametrize("serve_stale_data", ["yes", "no"])
async def test_a_demoted_redis_applies_the_unreachable_policy(
    redis_server: RedisServer, serve_stale_data: str
) -> None:
    """After a failover the old primary answers READONLY or MASTERDOWN: fall back, or raise."""
    backend = reconnecting_bucket(redis_server.url, "demoted", 5, 0.01, retry_every=0.1)
    strict = RedisCapacity(
        redis_server.url,
        "demoted",
        requests=RateLimitConfig(5, 0.01),
        tokens=None,
        on_redis_error="raise",
    )
    breaker = RedisCircuitBreaker(redis_url=redis_server.url, breaker_key="demoted")
    assert await backend.take(1, 0) == 0
    client = admin(redis_server)
    try:
        client.config_set("replica-serve-stale-data", serve_stale_data)
        client.replicaof("127.0.0.1", dead_port())
        assert await backend.take(1, 0) == 0  # local, from the last shared level
        assert not backend.shared and backend.levels()["requests"] == pytest.approx(3)
        with pytest.raises(errors.ConnectionError, match="Redis at"):
            await strict.take(1, 0)
        with pytest.raises(errors.ServerError):
            await breaker.execute(fail)  # the call's own error, whatever the record met
        assert not breaker.link.shared
        assert await breaker.execute(ok) == "ok"
        client.replicaof("NO", "ONE")
        await asyncio.sleep(0.15)
        assert await backend.take(1, 0) == 0 and backend.shared
    finally:
        client.close()
    for each in (backend, strict, breaker):
        await each.aclose()


CRASHING_PROBER = """
import asyncio, sys
from lionpride.services.distributed import RedisCircuitBreaker

async def main() -> None:
    breaker = RedisCircuitBreaker(
        failure_threshold=1, recovery_time=0.1, redis_url=sys.argv[1], breaker_key="crash",
        probe_ttl=float(sys.argv[2]),
    )

    async def hang() -> None:
        print("probing", flush=True)
        await asyncio.Event().wait()

    await breaker.execute(hang)

asyncio.run(main())
"""


@pytest.fixture
async def crashing_prober(
    redis_server: RedisServer,
) -> AsyncIterator[Callable[[float], Awaitable[None]]]:
    """Runs a process that takes the half-open probe slot, then kills it (SIGKILL)."""
    procs: list[asyncio.subprocess.Process] = []

    async def run(probe_ttl: float) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CRASHING_PROBER,
            redis_server.url,
            str(probe_ttl),
            stdout=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"probing\n"
        proc.kill()
        await proc.wait()

    yield run
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_crashed_probers_slot_frees_itself_after_probe_ttl(
    redis_server: RedisServer, crashing_prober: Callable[[float], Awaitable[None]]
) -> None:
    """A prober killed mid-probe holds the slot until its lease expires; then others probe (F17)."""
    breaker = RedisCircuitBreaker(
        failure_threshold=1, recovery_time=0.1, redis_url=redis_server.url, breaker_key="crash"
    )
    with pytest.raises(errors.ServerError):
        await breaker.execute(fail)
    await asyncio.sleep(0.15)  # the recovery time
    await crashing_prober(2.0)
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.execute(ok)  # half-open, and the dead process holds the probe slot
    await asyncio.sleep(2.0)  # the lease was taken before the kill, so it has expired
    assert await breaker.execute(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED
    await breaker.aclose()


async def test_half_open_probes_are_bounded_across_many_clients(
    redis_server: RedisServer,
) -> None:
    """Ten clients racing after recovery: at most half_open_max_calls probes at once (I5)."""
    group = [
        RedisCircuitBreaker(
            failure_threshold=1,
            recovery_time=0.1,
            half_open_max_calls=2,
            redis_url=redis_server.url,
            breaker_key="herd",
        )
        for _ in range(10)
    ]
    with pytest.raises(errors.ServerError):
        await group[0].execute(fail)
    await asyncio.sleep(0.15)
    release = asyncio.Event()
    running = 0
    most = 0

    async def probe() -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return "probed"

    tasks = [asyncio.create_task(b.execute(probe)) for b in group]
    rejected = 0
    for done in asyncio.as_completed(tasks):
        try:
            await done
        except CircuitBreakerOpenError:
            rejected += 1
            if rejected == len(group) - 2:
                release.set()  # every other client was turned away while two probes hang
    assert most == 2 and rejected == len(group) - 2
    for breaker in group:
        await breaker.aclose()


async def test_client_clock_jumps_do_not_move_shared_state(redis_server: RedisServer) -> None:
    """An hour of client-clock jump refills no shared bucket and ends no shared open state (F15)."""
    clock, backend, breaker = bucket_and_breaker(redis_server.url, "clock", 2)
    assert await backend.take(2, 0) == 0
    with pytest.raises(errors.ServerError):
        await breaker.execute(fail)
    await clock.advance(3600.0)
    assert await backend.take(1, 0) > 90  # Redis TIME says the bucket is still empty
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.execute(ok)  # and that the breaker is still open
    await backend.aclose()
    await breaker.aclose()
