"""Shared limits on Redis: one invariant suite over local and Redis backends, plus Redis faults."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
import redis
from tests.distributed._shared import reconnecting_bucket

from lionpride import errors
from lionpride.services.distributed import RedisCapacity, default_limit_key, make_limiter
from lionpride.services.utilities.rate_limiter import (
    CapacityBackend,
    LocalCapacity,
    RateLimitConfig,
    RateLimiter,
    TokenBucket,
)

if TYPE_CHECKING:
    from conftest import RedisServer

Factory = Callable[[RateLimitConfig | None, RateLimitConfig | None], CapacityBackend]


@pytest.fixture(params=["local", "redis"])
async def make_backend(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Builds backends of one kind (local buckets or Redis) with the given bucket shapes."""
    made: list[RedisCapacity] = []
    if request.param == "local":

        def local(req: RateLimitConfig | None, tok: RateLimitConfig | None) -> CapacityBackend:
            return LocalCapacity(req and TokenBucket(req), tok and TokenBucket(tok))

        yield local
        return
    server: RedisServer = request.getfixturevalue("redis_server")

    def shared(req: RateLimitConfig | None, tok: RateLimitConfig | None) -> CapacityBackend:
        backend = RedisCapacity(server.url, f"suite-{len(made)}", requests=req, tokens=tok)
        made.append(backend)
        return backend

    yield shared
    for backend in made:
        await backend.aclose()


async def flush(backend: CapacityBackend) -> None:
    """Wait until give-backs and pauses reached the backend's store."""
    if isinstance(backend, RedisCapacity):
        await backend.flush()


async def levels(backend: CapacityBackend) -> dict[str, float]:
    """Current levels, read through a take of nothing (which Redis answers with its levels)."""
    await flush(backend)
    assert await backend.take(0, 0) == 0
    return backend.levels()


def conforms(times: list[float], burst: int, rate: float, slack: float) -> bool:
    """True if every window [t_i, t_j] holds at most burst + rate·(t_j - t_i + slack) grants."""
    times = sorted(times)
    return all(
        j - i + 1 <= burst + rate * (times[j] - times[i] + slack)
        for i in range(len(times))
        for j in range(i, len(times))
    )


async def test_takes_both_or_nothing(make_backend: Factory) -> None:
    """When the tokens are short, the request is not taken either."""
    backend = make_backend(RateLimitConfig(2, 1.0), RateLimitConfig(10, 1.0))
    assert await backend.take(1, 8) == 0
    wait = await backend.take(1, 8)
    assert 5.5 < wait <= 6.0
    got = await levels(backend)
    assert got["requests"] == pytest.approx(1, abs=0.1)
    assert got["tokens"] == pytest.approx(2, abs=0.1)


async def test_wait_is_the_deficit_over_the_rate(make_backend: Factory) -> None:
    """An empty bucket answers the exact time until one unit has refilled."""
    backend = make_backend(RateLimitConfig(4, 10.0), None)
    assert await backend.take(4, 0) == 0
    assert 0.07 < await backend.take(1, 0) <= 0.1


async def test_over_capacity_is_refused(make_backend: Factory) -> None:
    """An amount no bucket can ever hold is a ValueError naming both numbers."""
    backend = make_backend(RateLimitConfig(2, 1.0), RateLimitConfig(10, 1.0))
    with pytest.raises(ValueError, match="capacity 10"):
        backend.check(1, 11)
    backend.check(2, 10)


async def test_give_back_is_capped_and_charges_go_into_debt(make_backend: Factory) -> None:
    """Refunds stop at capacity; a negative give-back (reconciliation) leaves debt to wait off."""
    backend = make_backend(None, RateLimitConfig(10, 1.0))
    assert await backend.take(0, 10) == 0
    backend.give_back(0, 20)
    assert (await levels(backend))["tokens"] == pytest.approx(10, abs=0.1)
    backend.give_back(0, -15)
    assert (await levels(backend))["tokens"] == pytest.approx(-5, abs=0.1)
    assert 5.5 < await backend.take(0, 1) <= 6.0


