"""Limits learned from the provider, end to end against a FakeProvider whose limits the
client is not told."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

import pytest
from pydantic import SecretStr
from tests.services.test_invoke_sync import provider_in_thread

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.types.hook import HookPhase, HookRegistry
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Say something short."}]


def model_for(fp: FakeProvider, provider: str = "openai", **kwargs: Any) -> iModel:
    """A model of ``provider`` on the FakeProvider, nothing configured unless given."""
    return iModel(
        provider=provider, base_url=fp.base_url(provider), api_key=SecretStr("k"), **kwargs
    )


async def run(model: iModel, total: int, concurrency: int, **request: Any) -> list[Any]:
    """``total`` calls, ``concurrency`` at a time; the Callings (failed ones included)."""
    left = iter(range(total))
    done: list[Any] = []

    async def worker() -> None:
        for _ in left:
            done.append(
                await model.invoke(model="m", messages=MESSAGES, raise_on_error=False, **request)
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_headers_pace_a_model_with_nothing_configured(provider: str) -> None:
    """With no limit configured, each header style's limits are learned and met: no 429."""
    async with (
        FakeProvider(limit_requests=20, window=1.0, latency=0.01) as fp,
        model_for(fp, provider) as model,
    ):
        done = await run(model, 60, 16, max_tokens=32)
        learned = model.metrics()["learned_limits"]
    assert all(c.execution.error is None for c in done)
    assert fp.count_429 == 0
    assert learned["requests"]["limit"] == 20 and learned["requests"]["source"] == "headers"


async def test_without_learning_the_same_run_meets_429s() -> None:
    """The control for the test above: adaptive_limits=False sends at once and is refused."""
    async with (
        FakeProvider(limit_requests=20, window=1.0, latency=0.01) as fp,
        model_for(fp, adaptive_limits=False) as model,
    ):
        await run(model, 60, 16, max_tokens=32)
    assert fp.count_429 > 0


async def test_token_limits_are_learned_and_met() -> None:
    """A token limit named only in the headers is reserved against: no 429 on tokens."""
    async with (
        FakeProvider(limit_tokens=2_000, window=1.0, latency=0.01) as fp,
        model_for(fp) as model,
    ):
        done = await run(model, 60, 16, max_tokens=32)
        learned = model.metrics()["learned_limits"]
    assert all(c.execution.error is None for c in done)
    assert fp.count_429 == 0
    assert learned["tokens"]["limit"] == 2_000


async def test_calls_made_before_the_first_answer_reserve_their_tokens() -> None:
    """Calls queued at the first-answer gate reserve their tokens, so once the answer names
    a token limit they are let through within it: no 429."""
    async with (
        FakeProvider(limit_tokens=1_000, window=1.0, latency=0.05, reply_text="word " * 60) as fp,
        model_for(fp) as model,
    ):
        done = await run(model, 24, 24, max_tokens=80)
    assert all(c.execution.error is None for c in done)
    assert fp.count_429 == 0


async def test_a_tightened_limit_is_followed_within_one_window() -> None:
    """The provider cuts its limit mid-run; after one window no request is refused."""
    async with (
        FakeProvider(limit_requests=40, window=1.0, latency=0.01) as fp,
        model_for(fp) as model,
    ):
        first = asyncio.ensure_future(run(model, 50, 8))
        await asyncio.sleep(0.3)
        fp.set_limits(limit_requests=10, window=1.0)
        await asyncio.sleep(1.0)  # one window
        refused_by_then = fp.count_429
        await first
        done = await run(model, 20, 8)
        learned = model.metrics()["learned_limits"]
    assert all(c.execution.error is None for c in done)
    assert fp.count_429 == refused_by_then
    assert learned["requests"]["limit"] == 10


async def test_without_headers_the_rate_follows_429s() -> None:
    """A provider that sends no headers is paced by its 429s: few are refused, none lost."""
    async with (
        FakeProvider(limit_requests=20, window=0.5, latency=0.01, limit_headers=False) as fp,
        model_for(fp) as model,
    ):
        done = await run(model, 200, 16, max_tokens=32)
        learned = model.metrics()["learned_limits"]
    assert all(c.execution.error is None for c in done)
    assert fp.count_429 <= 0.15 * len(fp.requests)
    assert learned["requests"]["source"] == "429s"


