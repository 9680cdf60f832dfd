"""iModel with limits, end to end against FakeProvider enforcing the same limits."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr
from tests.conftest import model_on

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.services import iModel
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.utilities.rate_limiter import RateLimitConfig, TokenBucket
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Say something short."}]


def max_in_window(times: list[float], window: float) -> int:
    """The most events inside any closed interval of length ``window``."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] < t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def test_saturated_requests_use_the_budget_without_429s() -> None:
    """100 calls under 20 per 2 s finish in about 8 s, within L + L·t/T, with zero 429s."""
    async with FakeProvider(limit_requests=20, window=2.0) as fp:
        model = model_on(fp, "openai", limit_requests=20, capacity_refresh_time=2.0)
        start = time.monotonic()
        async with model:
            await asyncio.gather(*(model.invoke(model="m", messages=MESSAGES) for _ in range(100)))
        elapsed = time.monotonic() - start
        assert fp.count_429 == 0
        assert len(fp.requests) == 100
    assert 7.5 <= elapsed <= 9.5
    for t in (0.5, 1.0, 2.0, 4.0):
        assert max_in_window(fp.arrivals, t) <= 20 + 20 * t / 2.0 + 1


async def test_token_limit_reserves_and_reconciles() -> None:
    """Token reservations (prompt + max_tokens) keep FakeProvider's token limit unbroken."""
    async with FakeProvider(limit_tokens=400, window=1.0) as fp:
        model = model_on(fp, "openai", limit_tokens=400, capacity_refresh_time=1.0)
        async with model:
            callings = await asyncio.gather(
                *(model.invoke(model="m", messages=MESSAGES, max_tokens=40) for _ in range(30))
            )
            levels = model.executor.limiter.levels
        assert fp.count_429 == 0
        assert all(c.response is not None and c.response.usage for c in callings)
        # Reconciled: the bucket was charged real usage, not the 40-token output budgets.
        assert levels["tokens"] > 0


async def test_a_call_granted_at_once_never_overtakes_a_queued_one(
    fake_provider: FakeProvider,
) -> None:
    """invoke's own grant (no priority, no poll_timeout) queues behind a waiting call."""
    clock = FakeClock()
    model = iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        executor=RateLimitedExecutor.from_limits(
            limit_requests=None,
            limit_tokens=1000,
            capacity_refresh_time=1000.0,  # 1 token per second of the fake clock
            clock=clock,
        ),
    )
    async with model, model.executor:
        first = await model.create_calling(model="m", messages=MESSAGES, max_tokens=900)
        await model.invoke(first)  # reconciled to its small real usage, the rest refunded
        level = model.executor.limiter.levels["tokens"]
        big = await model.create_calling(model="m", messages=MESSAGES, max_tokens=int(level) + 5)
        small = await model.create_calling(model="m", messages=MESSAGES, max_tokens=10)
        waiting = asyncio.create_task(model.invoke(big))
        for _ in range(10):
            await asyncio.sleep(0)
        assert model.executor.stats()["queued"] == 1
        later = asyncio.create_task(model.invoke(small))
        for _ in range(10):
            await asyncio.sleep(0)
        # The small call's tokens are there, but the big one came first.
        assert model.executor.stats()["queued"] == 2
        assert len(fake_provider.requests) == 1
        await clock.advance(big.reserved_tokens + small.reserved_tokens)
        await asyncio.gather(waiting, later)
    bodies = [r.body["max_tokens"] for r in fake_provider.requests]  # arrival order
    assert bodies == [900, int(level) + 5, 10]


async def test_request_larger_than_token_bucket_fails_at_create() -> None:
    """A reservation larger than the bucket raises ValueError naming both numbers."""
    model = iModel(provider="openai", api_key=SecretStr("k"), limit_tokens=100)
    with pytest.raises(ValueError, match=r"needs \d+ tokens .* at most 100"):
        await model.create_calling(model="m", messages=MESSAGES, max_tokens=500)