async def test_pause_holds_everything(make_backend: Factory) -> None:
    """A pause (a 429's retry_after) makes a full bucket wait it out."""
    backend = make_backend(RateLimitConfig(5, 10.0), None)
    backend.pause(0.3)
    await flush(backend)
    assert 0.2 < await backend.take(1, 0) <= 0.3


async def test_limiter_grants_within_the_bound_in_fifo_order(make_backend: Factory) -> None:
    """Through a RateLimiter, grants keep burst + rate·t in every window and arrive FIFO."""
    limiter = RateLimiter(
        backend=make_backend(RateLimitConfig(3, 30.0), RateLimitConfig(30, 300.0))
    )
    order: list[int] = []
    times: list[float] = []

    async def call(i: int) -> None:
        await limiter.acquire(1, 10)
        order.append(i)
        times.append(time.monotonic())

    start = time.monotonic()
    await asyncio.gather(*(call(i) for i in range(12)))
    assert order == list(range(12))
    assert conforms(times, 3, 30.0, slack=0.005)
    assert 0.28 < times[-1] - start < 0.6  # nine refills of 1/30 s, with little idle time


async def test_cancelled_waiter_takes_nothing(make_backend: Factory) -> None:
    """A waiter cancelled in the queue leaves its capacity to the next caller."""
    limiter = RateLimiter(backend=make_backend(RateLimitConfig(1, 4.0), None))
    start = time.monotonic()
    await limiter.acquire()
    doomed = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.05)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await limiter.acquire()
    assert 0.2 < time.monotonic() - start < 0.4


async def test_settle_reconciles_tokens(make_backend: Factory) -> None:
    """Settling a reservation at its real usage refunds the difference to the bucket."""
    backend = make_backend(None, RateLimitConfig(100, 0.01))
    limiter = RateLimiter(backend=backend)
    reservation = await limiter.acquire(1, 60)
    reservation.settle(20)
    assert (await levels(backend))["tokens"] == pytest.approx(80, abs=0.5)
    limiter.adjust_tokens(30)
    assert (await levels(backend))["tokens"] == pytest.approx(50, abs=0.5)


async def test_a_refund_wakes_a_waiter_at_once(make_backend: Factory) -> None:
    """A waiter blocked on tokens is granted as soon as another call's settle refunds them."""
    limiter = RateLimiter(backend=make_backend(None, RateLimitConfig(100, 0.01)))
    first = await limiter.acquire(0, 100)
    waiter = asyncio.create_task(limiter.acquire(0, 50))
    await asyncio.sleep(0.05)  # queued, with a computed wait of 5000 s
    assert not waiter.done() and limiter.queue_depth == 1
    first.settle(10)
    granted = await asyncio.wait_for(waiter, 5)
    assert granted.tokens == 50 and granted.waited < 5
    assert limiter.queue_depth == 0


# --- Redis only ---------------------------------------------------------------------------------


async def test_two_backends_with_one_key_share_and_other_keys_do_not(
    redis_server: RedisServer,
) -> None:
    """Backends naming the same key share one bucket; another key has its own."""
    shape = RateLimitConfig(5, 1.0)
    a, b, c = (
        RedisCapacity(redis_server.url, key, requests=shape, tokens=None)
        for key in ("same", "same", "other")
    )
    assert await a.take(5, 0) == 0
    assert await b.take(1, 0) > 0.9
    assert await c.take(5, 0) == 0
    b.pause(0.5)
    await b.flush()
    assert 0.4 < await a.take(0, 0) <= 0.5
    assert await c.take(0, 0) == 0
    for backend in (a, b, c):
        await backend.aclose()


async def test_bucket_keys_expire_once_they_would_be_full(redis_server: RedisServer) -> None:
    """State carries a TTL of the time to refill (plus 1 s), so abandoned keys vanish."""
    backend = RedisCapacity(redis_server.url, "ttl", requests=RateLimitConfig(10, 5.0), tokens=None)
    assert await backend.take(10, 0) == 0
    client = redis.Redis(port=redis_server.port)
    try:
        assert 2500 < client.pttl(backend.keys[0]) <= 3000
        assert client.exists(backend.keys[1], backend.keys[2]) == 0
    finally:
        client.close()
    await backend.aclose()


