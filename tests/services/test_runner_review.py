"""Review of the runner: a call's end counted even when cancelled in its PostInvocation
hooks, and a Calling run once even when two callers run it at the same time."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import model_on

from lionpride import errors
from lionpride.services.types.hook import HookOptions, HookPhase, HookRegistry
from lionpride.testing import FakeProvider

MESSAGES = [{"role": "user", "content": "Hello!"}]


def _hanging_post_hook(entered: asyncio.Event) -> HookRegistry:
    """A registry whose PostInvocation hook signals ``entered``, then waits forever."""

    async def post(event: Any, **kw: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    return HookRegistry({HookPhase.PostInvocation: post})


async def test_a_call_cancelled_in_its_post_hooks_is_counted_once(
    fake_provider: FakeProvider,
) -> None:
    """A call cancelled while its PostInvocation hooks run still reaches the metrics, once,
    with the outcome it had, and the cancellation reaches the caller."""
    entered = asyncio.Event()
    model = model_on(fake_provider, "openai", hook_registry=_hanging_post_hook(entered))
    async with model:
        calling = await model.create_calling(
            model="m", messages=MESSAGES, hooks=HookOptions(post_timeout=None)
        )
        task = asyncio.create_task(model.invoke(calling))
        await entered.wait()
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled()
    assert calling.response.data
    metrics = model.metrics()
    assert metrics["calls"] == 1 and metrics["successes"] == 1


async def test_a_stream_cancelled_in_its_post_hooks_is_counted_once(
    fake_provider: FakeProvider,
) -> None:
    """A stream cancelled while its PostInvocation hooks run still reaches the metrics,
    once, and the cancellation reaches the caller."""
    entered = asyncio.Event()
    model = model_on(fake_provider, "openai", hook_registry=_hanging_post_hook(entered))

    async def consume() -> None:
        async for _ in model.invoke_stream(
            model="m", messages=MESSAGES, hooks=HookOptions(post_timeout=None)
        ):
            pass

    async with model:
        task = asyncio.create_task(consume())
        await entered.wait()
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled()
    assert model.metrics()["calls"] == 1


async def test_a_calling_run_twice_at_once_is_sent_once(fake_provider: FakeProvider) -> None:
    """Two callers running one Calling while it waits for its grant: one runs it, the other
    is refused as for a Calling that ran; the request goes out once and is counted once."""
    model = model_on(fake_provider, "openai", limit_requests=100, concurrency_limit=1)
    executor = model.executor
    assert executor is not None
    async with model:
        # A stream holds the only concurrency slot, so the Calling waits for its grant.
        holder = model.invoke_stream(model="m", messages=MESSAGES)
        await anext(holder)  # type: ignore[arg-type]
        calling = await model.create_calling(model="m", messages=MESSAGES)
        first = asyncio.create_task(model.invoke(calling))
        second = asyncio.create_task(model.invoke(calling))
        await asyncio.sleep(0)  # both tasks start: each waits for the grant or is refused
        async for _ in holder:
            pass
        results = await asyncio.gather(first, second, return_exceptions=True)
    refused = [r for r in results if isinstance(r, errors.ValidationError)]
    assert len(refused) == 1 and "already ran" in str(refused[0])
    assert calling.response.data
    assert len(fake_provider.requests) == 2  # the stream and the call, once
    assert model.metrics()["calls"] == 2
    assert executor.stats()["completed"] == 2
