"""API keys: one rule, applied at one moment, that never sends a name or shows a key."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.providers import OAIChatEndpoint
from lionpride.testing import FakeProvider

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("name", ["openai_api_key", "Team_Key_2", "_PRIVATE"])
def test_a_name_in_any_case_is_a_variable_never_a_key(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A string shaped like a variable name, in any case, is read from the environment:
    unset, it is a ConfigurationError naming it; set, its value is the credential."""
    monkeypatch.delenv(name, raising=False)
    with pytest.raises(errors.ConfigurationError, match=f"{name} is not set"):
        OAIChatEndpoint(api_key=name)
    monkeypatch.setenv(name, "sk-from-env")
    endpoint = OAIChatEndpoint(api_key=name)
    assert endpoint.auth_headers()["Authorization"] == "Bearer sk-from-env"
    assert endpoint.config.api_key == name and endpoint.config.api_key_is_env


async def test_a_lower_case_name_is_never_sent_as_the_bearer_token(
    monkeypatch: pytest.MonkeyPatch, fake_provider: FakeProvider
) -> None:
    """``api_key="openai_api_key"`` sends the variable's value, not the name."""
    monkeypatch.setenv("openai_api_key", "sk-lower")
    base_url = fake_provider.base_url("openai")
    async with iModel(provider="openai", base_url=base_url, api_key="openai_api_key") as model:
        await model.invoke(model="gpt-4o-mini", messages=MESSAGES)
    assert fake_provider.requests[0].headers["authorization"] == "Bearer sk-lower"


def test_given_and_defaulted_names_fail_alike_when_the_model_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unset variable fails the same way, at construction, whether it was named or is the
    provider's default; a model with a key needs neither."""
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    caught = []
    for kwargs in ({}, {"api_key": "GROQ_API_KEY"}):
        with pytest.raises(errors.ConfigurationError) as error:
            iModel(provider="groq", **kwargs)
        caught.append(str(error.value))
    assert caught[0] == caught[1] and "GROQ_API_KEY is not set" in caught[0]
    assert iModel(provider="groq", api_key=SecretStr("gsk-raw")).backend.config.api_key is None


def test_a_key_pasted_where_a_name_goes_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key with no dashes is shaped like a name; unset as a variable, the error says so
    without showing it."""
    pasted = "AIzaSyD4kFakeKeyWithNoDashes0123456789"
    monkeypatch.delenv(pasted, raising=False)
    with pytest.raises(errors.ConfigurationError, match="SecretStr") as error:
        iModel(provider="gemini", api_key=pasted)
    assert pasted not in str(error.value) and pasted[:12] not in repr(error.value)


def test_a_raw_key_is_never_shown_in_a_configuration_error() -> None:
    """Anything not shaped like a name is the key: a bad setting next to it raises a
    ConfigurationError whose text (and cause) never holds it."""
    raw = "sk-proj-raw-key-0123456789"
    for bad in ({"timeout": -1}, {"connect_timeout": 0}, {"params": {"x": "1"}}):
        with pytest.raises(errors.ConfigurationError) as error:
            iModel(provider="openai", api_key=raw, **bad)
        assert raw not in str(error.value) and raw not in str(error.value.__cause__)


async def test_a_self_hosted_server_without_a_key_is_called_without_one(
    monkeypatch: pytest.MonkeyPatch, fake_provider: FakeProvider
) -> None:
    """A self-hosted OpenAI-compatible name (ollama) with no key given and none in its
    variable sends no Authorization header; with the variable set it sends that key."""
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    base_url = fake_provider.base_url("openai")
    async with iModel(provider="ollama", base_url=base_url) as model:
        await model.invoke(model="llama3.2", messages=MESSAGES)
    assert "authorization" not in fake_provider.requests[-1].headers
    monkeypatch.setenv("OLLAMA_API_KEY", "local-secret")
    async with iModel(provider="ollama", base_url=base_url) as model:
        await model.invoke(model="llama3.2", messages=MESSAGES)
    assert fake_provider.requests[-1].headers["authorization"] == "Bearer local-secret"


def test_a_hosted_provider_still_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only self-hosted names go without a key: groq with GROQ_API_KEY unset is refused."""
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(errors.ConfigurationError, match="GROQ_API_KEY is not set"):
        iModel(provider="groq")


async def test_a_self_hosted_model_rebuilt_reads_its_variable_again(
    monkeypatch: pytest.MonkeyPatch, fake_provider: FakeProvider
) -> None:
    """Whether a self-hosted server gets a key is decided when the model is rebuilt from
    to_dict, as the variable is read then: a key exported since is sent, and a key gone
    since leaves the model keyless instead of unbuildable."""
    base_url = fake_provider.base_url("openai")
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    keyless = iModel(provider="ollama", base_url=base_url).to_dict()
    monkeypatch.setenv("OLLAMA_API_KEY", "exported-later")
    keyed = iModel(provider="ollama", base_url=base_url).to_dict()
    async with iModel.from_dict(keyless) as model:
        await model.invoke(model="llama3.2", messages=MESSAGES)
    assert fake_provider.requests[-1].headers["authorization"] == "Bearer exported-later"
    monkeypatch.delenv("OLLAMA_API_KEY")
    async with iModel.from_dict(keyed) as model:
        await model.invoke(model="llama3.2", messages=MESSAGES)
    assert "authorization" not in fake_provider.requests[-1].headers
