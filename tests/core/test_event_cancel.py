"""A cancelled call is cancelled, not timed out."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr

from lionpride.core.event import EventStatus
from lionpride.services import iModel
from lionpride.testing import FakeProvider


async def test_call_cancelled_in_flight_records_no_timeout_error() -> None:
    """Cancelling a call on the wire leaves it CANCELLED with no error, counted as cancelled."""
    async with FakeProvider(latency=60) as fp:
        model = iModel(provider="openai", base_url=fp.base_url("openai"), api_key=SecretStr("k"))
        calling = await model.create_calling(model="m", messages=[{"role": "user", "content": "x"}])
        task = asyncio.create_task(model.invoke(calling=calling))
        async with asyncio.timeout(10):
            while not fp.requests:  # the call is on the wire
                await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await model.aclose()
    assert task.cancelled()
    assert calling.execution.status is EventStatus.CANCELLED
    assert calling.execution.error is None
    assert model.metrics()["failures_by_type"] == {"cancelled": 1}
