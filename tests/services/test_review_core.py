"""Review regressions: iModel failure/cancellation paths, stream closing, from_dict input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lionpride import errors
from lionpride.core.event import EventStatus
from lionpride.services import iModel
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.backend import ServiceBackend, ServiceConfig
from lionpride.services.types.response import NormalizedResponse


class _Backend(ServiceBackend):
    """A backend that records whether its stream was closed and can block on demand."""

    closed: list[str] = []
    gate: Any = None

    async def call(self, request: dict[str, Any], **_: Any) -> NormalizedResponse:
        if self.gate is not None:
            await self.gate.wait()
        return NormalizedResponse(data="ok")

    async def stream(self, request: dict[str, Any], **_: Any) -> AsyncIterator[StreamChunk]:
        try:
            for i in range(3):
                yield StreamChunk(index=i, content=str(i))
            yield StreamChunk(index=3, is_final=True, response=NormalizedResponse(data="012"))
        finally:
            self.closed.append("closed")


def _backend(**kw: Any) -> _Backend:
    return _Backend(config=ServiceConfig(provider="test", name="test"), closed=[], **kw)


async def test_leaving_a_stream_early_closes_the_backend_stream_at_once() -> None:
    """Closing invoke_stream after one chunk closes the backend's stream before returning."""
    backend = _backend()
    model = iModel(backend=backend)
    stream = model.invoke_stream()
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert backend.closed == ["closed"]


async def test_invoke_on_closed_executor_records_the_failed_call() -> None:
    """An executor refusal is the call's failure: recorded, counted, and on e.calling."""
    executor = RateLimitedExecutor.from_limits(limit_requests=10, limit_tokens=None)
    model = iModel(backend=_backend(), executor=executor)
    await executor.aclose()
    with pytest.raises(errors.ExecutionError) as info:
        await model.invoke()
    calling = info.value.calling  # type: ignore[attr-defined]
    assert calling.execution.status is EventStatus.FAILED
    assert calling.execution.error is info.value
    assert model.metrics()["calls"] == 1
    failed = await model.invoke(raise_on_error=False)
    assert failed.execution.status is EventStatus.FAILED
    assert isinstance(failed.execution.error, errors.ExecutionError)
    assert model.metrics()["calls"] == 2


async def test_invoke_stream_refused_by_the_limiter_records_the_failed_call() -> None:
    """A stream the limiter refuses (not a timeout) raises with the Calling, counted once."""
    executor = RateLimitedExecutor.from_limits(limit_requests=10, limit_tokens=None)
    model = iModel(backend=_backend(), executor=executor)
    async with model:
        with pytest.raises(ValueError) as info:
            async for _ in model.invoke_stream(poll_timeout=0):
                pass
    calling = info.value.calling  # type: ignore[attr-defined]
    assert calling.execution.status is EventStatus.FAILED
    assert calling.execution.error is info.value
    assert model.metrics()["calls"] == 1


async def test_cancelled_invoke_is_recorded_once() -> None:
    """Cancelling a running invoke marks the Calling cancelled and counts it in metrics."""
    backend = _backend(gate=asyncio.Event())
    model = iModel(backend=backend)
    calling = await model.create_calling()
    task = asyncio.create_task(model.invoke(calling))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calling.execution.status is EventStatus.CANCELLED
    assert model.metrics()["calls"] == 1


async def test_cancelled_stream_wait_for_capacity_is_recorded_once() -> None:
    """A stream cancelled while waiting for capacity is marked cancelled and counted once."""
    executor = RateLimitedExecutor.from_limits(
        limit_requests=1, limit_tokens=None, capacity_refresh_time=60.0
    )
    model = iModel(backend=_backend(), executor=executor)
    async with model:
        await model.invoke()
        calling = await model.create_calling(streaming=True)

        async def consume() -> None:
            async for _ in model.invoke_stream(calling):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert calling.execution.status is EventStatus.CANCELLED
        assert model.metrics()["calls"] == 2


@pytest.mark.parametrize("metadata", [1, "ab", ["x"]])
def test_from_dict_rejects_non_dict_metadata(metadata: Any) -> None:
    """A non-dict ``metadata`` is a ValueError that names the key, not a TypeError."""
    data = {
        "backend": {
            "metadata": {"lion_class": "lionpride.services.providers.oai_chat.OAIChatEndpoint"},
            "config": {
                "provider": "openai",
                "name": "openai_chat",
                "endpoint": "chat/completions",
                "base_url": "http://127.0.0.1:1",
                "auth_type": "none",
            },
        },
        "metadata": metadata,
    }
    with pytest.raises(ValueError, match="'metadata' must be a dict"):
        iModel.from_dict(data)
