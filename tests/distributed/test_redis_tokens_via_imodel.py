"""Token limits shared in Redis are charged by iModel calls, as local ones are."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from tests.distributed.conftest import RedisServer

from lionpride.services import iModel
from lionpride.services.distributed import RedisCapacity
from lionpride.testing import FakeProvider

MESSAGES = [{"role": "user", "content": "Hello there."}]


async def test_a_call_reserves_and_settles_tokens_in_redis(
    redis_server: RedisServer, fake_provider: FakeProvider
) -> None:
    model = iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        limit_requests=50,
        limit_tokens=10_000,
        capacity_refresh_time=3600.0,
        redis_url=redis_server.url,
        limit_key="tokens-via-imodel",
    )
    try:
        calling = await model.create_calling(model="m", messages=MESSAGES, max_tokens=500)
        assert calling.reserved_tokens >= 500  # the output budget, plus the prompt estimate
        await model.invoke(calling)
        usage = calling.usage
        assert usage is not None and usage.total_tokens > 0
        assert model.executor is not None
        backend = model.executor.limiter.backend
        assert isinstance(backend, RedisCapacity)
        await backend.flush()
        assert await backend.take(0, 0) == 0  # answered with the current levels
        levels = backend.levels()
        # Settled to the real usage: the reservation's surplus came back, the usage did not.
        assert levels["tokens"] == pytest.approx(10_000 - usage.total_tokens, abs=0.5)
        assert levels["requests"] == pytest.approx(49, abs=0.5)
    finally:
        await model.aclose()
