"""A model with limits shared through Redis keeps them across to_dict / from_dict."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr
from tests.distributed.conftest import RedisServer

from lionpride.services import iModel


async def test_shared_limits_survive_serialization_without_the_url(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """to_dict keeps the shared-limit settings but not the Redis URL; from_dict needs it."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")  # the raw key is not saved: read on restore
    url = redis_server.url
    model = iModel(
        provider="openai",
        api_key=SecretStr("sk-k"),
        limit_requests=7,
        limit_tokens=900,
        capacity_refresh_time=3.0,
        redis_url=url,
        limit_key="team-a",
    )
    config = model.to_dict()
    text = json.dumps(config)
    assert "redis://" not in text and config["executor"] is None
    assert config["shared_limits"]["limit_key"] == "team-a"
    assert config["shared_limits"]["limit_requests"] == 7
    with pytest.raises(ValueError, match="redis_url"):
        iModel.from_dict(config)
    restored = iModel.from_dict(config, redis_url=url)
    assert restored.executor is not None
    assert restored.limits == model.limits
    await model.aclose()
    await restored.aclose()
