"""Documented pitfalls and weak points (SPEC §11, §12) that no other test pinned down."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
import weakref

import pytest
from pydantic import SecretStr
from tests.conftest import model_on

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.core.event import EventStatus
from lionpride.services import Endpoint, iModel
from lionpride.services.types.backend import Calling
from lionpride.services.types.tool import Tool
from lionpride.services.utilities.rate_limiter import RateLimitConfig, RateLimiter, TokenBucket
from lionpride.services.utilities.resilience import (
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
)
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Hi"}]


async def test_an_endpoint_without_request_schema_refuses_before_sending(
    fake_provider: FakeProvider,
) -> None:
    """§11.10: an Endpoint with no request_options raises ValueError naming it; nothing is sent."""
    backend = Endpoint(
        config={
            "provider": "plain",
            "name": "plain_api",
            "endpoint": "chat/completions",
            "base_url": fake_provider.base_url("openai"),
            "api_key": SecretStr("k"),
        }
    )
    async with iModel(backend=backend) as model:
        with pytest.raises(ValueError, match="plain_api must define request_options"):
            await model.invoke(model="m", messages=MESSAGES)
    assert fake_provider.requests == []


@pytest.mark.parametrize("limit_requests", [None, 10], ids=["direct", "executor"])
async def test_a_lowered_calling_timeout_bounds_the_call(
    fake_provider: FakeProvider, limit_requests: int | None
) -> None:
    """§11.20: a Calling made once and given a shorter timeout is cut at that timeout."""
    fake_provider.script(Reply(delay=10.0))
    model = model_on(fake_provider, "openai", limit_requests=limit_requests)
    async with model:
        calling = await model.create_calling(model="m", messages=MESSAGES)
        calling.timeout = 0.5
        start = time.monotonic()
        with pytest.raises(errors.TimeoutError):
            await model.invoke(calling=calling)
        elapsed = time.monotonic() - start
    assert 0.4 <= elapsed < 5.0  # far below the 10 s reply and the 300 s default
    assert calling.status is EventStatus.CANCELLED
    assert len(fake_provider.requests) == 1


async def test_a_restored_model_has_a_closed_breaker(
    fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§11.6 and §11.16: an open breaker is restored CLOSED with its settings; calls go through."""
    monkeypatch.setenv("LP_TEST_OPENAI_KEY", "sk-test")
    model = iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key="LP_TEST_OPENAI_KEY",
        retry_config=None,
        circuit_breaker=CircuitBreaker(failure_threshold=2, recovery_time=600.0),
    )
    fake_provider.script(Reply(status=500), Reply(status=500))
    async with model:
        for _ in range(2):
            with pytest.raises(errors.ServerError):
                await model.invoke(model="m", messages=MESSAGES)
        with pytest.raises(CircuitBreakerOpenError):
            await model.invoke(model="m", messages=MESSAGES)
    assert model.backend.circuit_breaker.state is CircuitState.OPEN  # type: ignore[attr-defined]
    restored = iModel.from_dict(model.to_dict())
    breaker = restored.backend.circuit_breaker  # type: ignore[attr-defined]
    assert breaker.state is CircuitState.CLOSED
    assert (breaker.failure_threshold, breaker.recovery_time) == (2, 600.0)
    async with restored:
        calling = await restored.invoke(model="m", messages=MESSAGES)
    assert calling.status is EventStatus.COMPLETED
    assert len(fake_provider.requests) == 3


async def test_a_token_shortfall_that_times_out_takes_no_request() -> None:
    """§11.9: waiting on the token bucket alone and timing out leaves the requests untouched."""
    clock = FakeClock()
    requests = TokenBucket(RateLimitConfig(capacity=10, refill_rate=1.0), clock=clock)
    tokens = TokenBucket(RateLimitConfig(capacity=100, refill_rate=10.0), clock=clock)
    limiter = RateLimiter(requests, tokens, clock=clock)
    assert limiter.try_acquire(1, 100) is not None  # tokens empty, 9 requests left
    waiter = asyncio.create_task(limiter.acquire(1, 50, timeout=2.0))  # tokens need 5 s
    await clock.advance(2.0)
    with pytest.raises(errors.TimeoutError):
        await waiter
    assert limiter.levels == {"requests": pytest.approx(10.0), "tokens": pytest.approx(20.0)}
    assert limiter.queue_depth == 0