async def test_poll_timeout_cancels_waiting_call_and_returns_capacity(
    fake_provider: FakeProvider,
) -> None:
    """A call still waiting for capacity at poll_timeout raises TimeoutError near it."""
    model = model_on(fake_provider, "openai", limit_requests=1, capacity_refresh_time=30.0)
    async with model:
        await model.invoke(model="m", messages=MESSAGES)
        start = time.monotonic()
        with pytest.raises(errors.TimeoutError) as info:
            await model.invoke(model="m", messages=MESSAGES, poll_timeout=0.5)
        elapsed = time.monotonic() - start
        assert model.executor.limiter.queue_depth == 0
    assert 0.45 <= elapsed <= 0.6
    assert info.value.calling is not None
    assert len(fake_provider.requests) == 1


async def test_poll_timeout_cancels_running_call(fake_provider: FakeProvider) -> None:
    """A slow call past poll_timeout is cancelled and raises TimeoutError."""
    fake_provider.script(Reply(delay=3.0))
    model = model_on(fake_provider, "openai", limit_requests=10, limit_tokens=10_000)
    async with model:
        tokens_before = model.executor.limiter.levels["tokens"]
        start = time.monotonic()
        with pytest.raises(errors.TimeoutError):
            await model.invoke(model="m", messages=MESSAGES, poll_timeout=0.5)
        assert time.monotonic() - start < 0.6
        assert model.executor.limiter.levels["tokens"] >= tokens_before - 1


async def test_429_pauses_the_models_limiter(fake_provider: FakeProvider) -> None:
    """A 429 with retry-after pauses the buckets, so the next call waits it out."""
    fake_provider.script(Reply(status=429, headers={"retry-after": "1"}))
    model = model_on(fake_provider, "openai", retry_config=None, limit_requests=100)
    async with model:
        with pytest.raises(errors.RateLimitError) as info:
            await model.invoke(model="m", messages=MESSAGES)
        assert info.value.retry_after == 1.0
        calling = await model.invoke(model="m", messages=MESSAGES)
    assert calling.execution.queue_wait >= 0.9


async def test_many_queued_calls_all_complete(fake_provider: FakeProvider) -> None:
    """2,000 calls queued at once under a binding limit all complete exactly once."""
    model = model_on(fake_provider, "openai", limit_requests=1000, capacity_refresh_time=1.0)
    async with model:
        callings = await asyncio.gather(
            *(model.invoke(model="m", messages=MESSAGES) for _ in range(2000))
        )
    assert len({c.id for c in callings}) == 2000
    assert all(c.response is not None for c in callings)
    assert len(fake_provider.requests) == 2000


async def test_simple_rate_limiter_times_out_instead_of_overrunning(
    fake_provider: FakeProvider,
) -> None:
    """With rate_limiter= and no capacity, invoke and streams time out and send nothing."""
    bucket = TokenBucket(RateLimitConfig(capacity=1, refill_rate=0.01))
    model = model_on(fake_provider, "openai", rate_limiter=bucket)
    async with model:
        await model.invoke(model="m", messages=MESSAGES)
        with pytest.raises(errors.TimeoutError):
            await model.invoke(model="m", messages=MESSAGES, poll_timeout=0.2)
        with pytest.raises(errors.TimeoutError) as info:
            async for _ in model.invoke_stream(model="m", messages=MESSAGES, poll_timeout=0.2):
                pass
        assert info.value.calling.execution.status.value == "cancelled"
        assert model.metrics()["calls"] == 3
    assert len(fake_provider.requests) == 1


async def test_streams_follow_the_executors_rules(fake_provider: FakeProvider) -> None:
    """A stream holds a concurrency slot while it runs, counts in stats, and is refused
    after the executor closed."""
    model = model_on(fake_provider, "openai", limit_requests=100, concurrency_limit=1)
    executor = model.executor
    first = model.invoke_stream(model="m", messages=MESSAGES)
    await first.__anext__()  # the first stream is open and holds the only slot
    assert executor.stats()["in_flight"] == 1
    second = asyncio.ensure_future(model.invoke(model="m", messages=MESSAGES))
    await asyncio.sleep(0.2)
    assert not second.done() and executor.stats()["queued"] == 1
    async for _ in first:
        pass
    calling = await asyncio.wait_for(second, 5)
    assert calling.response is not None
    stats = executor.stats()
    assert (stats["completed"], stats["in_flight"], stats["queued"]) == (2, 0, 0)
    await model.aclose()
    with pytest.raises(errors.ExecutionError, match="closed"):
        async for _ in model.invoke_stream(model="m", messages=MESSAGES):
            pass
