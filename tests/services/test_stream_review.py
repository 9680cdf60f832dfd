"""Streams found wanting in review."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.core.event import EventStatus
from lionpride.services import iModel
from lionpride.services.types.hook import HookPhase, HookRegistry
from lionpride.services.types.response import NormalizedResponse
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "hi"}]


async def test_stopping_at_the_final_chunk_leaves_a_completed_call(
    fake_provider: FakeProvider,
) -> None:
    """A caller that breaks out on ``chunk.is_final`` (and never resumes the generator) has
    received everything: the call is completed, post hooks ran, metrics count a success."""
    seen: list[EventStatus] = []

    async def on_post(event: object, **kw: object) -> None:
        seen.append(event.execution.status)  # type: ignore[attr-defined]

    hooks = HookRegistry({HookPhase.PostInvocation: on_post})
    async with iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        hook_registry=hooks,
        limit_requests=10,
    ) as model:
        calling = await model.create_calling(streaming=True, model="m", messages=MESSAGES)
        stream = model.invoke_stream(calling)
        async for chunk in stream:
            if chunk.is_final:
                response = chunk.response
                break
        assert response is not None and response.finish_reason == "stop"
        assert calling.execution.status is EventStatus.COMPLETED
        assert seen == [EventStatus.COMPLETED]
        metrics = model.metrics()
        assert metrics["successes"] == 1 and metrics["failures"] == 0
        assert model.executor is not None and model.executor.stats()["completed"] == 1
        await stream.aclose()  # nothing left to record
        assert calling.execution.status is EventStatus.COMPLETED


async def test_aclose_cuts_a_running_stream_at_once() -> None:
    """A stream being read when its model closes fails with ExecutionError right away,
    not at its idle timeout."""
    async with FakeProvider(stream_chunks=20) as fp:
        fp.script(Reply(stall_after=3))
        model = iModel(provider="openai", base_url=fp.base_url("openai"), api_key=SecretStr("k"))
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in model.invoke_stream(model="m", messages=MESSAGES, idle_timeout=30):
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        await model.aclose()
        async with asyncio.timeout(5):  # far below the idle timeout
            with pytest.raises(errors.ExecutionError, match="closed"):
                await task


def _with_error_hook(fake_provider: FakeProvider, hook: Any) -> iModel:
    """A model without retries whose ErrorHandling hook is ``hook``."""
    return iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        retry_config=None,
        hook_registry=HookRegistry({HookPhase.ErrorHandling: hook}),
    )


async def test_a_failed_stream_runs_error_handling_hooks_which_may_answer(
    fake_provider: FakeProvider,
) -> None:
    """As for invoke: ErrorHandling hooks see a failed stream's error, and a response they
    return ends the stream as its final chunk."""
    seen: list[BaseException] = []

    def recover(event: object, **kw: object) -> NormalizedResponse:
        seen.append(kw["error"])  # type: ignore[arg-type]
        return NormalizedResponse(data="from the hook")

    fake_provider.script(Reply(status=400))
    async with _with_error_hook(fake_provider, recover) as model:
        calling = await model.create_calling(streaming=True, model="m", messages=MESSAGES)
        chunks = [chunk async for chunk in model.invoke_stream(calling)]
    assert len(seen) == 1 and isinstance(seen[0], errors.BadRequestError)
    assert len(chunks) == 1 and chunks[0].is_final and chunks[0].response is not None
    assert chunks[0].response.data == "from the hook"
    assert calling.execution.status is EventStatus.COMPLETED


async def test_a_failed_stream_without_an_answer_still_fails(fake_provider: FakeProvider) -> None:
    seen: list[BaseException] = []
    fake_provider.script(Reply(status=400))
    async with _with_error_hook(
        fake_provider, lambda event, **kw: seen.append(kw["error"])
    ) as model:
        with pytest.raises(errors.BadRequestError):
            async for _ in model.invoke_stream(model="m", messages=MESSAGES):
                pass
    assert len(seen) == 1
