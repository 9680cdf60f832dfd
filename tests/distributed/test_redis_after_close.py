"""A call that outlives its model's close still settles in Redis, and leaves no connection."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr
from tests.distributed.conftest import RedisServer

from lionpride.services import iModel
from lionpride.services.distributed import RedisCapacity
from lionpride.testing import FakeProvider, Reply

M = [{"role": "user", "content": "Say something short."}]


async def test_a_settle_after_aclose_reaches_redis_and_closes_its_connection(
    redis_server: RedisServer, fake_provider: FakeProvider
) -> None:
    fake_provider.script(Reply(delay=0.2))
    model = iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        limit_requests=10,
        limit_tokens=10_000,
        capacity_refresh_time=3600.0,
        redis_url=redis_server.url,
        limit_key="settle-after-close",
    )
    assert model.executor is not None
    backend = model.executor.limiter.backend
    assert isinstance(backend, RedisCapacity)
    call = asyncio.create_task(model.invoke(model="m", messages=M, max_tokens=1000))
    while not fake_provider.requests:  # the call is on the wire
        await asyncio.sleep(0.01)
    await model.aclose()
    await call
    await backend.flush()
    assert backend.link._client is None  # the refund's connection was closed again
    # The refund landed: the reservation's unused part is back in the shared bucket.
    check = RedisCapacity(
        redis_server.url, "settle-after-close", requests=None, tokens=backend._tokens
    )
    assert await check.take(0, 0) == 0
    assert check.levels()["tokens"] > 10_000 - 1000
    await check.aclose()