async def test_a_killed_redis_falls_back_to_local_limits_then_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed mid-run, calls go on under local limits with one warning, then shared again."""
    backend = reconnecting_bucket(redis_server.url, "outage", 5, 25.0, retry_every=0.2)
    limiter = RateLimiter(backend=backend)

    async def run(n: int) -> list[float]:
        times = []
        for _ in range(n):
            await limiter.acquire()
            times.append(time.monotonic())
        return times

    caplog.set_level(logging.WARNING, logger="lionpride.distributed")
    await run(10)
    assert backend.shared
    redis_server.kill()
    local = await run(20)
    assert not backend.shared
    assert conforms(local, 5, 25.0, slack=0.002)
    assert [r.message for r in caplog.records if "unreachable" in r.message] != []
    assert len(caplog.records) == 1
    redis_server.start()
    await asyncio.sleep(0.25)  # the reconnect backoff
    await run(10)
    assert backend.shared
    client = redis.Redis(port=redis_server.port)
    try:
        assert client.exists(backend.keys[0]) == 1
    finally:
        client.close()
    assert len(caplog.records) == 2 and "answers again" in caplog.records[1].message
    await backend.aclose()


@pytest.fixture
def blackhole() -> Any:
    """A port that accepts connections (into the backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


async def test_nothing_hangs_on_a_silent_redis(blackhole: str) -> None:
    """A Redis that never answers costs one socket timeout, then local limits serve."""
    backend = RedisCapacity(blackhole, "silent", requests=RateLimitConfig(2, 1.0), tokens=None)
    start = time.monotonic()
    assert await backend.take(1, 0) == 0
    assert await backend.take(1, 0) == 0
    assert await backend.take(1, 0) > 0.5
    assert time.monotonic() - start < 1.5
    assert not backend.shared
    await backend.aclose()


async def test_raise_policy_fails_fast_without_the_password() -> None:
    """With on_redis_error="raise" an unreachable Redis is a ConnectionError hiding secrets."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    limiter = make_limiter(
        redis_url=f"redis://user:s3cret@127.0.0.1:{port}/0",
        limit_key="strict",
        limit_requests=5,
        limit_tokens=None,
        capacity_refresh_time=1.0,
        on_redis_error="raise",
    )
    with pytest.raises(errors.ConnectionError) as info:
        await limiter.acquire()
    assert "s3cret" not in str(info.value) and str(port) in str(info.value)
    assert limiter.queue_depth == 0


def test_default_limit_key_hashes_the_api_key() -> None:
    """The default key is the model name plus a short hash; the API key never appears."""
    one = default_limit_key("gpt-4o", "sk-secret-one")
    assert one.startswith("gpt-4o:") and "secret" not in one
    assert one != default_limit_key("gpt-4o", "sk-secret-two")
    assert one == default_limit_key("gpt-4o", "sk-secret-one")
    assert default_limit_key("gpt-4o", None) == "gpt-4o"


def test_importing_the_library_does_not_import_redis() -> None:
    """Redis is loaded only when a shared limit or breaker is built (D9)."""
    code = (
        "import sys, lionpride.services, lionpride.services.distributed; "
        "assert 'redis' not in sys.modules, 'redis imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_bad_arguments_are_refused() -> None:
    """Empty keys, unknown policies and buckets without refill are ValueErrors."""
    url = "redis://127.0.0.1:1/0"
    with pytest.raises(ValueError, match="limit_key"):
        RedisCapacity(url, "", requests=None, tokens=None)
    with pytest.raises(ValueError, match="on_redis_error"):
        RedisCapacity(url, "k", requests=None, tokens=None, on_redis_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refill_rate"):
        RedisCapacity(url, "k", requests=RateLimitConfig(1, 0.0), tokens=None)
    with pytest.raises(ValueError, match="capacity_refresh_time"):
        make_limiter(
            redis_url=url,
            limit_key="k",
            limit_requests=1,
            limit_tokens=None,
            capacity_refresh_time=0,
        )
