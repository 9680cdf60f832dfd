"""Limits on every path of iModel: the simple bucket, shared executors, a Calling run twice."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.services import iModel
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.types.backend import ServiceBackend, ServiceConfig
from lionpride.services.types.response import NormalizedResponse, Usage
from lionpride.services.utilities.rate_limiter import RateLimitConfig, TokenBucket
from lionpride.services.utilities.resilience import no_backoff
from lionpride.testing import FakeProvider, Reply

M = [{"role": "user", "content": "Say something short."}]


def _model(fake_provider: FakeProvider, **kw: object) -> iModel:
    return iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        **kw,  # type: ignore[arg-type]
    )


async def test_poll_timeout_bounds_the_simple_buckets_wait_and_the_call_together(
    fake_provider: FakeProvider,
) -> None:
    """With ``rate_limiter=``, the wait for the bucket and the call share one deadline."""
    bucket = TokenBucket(RateLimitConfig(capacity=1, refill_rate=1 / 0.4))  # next one in 0.4 s
    async with _model(fake_provider, rate_limiter=bucket) as model:
        assert bucket.try_acquire(1)  # emptied here, not by a call whose length varies
        fake_provider.script(Reply(delay=0.4))
        # each part alone fits in 0.5 s; together they take 0.8 s, and still more than
        # 0.5 s if a slow machine lets the bucket refill half of its wait meanwhile
        with pytest.raises(errors.TimeoutError, match="poll_timeout"):
            await model.invoke(model="m", messages=M, poll_timeout=0.5)


async def test_a_429_pauses_the_simple_bucket(fake_provider: FakeProvider) -> None:
    clock = FakeClock(100.0)
    bucket = TokenBucket(RateLimitConfig(capacity=100, refill_rate=100.0), clock=clock)
    fake_provider.script(Reply(status=429, headers={"retry-after": "7"}))
    async with _model(fake_provider, rate_limiter=bucket, retry_config=None) as model:
        with pytest.raises(errors.RateLimitError):
            await model.invoke(model="m", messages=M)
    assert not bucket.try_acquire(1)  # paused for the 429's retry-after
    await clock.advance(7.5)
    assert bucket.try_acquire(1)


async def test_closing_one_model_leaves_a_shared_executor_to_the_others(
    fake_provider: FakeProvider,
) -> None:
    shared = RateLimitedExecutor.from_limits(limit_requests=100, limit_tokens=None)
    first, second = _model(fake_provider, executor=shared), _model(fake_provider, executor=shared)
    async with first:
        await first.invoke(model="m", messages=M)
    calling = await second.invoke(model="m", messages=M)  # not "executor closed"
    assert calling.response is not None
    await second.aclose()
    await shared.aclose()
    own = _model(fake_provider, limit_requests=10)
    executor = own.executor
    assert executor is not None
    await own.aclose()  # an executor the model built is the model's to close
    with pytest.raises(errors.ExecutionError, match="closed"):
        await own.invoke(model="m", messages=M)


async def test_a_calling_that_ran_cannot_take_capacity_again(fake_provider: FakeProvider) -> None:
    async with _model(
        fake_provider, limit_requests=5, limit_tokens=10_000, capacity_refresh_time=3600
    ) as model:
        calling = await model.create_calling(model="m", messages=M, max_tokens=100)
        await model.invoke(calling)
        assert model.executor is not None
        before = model.executor.limiter.levels
        with pytest.raises(ValueError, match="already ran"):
            await model.invoke(calling)
        with pytest.raises(ValueError, match="already ran"):
            async for _ in model.invoke_stream(calling):
                pass
        after = model.executor.limiter.levels
    assert len(fake_provider.requests) == 1
    assert after["requests"] == pytest.approx(before["requests"], abs=0.01)
    assert after["tokens"] == pytest.approx(before["tokens"], abs=0.5)


class _Unmetered(ServiceBackend):
    """A backend that cannot estimate its tokens in advance (reserves 0), like the CLIs."""

    async def call(self, request: dict[str, Any], **_: Any) -> NormalizedResponse:
        usage = Usage(input_tokens=100, output_tokens=200, total_tokens=300)
        return NormalizedResponse(data="ok", usage=usage)


@pytest.mark.parametrize("path", ["granted at once", "through execute"])
async def test_usage_of_a_call_that_reserved_nothing_is_charged(path: str) -> None:
    """Under a token limit, a call's real usage is charged even when it reserved 0 tokens."""
    executor = RateLimitedExecutor.from_limits(
        limit_requests=None, limit_tokens=1000, capacity_refresh_time=1e6, clock=FakeClock()
    )
    model = iModel(
        backend=_Unmetered(config=ServiceConfig(provider="p", name="n")), executor=executor
    )
    calling = await model.invoke(**({} if path == "granted at once" else {"priority": 0.0}))
    assert calling.reserved_tokens == 0
    assert executor.limiter.levels["tokens"] == pytest.approx(700)
    await executor.aclose()


def _reset_only(capacity: int) -> tuple[TokenBucket, FakeClock]:
    clock = FakeClock(0.0)
    return TokenBucket(RateLimitConfig(capacity=capacity, refill_rate=0), clock=clock), clock


@pytest.mark.parametrize("path", ["executor", "rate_limiter"])
async def test_a_retry_after_an_answer_takes_one_more_request(
    fake_provider: FakeProvider, path: str
) -> None:
    """The provider answered (503, 429, a timeout): the retry is a second request it sees,
    so it is counted, and the grants after it wait for it. A retry after a refused
    connection (nothing reached the provider) is not, see test_fault_matrix_review."""
    bucket, clock = _reset_only(5)
    limits: dict[str, Any] = (
        {"executor": RateLimitedExecutor(request_bucket=bucket, clock=clock)}
        if path == "executor"
        else {"rate_limiter": bucket}
    )
    fake_provider.script(Reply(status=503), Reply(status=429, headers={"retry-after": "0"}))
    async with _model(fake_provider, **limits) as model:
        with no_backoff():
            calling = await model.invoke(model="m", messages=M)
    assert calling.execution.attempts == 3 and len(fake_provider.requests) == 3
    assert bucket.level == 2  # 5, less the grant and two retries


def test_charge_takes_capacity_into_debt_and_names_bad_amounts() -> None:
    bucket, clock = _reset_only(2)
    executor = RateLimitedExecutor(request_bucket=bucket, clock=clock)
    executor.charge(3)
    assert bucket.level == -1
    assert executor.limiter.try_acquire(1) is None
    with pytest.raises(ValueError, match="requests"):
        executor.charge(-1)