def _raise(kind: str) -> None:
    """Raise the named builtin exception."""
    raise {"value": ValueError, "type": TypeError, "runtime": RuntimeError, "os": OSError}[kind](
        "boom"
    )


@pytest.mark.parametrize(
    ("kind", "retryable"),
    [("value", False), ("type", False), ("runtime", True), ("os", True)],
)
async def test_programming_errors_of_a_tool_are_not_retryable(kind: str, retryable: bool) -> None:
    """W16: a tool's ValueError or TypeError is marked not retryable; other failures are."""
    model = iModel(backend=Tool(func_callable=_raise))
    calling = await model.invoke(kind=kind, raise_on_error=False)
    assert calling.status is EventStatus.FAILED
    assert calling.execution.retryable is retryable


def test_importing_every_module_configures_no_logging_and_starts_nothing() -> None:
    """W13: importing any module leaves the root logger alone and starts no thread."""
    code = """
import importlib, logging, pkgutil, threading, lionpride
names = [m.name for m in pkgutil.walk_packages(lionpride.__path__, "lionpride.")]
for name in names:
    if name != "lionpride.cli.__main__":  # runs the command
        importlib.import_module(name)
root = logging.getLogger()
own = logging.getLogger("lionpride").handlers
print(len(names), root.handlers, logging.getLevelName(root.level), threading.active_count(),
      [type(h).__name__ for h in own])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, rest = out.stdout.split(" ", 1)
    assert int(count) > 50
    assert rest.strip() == "[] WARNING 1 ['NullHandler']"


async def test_finished_callings_are_not_retained(fake_provider: FakeProvider) -> None:
    """W9: neither the model nor its executor keeps a Calling (payload, response) once done."""
    fake_provider.script(Reply(), Reply(), Reply(), Reply(status=400))
    refs: list[weakref.ref[Calling]] = []
    model = model_on(fake_provider, "openai", limit_requests=100, limit_tokens=100_000)
    async with model:
        for options in ({}, {"priority": 0.0}, {"poll_timeout": 60.0}):  # every executor path
            calling = await model.invoke(model="m", messages=MESSAGES, **options)
            refs.append(weakref.ref(calling))
        with pytest.raises(errors.BadRequestError) as info:
            await model.invoke(model="m", messages=MESSAGES)
        refs.append(weakref.ref(info.value.calling))  # type: ignore[attr-defined]
        del info
        calling = await model.create_calling(streaming=True, model="m", messages=MESSAGES)
        async for _ in model.invoke_stream(calling):
            pass
        refs.append(weakref.ref(calling))
        del calling
        gc.collect()
        assert [ref() for ref in refs] == [None] * 5


@pytest.mark.parametrize("limit", ["rate_limiter", "executor"])
async def test_a_stream_takes_rate_limit_permission(
    fake_provider: FakeProvider, limit: str
) -> None:
    """§11.18: a stream spends a request of the model's limit; with none left, the next stream
    times out waiting and sends nothing."""
    limits: dict[str, object] = (
        {"rate_limiter": TokenBucket(RateLimitConfig(capacity=1, refill_rate=1 / 600))}
        if limit == "rate_limiter"
        else {"limit_requests": 1, "capacity_refresh_time": 600.0}
    )
    model = iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        **limits,  # type: ignore[arg-type]
    )
    async with model:
        chunks = [c async for c in model.invoke_stream(model="m", messages=MESSAGES)]
        assert chunks[-1].is_final
        with pytest.raises(errors.TimeoutError):
            async for _ in model.invoke_stream(model="m", messages=MESSAGES, poll_timeout=0.2):
                pass
    assert len(fake_provider.requests) == 1