async def test_a_configured_limit_bounds_what_is_learned() -> None:
    """A configured limit below the provider's is the one applied, and shown as such."""
    async with (
        FakeProvider(limit_requests=1_000, window=1.0) as fp,
        model_for(fp, limit_requests=5, capacity_refresh_time=1.0) as model,
    ):
        await run(model, 10, 5)
        learned = model.metrics()["learned_limits"]
    assert learned["requests"] == {**learned["requests"], "limit": 5, "source": "configured"}
    assert fp.arrivals[-1] - fp.arrivals[0] >= 0.9  # 5 at once, then 5 more over 1 s


async def test_a_stream_teaches_the_limits_too() -> None:
    """The headers of a stream's answer shape the buckets as a call's do."""
    async with FakeProvider(limit_requests=30, window=60.0) as fp, model_for(fp) as model:
        async for _ in model.invoke_stream(model="m", messages=MESSAGES):
            pass
        learned = model.metrics()["learned_limits"]
    assert learned["requests"]["limit"] == 30


def test_adaptive_limits_false_is_kept_by_to_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turning learning off survives a round trip; a default model learns after one too."""
    monkeypatch.setenv("OPENAI_API_KEY", "k")  # a raw key is not saved: restored from the env
    off = iModel(provider="openai", api_key=SecretStr("k"), adaptive_limits=False)
    assert off.executor is None
    restored = iModel.from_dict(off.to_dict())
    assert restored.executor is None and restored.to_dict()["adaptive_limits"] is False
    learning = iModel.from_dict(
        iModel(provider="openai", api_key=SecretStr("k"), limit_requests=7).to_dict()
    )
    assert learning.to_dict()["adaptive_limits"] is True
    assert learning.executor is not None
    assert learning.metrics()["learned_limits"]["requests"]["limit"] == 7


@pytest.mark.parametrize(
    ("provider", "header"), [("openai", "x-request-id"), ("anthropic", "request-id")]
)
async def test_errors_carry_the_providers_request_id(provider: str, header: str) -> None:
    """A failed call's error gives the provider's request id, as the service sent it."""
    async with FakeProvider() as fp:
        fp.script(Reply(status=400))
        async with model_for(fp, provider) as model:
            with pytest.raises(errors.BadRequestError) as caught:
                await model.invoke(model="m", messages=MESSAGES, max_tokens=8)
    assert caught.value.request_id is not None
    assert caught.value.request_id == caught.value.headers[header]
    assert caught.value.request_id.startswith("req_")


def test_a_configured_limit_holds_for_blocking_calls_from_a_second_thread() -> None:
    """Blocking calls from one thread, then from another, share the configured limit: the
    second thread's calls wait for it instead of going without it."""
    with provider_in_thread() as fp:
        model = model_for(fp, limit_requests=2, capacity_refresh_time=60)
        for _ in range(2):
            model.invoke_sync(model="m", messages=MESSAGES, max_tokens=8)
        refused: list[BaseException] = []

        def call() -> None:
            try:
                model.invoke_sync(model="m", messages=MESSAGES, max_tokens=8, poll_timeout=0.3)
            except errors.TimeoutError as exc:
                refused.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        worker.join()
        model.close()
    assert len(refused) == 1
    assert len(fp.requests) == 2


def test_a_call_from_a_loop_running_beside_the_limits_one_warns() -> None:
    """A call from a second thread's loop while the first one runs goes without the limits,
    and says so with a warning."""
    release = threading.Event()

    async def hold(event: object, **kwargs: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            worker.start()  # while this loop runs the call
            await asyncio.to_thread(release.wait, 10)

    hooks = HookRegistry()
    hooks.register(HookPhase.PreInvocation, hold)
    caught: list[warnings.WarningMessage] = []

    def beside() -> None:
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                asyncio.run(model.invoke(model="m", messages=MESSAGES, max_tokens=8))
            caught.extend(seen)
        finally:
            release.set()

    with provider_in_thread() as fp:
        model = model_for(fp, hook_registry=hooks)
        worker = threading.Thread(target=beside)
        # Each thread runs its own loop (invoke_sync would put both calls on the model's one).
        asyncio.run(model.invoke(model="m", messages=MESSAGES, max_tokens=8))
        worker.join()
        model.close()
    assert any("two event loops" in str(w.message) for w in caught)
