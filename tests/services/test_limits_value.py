"""The Limits value: validation, serialization, the flat-keyword shorthand, keyword-only iModel."""

from __future__ import annotations

import dataclasses
import json

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.services import Limits, RateLimitedExecutor, iModel


@pytest.fixture(autouse=True)
def provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restored model reads the provider's variable (raw keys are never saved)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("limit_requests", 0),
        ("limit_tokens", -5),
        ("limit_requests", 2.5),
        ("concurrency_limit", True),
        ("queue_capacity", 0),
        ("capacity_refresh_time", 0),
        ("capacity_refresh_time", float("inf")),
        ("adaptive_limits", "yes"),
        ("on_redis_error", "ignore"),
        ("redis_url", "localhost:6379"),
    ],
)
def test_a_bad_value_is_named(field: str, value: object) -> None:
    """Each out-of-range or mistyped field raises a ConfigurationError naming it and its value."""
    with pytest.raises(errors.ConfigurationError) as caught:
        Limits(**{field: value})  # type: ignore[arg-type]
    assert field in str(caught.value) and repr(value) in str(caught.value)
    with pytest.raises(errors.ConfigurationError, match=field):
        iModel(provider="openai", api_key=SecretStr("k"), **{field: value})


def test_limit_key_needs_a_redis_url() -> None:
    """A limit key names limits shared in Redis: without a URL it is refused."""
    with pytest.raises(errors.ConfigurationError, match="redis_url"):
        Limits(limit_key="team")


def test_the_value_is_frozen() -> None:
    """A Limits value cannot be changed after it is made."""
    limits = Limits(limit_requests=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.limit_requests = 6  # type: ignore[misc]


def test_to_dict_round_trips_without_the_redis_url() -> None:
    """to_dict is JSON-safe and drops the URL (it may hold a password); from_dict takes it again."""
    limits = Limits(
        limit_requests=5,
        limit_tokens=900,
        capacity_refresh_time=3.0,
        concurrency_limit=2,
        queue_capacity=7,
        adaptive_limits=False,
        redis_url="redis://:secret@host:6379/0",
        limit_key="team",
        on_redis_error="raise",
    )
    data = json.loads(json.dumps(limits.to_dict()))
    assert "redis_url" not in data and "secret" not in json.dumps(data)
    assert Limits.from_dict(data, redis_url="redis://:secret@host:6379/0") == limits
    assert "secret" not in repr(limits)
    with pytest.raises(errors.ConfigurationError, match="limit_requets"):
        Limits.from_dict({"limit_requets": 5})


def test_the_flat_keywords_build_the_same_value() -> None:
    """iModel(limit_requests=..., ...) and iModel(limits=Limits(...)) give equal limits and
    equal executors."""
    settings = {
        "limit_requests": 50,
        "limit_tokens": 100_000,
        "capacity_refresh_time": 30.0,
        "concurrency_limit": 4,
        "queue_capacity": 20,
        "adaptive_limits": False,
    }
    flat = iModel(provider="openai", api_key=SecretStr("k"), **settings)
    valued = iModel(provider="openai", api_key=SecretStr("k"), limits=Limits(**settings))
    assert flat.limits == valued.limits == Limits(**settings)
    assert flat.executor is not None and valued.executor is not None
    assert flat.executor.to_dict() == valued.executor.to_dict()
    assert flat.executor.to_dict()["request_bucket"] == {"capacity": 50, "refill_rate": 50 / 30}


def test_limits_and_flat_keywords_together_raise() -> None:
    """Giving limits= and a flat limit keyword is refused, naming the keyword."""
    with pytest.raises(errors.ConfigurationError, match="limit_requests"):
        iModel(
            provider="openai",
            api_key=SecretStr("k"),
            limits=Limits(limit_requests=5),
            limit_requests=5,
        )


async def test_a_model_round_trips_its_limits() -> None:
    """to_dict / from_dict keep the model's limits: the restored model has the same value,
    and closes the executor it built from them."""
    limits = Limits(
        limit_requests=5,
        limit_tokens=1_000,
        capacity_refresh_time=10.0,
        concurrency_limit=3,
        queue_capacity=7,
        adaptive_limits=False,
    )
    model = iModel(provider="openai", api_key=SecretStr("k"), limits=limits)
    restored = iModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert restored.limits == limits
    assert restored.executor is not None and model.executor is not None
    assert restored.executor.to_dict() == model.executor.to_dict()
    await restored.aclose()
    with pytest.raises(errors.ExecutionError):
        await restored.executor.execute(_nothing)


async def test_an_executor_passed_in_comes_back_as_one() -> None:
    """An executor of the caller's (named, two windows) is restored as it was, and the
    restored model, which made it, closes it."""
    executor = RateLimitedExecutor.from_limits(
        limit_requests=3, limit_tokens=None, capacity_refresh_time=60.0, name="team"
    )
    model = iModel(provider="openai", api_key=SecretStr("k"), executor=executor)
    restored = iModel.from_dict(model.to_dict())
    assert restored.executor is not None and restored.executor is not executor
    assert restored.executor.to_dict() == executor.to_dict()
    await restored.aclose()
    with pytest.raises(errors.ExecutionError):
        await restored.executor.execute(_nothing)
    await executor.aclose()


async def _nothing() -> None:
    return None


def test_limit_key_with_an_executor_passed_in_raises() -> None:
    """A limit key names limits to share, but an executor passed in brings its own."""
    executor = RateLimitedExecutor.from_limits(limit_requests=3, limit_tokens=None)
    with pytest.raises(errors.ConfigurationError, match="limit_key"):
        iModel(
            provider="openai",
            api_key=SecretStr("k"),
            executor=executor,
            redis_url="redis://127.0.0.1:1/0",
            limit_key="team",
        )


def test_imodel_takes_keywords_only() -> None:
    """iModel's configuration is keyword-only: a positional argument is a TypeError."""
    with pytest.raises(TypeError):
        iModel("openai")  # type: ignore[misc]
    assert iModel(provider="openai", api_key=SecretStr("k")).limits == Limits()
