"""iModel over limits shared in Redis: tokens charged as locally, and settled after a close."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr
from tests.distributed.conftest import RedisServer

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.distributed import RedisCapacity, make_limiter
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.utilities.resilience import CircuitBreaker, no_backoff
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Hello there."}]


def _shared_model(redis_server: RedisServer, fake_provider: FakeProvider, key: str) -> iModel:
    """A model with 50 requests and 10,000 tokens an hour, shared in Redis under ``key`` (the
    configured limits alone: learning is tested in test_redis_learned)."""
    return iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        limit_requests=50,
        limit_tokens=10_000,
        capacity_refresh_time=3600.0,
        redis_url=redis_server.url,
        limit_key=key,
        adaptive_limits=False,
    )


async def _shared_levels(model: iModel) -> dict[str, float]:
    """The levels in Redis now, once every give-back has reached it."""
    assert model.executor is not None
    backend = model.executor.limiter.backend
    assert isinstance(backend, RedisCapacity)
    await backend.flush()
    assert await backend.take(0, 0) == 0  # answered with the current levels
    return backend.levels()


async def test_a_call_reserves_and_settles_tokens_in_redis(
    redis_server: RedisServer, fake_provider: FakeProvider
) -> None:
    model = _shared_model(redis_server, fake_provider, "tokens-via-imodel")
    try:
        calling = await model.create_calling(model="m", messages=MESSAGES, max_tokens=500)
        assert calling.reserved_tokens >= 500  # the output budget, plus the prompt estimate
        await model.invoke(calling)
        usage = calling.usage
        assert usage is not None and usage.total_tokens > 0
        levels = await _shared_levels(model)
        # Settled to the real usage: the reservation's surplus came back, the usage did not.
        assert levels["tokens"] == pytest.approx(10_000 - usage.total_tokens, abs=0.5)
        assert levels["requests"] == pytest.approx(49, abs=0.5)
    finally:
        await model.aclose()


async def test_a_settle_after_aclose_reaches_redis_and_closes_its_connection(
    redis_server: RedisServer, fake_provider: FakeProvider
) -> None:
    """A call that outlives its model's close still settles, and leaves no connection."""
    fake_provider.script(Reply(delay=0.2))
    model = _shared_model(redis_server, fake_provider, "settle-after-close")
    assert model.executor is not None
    backend = model.executor.limiter.backend
    assert isinstance(backend, RedisCapacity)
    call = asyncio.create_task(model.invoke(model="m", messages=MESSAGES, max_tokens=1000))
    while not fake_provider.requests:  # the call is on the wire
        await asyncio.sleep(0.01)
    await model.aclose()
    with pytest.raises(errors.ExecutionError, match="closed"):
        await call  # cut by the close, and not retried
    await backend.flush()
    assert backend.link._client is None  # the refund's connection was closed again
    # The refund landed: the failed call's reservation is back in the shared bucket.
    levels = await _shared_levels(model)
    assert levels["tokens"] == pytest.approx(10_000, abs=0.5)
    await backend.aclose()


async def test_an_executor_over_shared_limits_is_not_written_as_unlimited(
    redis_server: RedisServer,
) -> None:
    limiter = make_limiter(
        redis_url=redis_server.url,
        limit_key="team",
        limit_requests=2,
        limit_tokens=None,
        capacity_refresh_time=60,
    )
    shared = RateLimitedExecutor(limiter=limiter)
    model = iModel(provider="openai", api_key=SecretStr("sk"), executor=shared)
    with pytest.raises(NotImplementedError, match="redis_url="):
        model.to_dict()
    await model.aclose()
    await shared.aclose()
    await limiter.backend.aclose()  # type: ignore[attr-defined]


async def test_local_limits_survive_beside_a_breaker_shared_in_redis(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model with local limits and a breaker shared in Redis restores both."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")  # the raw key is not saved: read on restore
    executor = RateLimitedExecutor.from_limits(
        limit_requests=3, limit_tokens=None, capacity_refresh_time=60
    )
    model = iModel(
        provider="openai",
        api_key=SecretStr("sk"),
        executor=executor,
        circuit_breaker=CircuitBreaker(failure_threshold=2, recovery_time=5),
        redis_url=redis_server.url,
        breaker_key="brk",
    )
    restored = iModel.from_dict(model.to_dict(), redis_url=redis_server.url)
    try:
        assert restored.executor is not None
        assert restored.executor.to_dict()["request_bucket"] == {
            "capacity": 3,
            "refill_rate": 0.05,
        }
    finally:
        await model.aclose()
        await restored.aclose()
        await executor.aclose()


async def test_a_retry_after_an_answer_is_charged_to_the_shared_requests(
    redis_server: RedisServer, fake_provider: FakeProvider
) -> None:
    """A 503 then a success: the provider saw two requests, and so did the shared bucket."""
    model = _shared_model(redis_server, fake_provider, "retry-charged")
    fake_provider.script(Reply(status=503))
    try:
        with no_backoff():
            calling = await model.invoke(model="m", messages=MESSAGES)
        assert calling.execution.attempts == 2 and len(fake_provider.requests) == 2
        levels = await _shared_levels(model)
        assert levels["requests"] == pytest.approx(48, abs=0.5)
    finally:
        await model.aclose()
