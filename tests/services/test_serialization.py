"""iModel.to_dict / from_dict: JSON-safe configuration, allow-listed restore."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.providers import AnthropicMessagesEndpoint
from lionpride.services.providers.anthropic_messages import CreateMessageRequest
from lionpride.services.types.hook import HookRegistry
from lionpride.services.types.tool import Tool
from lionpride.services.utilities.resilience import CircuitBreaker, RetryConfig
from lionpride.testing import FakeProvider


def _add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@pytest.fixture
def env_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """An API key held in an environment variable."""
    monkeypatch.setenv("LP_TEST_ANTHROPIC_KEY", "sk-ant-test")
    return "LP_TEST_ANTHROPIC_KEY"


def _full_model(env_key: str) -> iModel:
    backend = AnthropicMessagesEndpoint(
        api_key=env_key,
        tags=["llm", "smart"],
        circuit_breaker=CircuitBreaker(failure_threshold=5, recovery_time=30.0),
        retry_config=RetryConfig(max_retries=3, initial_delay=1.0),
    )
    return iModel(
        backend=backend,
        limit_requests=50,
        limit_tokens=100_000,
        provider_metadata={"session_id": "s1"},
        hook_registry=HookRegistry(),
    )


def test_to_dict_is_json_safe_and_round_trips(env_key: str) -> None:
    """to_dict survives json.dumps and from_dict rebuilds the same configuration."""
    model = _full_model(env_key)
    data = json.loads(json.dumps(model.to_dict()))
    assert "id" not in data and "created_at" not in data
    assert "id" not in data["backend"] and "hook_registry" not in data
    assert data["backend"]["config"]["request_options"].endswith(
        "anthropic_messages.CreateMessageRequest"
    )
    restored = iModel.from_dict(data)
    assert restored.id != model.id
    assert isinstance(restored.backend, AnthropicMessagesEndpoint)
    assert restored.backend.config.request_options is CreateMessageRequest
    assert restored.tags == {"llm", "smart"}
    assert restored.backend.circuit_breaker is not None
    assert restored.backend.circuit_breaker.failure_threshold == 5
    assert restored.backend.retry_config == model.backend.retry_config  # type: ignore[attr-defined]
    assert restored.provider_metadata == {"session_id": "s1"}
    assert restored.executor is not None
    assert restored.executor.to_dict() == model.executor.to_dict()  # type: ignore[union-attr]
    assert restored.hook_registry is None
    assert restored.to_dict() == data


def test_raw_credentials_are_never_dumped() -> None:
    """A SecretStr key is not in the dump; the restored model has no credential."""
    model = iModel(provider="anthropic", api_key=SecretStr("raw_credential"))
    text = json.dumps(model.to_dict())
    assert "raw_credential" not in text


def test_tool_backend_raises_not_implemented() -> None:
    """A Tool-backed iModel refuses to serialize."""
    model = iModel(backend=Tool(func_callable=_add))
    with pytest.raises(NotImplementedError):
        model.to_dict()


def test_missing_env_var_names_it(env_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Restoring without the key's environment variable is a ValueError naming it."""
    data = _full_model(env_key).to_dict()
    monkeypatch.delenv(env_key)
    with pytest.raises(ValueError, match=env_key):
        iModel.from_dict(data)


async def test_restored_limits_start_full(
    env_key: str, monkeypatch: pytest.MonkeyPatch, fake_provider: FakeProvider
) -> None:
    """A restored model's request bucket is full even if the original was drained."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_provider.base_url("openai"))
    model = iModel(provider="openai", api_key="OPENAI_API_KEY", limit_requests=3)
    async with model:
        for _ in range(3):
            await model.invoke(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    drained = model.executor.limiter.request_bucket  # type: ignore[union-attr]
    assert drained is not None and not drained.try_acquire(3)
    restored = iModel.from_dict(model.to_dict())
    bucket = restored.executor.limiter.request_bucket  # type: ignore[union-attr]
    assert bucket is not None and bucket.try_acquire(3)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("backend"), "'backend' must be a dict"),
        (lambda d: d["backend"]["metadata"].pop("lion_class"), "lion_class is missing"),
        (
            lambda d: d["backend"]["metadata"].update(lion_class="os.system"),
            "unknown lion_class",
        ),
        (
            lambda d: d["backend"]["metadata"].update(
                lion_class="lionpride.services.imodel.iModel"
            ),
            "not a subclass of Endpoint",
        ),
        (
            lambda d: d["backend"]["config"].update(request_options="os.path.join"),
            "unknown request_options",
        ),
        (lambda d: d.update(executor=[1]), "'executor' must be a dict"),
        (lambda d: d.update(surprise=1), "unknown key"),
        (lambda d: d["backend"]["config"].update(timeout=-1), "timeout"),
    ],
)
def test_malformed_dicts_raise_value_error(env_key: str, mutate: Any, message: str) -> None:
    """Each malformed dict is a ValueError naming the problem."""
    data = copy.deepcopy(_full_model(env_key).to_dict())
    mutate(data)
    with pytest.raises(ValueError, match=message):
        iModel.from_dict(data)


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("api_key 'HOME'", {"api_key": "HOME", "api_key_is_env": True}),
        ("api_key_env 'PATH'", {"api_key": None, "api_key_env": "PATH"}),
    ],
)
def test_a_restored_dict_never_takes_a_system_variable_as_key(
    env_key: str, field: str, change: dict[str, Any]
) -> None:
    """A dict naming HOME or PATH as the key's variable is refused, naming field and value."""
    data = _full_model(env_key).to_dict()
    data["backend"]["config"].update(change)
    with pytest.raises(ValueError, match=field):
        iModel.from_dict(data)


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_env_var_on_load_is_named(
    env_key: str, blank: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key variable that is set but blank when restoring is a ValueError naming it."""
    data = _full_model(env_key).to_dict()
    monkeypatch.setenv(env_key, blank)
    with pytest.raises(ValueError, match=env_key):
        iModel.from_dict(data)


async def test_a_restored_raw_key_model_has_no_credential_until_one_is_supplied(
    monkeypatch: pytest.MonkeyPatch, fake_provider: FakeProvider
) -> None:
    """The raw key is not restored: restoring names the provider's variable and sends
    nothing; once the variable is set, calls send its value, never the old raw key."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.base_url("anthropic"))
    model = iModel(provider="anthropic", api_key=SecretStr("sk-raw-original"))
    config = model.to_dict()
    with pytest.raises(errors.ConfigurationError, match="ANTHROPIC_API_KEY"):
        iModel.from_dict(config)
    assert fake_provider.requests == []
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    messages = [{"role": "user", "content": "Hi"}]
    async with iModel.from_dict(config) as restored:
        calling = await restored.invoke(model="claude-sonnet-4-5", messages=messages)
    assert calling.response is not None
    assert [r.headers["x-api-key"] for r in fake_provider.requests] == ["sk-from-env"]
