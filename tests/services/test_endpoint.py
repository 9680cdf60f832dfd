"""Endpoint configuration, API-key rules, validation and the HTTP attempt, against FakeProvider."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.providers import (
    AnthropicMessagesEndpoint,
    GeminiEndpoint,
    OAIChatEndpoint,
    match_endpoint,
)
from lionpride.services.types.endpoint import EndpointConfig
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Hello there"}]


def test_env_var_name_resolves_and_serializes_as_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """An env-var name resolves to its value and only the name is serialized."""
    monkeypatch.setenv("MY_OPENAI_KEY", "sk-secret-value")
    ep = OAIChatEndpoint(api_key="MY_OPENAI_KEY")
    assert ep.config.api_key == "MY_OPENAI_KEY" and ep.config.api_key_is_env
    assert ep.auth_headers()["Authorization"] == "Bearer sk-secret-value"
    assert "sk-secret-value" not in json.dumps(ep.model_dump(mode="json"))
    assert "sk-secret-value" not in repr(ep)


def test_unset_env_var_name_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that looks like an env var but is unset raises, naming the variable."""
    monkeypatch.delenv("NOT_SET_ANYWHERE_KEY", raising=False)
    with pytest.raises(ValueError, match="NOT_SET_ANYWHERE_KEY"):
        OAIChatEndpoint(api_key="NOT_SET_ANYWHERE_KEY")


@pytest.mark.parametrize("bad", ["HOME", "PATH", "   "])
def test_system_or_blank_key_rejected(bad: str) -> None:
    """System variables and blank strings are never taken as keys."""
    with pytest.raises(ValueError):
        OAIChatEndpoint(api_key=bad)


def test_raw_credentials_are_never_serialized() -> None:
    """SecretStr and raw strings are kept privately; the dump has api_key None."""
    for key in (SecretStr("sk-raw-1"), "sk-raw-2"):
        ep = AnthropicMessagesEndpoint(api_key=key)
        dumped = json.dumps(ep.model_dump(mode="json"))
        assert ep.config.api_key is None
        assert "sk-raw" not in dumped and "sk-raw" not in repr(ep) and "sk-raw" not in str(ep)
        assert ep.auth_headers()["x-api-key"].startswith("sk-raw")


async def test_missing_default_key_fails_at_construction_naming_variable(
    monkeypatch: pytest.MonkeyPatch, fake_provider: FakeProvider
) -> None:
    """Without any key, making the endpoint raises ConfigurationError naming GEMINI_API_KEY,
    as naming the unset variable does: one moment for both."""
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(errors.ConfigurationError, match="GEMINI_API_KEY"):
        GeminiEndpoint(base_url=fake_provider.base_url("gemini"))
    with pytest.raises(errors.ConfigurationError, match="GEMINI_API_KEY"):
        GeminiEndpoint(base_url=fake_provider.base_url("gemini"), api_key="GEMINI_API_KEY")
    assert fake_provider.requests == []


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """<PROVIDER>_BASE_URL sets the base URL; an explicit base_url wins."""
    monkeypatch.setenv("GROQ_BASE_URL", "http://127.0.0.1:9/groq")
    assert OAIChatEndpoint(provider="groq", api_key=SecretStr("k")).config.base_url.endswith(
        "/groq"
    )
    explicit = OAIChatEndpoint(provider="groq", api_key=SecretStr("k"), base_url="http://x/v1")
    assert explicit.config.base_url == "http://x/v1"


def test_match_endpoint_rules() -> None:
    """Known providers map to their classes; unknown ones need base_url; bad endpoints fail."""
    key = SecretStr("k")
    assert isinstance(match_endpoint("anthropic", api_key=key), AnthropicMessagesEndpoint)
    assert isinstance(match_endpoint("gemini", api_key=key), GeminiEndpoint)
    groq = match_endpoint("groq", api_key=key)
    assert (groq.name, groq.provider, groq.tags) == ("groq_chat", "groq", {"llm", "groq"})
    with pytest.warns(UserWarning, match="my-server"):
        mine = match_endpoint("my-server", base_url="http://127.0.0.1:8000/v1", api_key=key)
    assert (mine.name, mine.provider) == ("my-server_chat", "my-server")
    with pytest.raises(errors.ConfigurationError, match=r"anthropic, .*gemini, groq"):
        match_endpoint("nosuch", api_key=key)
    with pytest.raises(errors.ConfigurationError, match="audio/speech"):
        match_endpoint("openai", "audio/speech", api_key=key)


def test_unknown_parameter_is_named_with_valid_choices() -> None:
    """A typo in a request parameter raises ValueError naming it and listing valid ones."""
    ep = OAIChatEndpoint(api_key=SecretStr("k"))
    with pytest.raises(ValueError, match=r"'temprature'.*valid: .*temperature"):
        ep.create_payload({"model": "m", "messages": MESSAGES, "temprature": 0.3})
    with pytest.raises(ValueError, match="role"):
        ep.create_payload({"model": "m", "messages": [{"role": "robot", "content": "x"}]})


def test_anthropic_defaults_max_tokens_and_accepts_rich_blocks() -> None:
    """max_tokens defaults to 4096; thinking, tool_use/tool_result and documents validate."""
    ep = AnthropicMessagesEndpoint(api_key=SecretStr("k"))
    payload = ep.create_payload(
        {
            "model": "claude-sonnet-4-5",
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [
                {"role": "user", "content": [{"type": "document", "source": {}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
            ],
        }
    )
    assert payload["max_tokens"] == 4096 and payload["thinking"]["budget_tokens"] == 1024
    with pytest.raises(ValueError, match="system"):
        ep.create_payload({"model": "c", "messages": [{"role": "system", "content": "x"}]})


def test_gemini_converts_openai_messages() -> None:
    """OpenAI-style messages become contents; system becomes systemInstruction."""
    ep = GeminiEndpoint(api_key=SecretStr("k"))
    payload = ep.create_payload(
        {
            "model": "gemini-2.5-flash",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
            ],
        }
    )
    assert payload["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert payload["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello"}]},
    ]
    assert ep.request_url(payload).endswith("/models/gemini-2.5-flash:generateContent")
    assert "model" not in ep.request_body(payload)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_each_provider_round_trip(provider: str, fake_provider: FakeProvider) -> None:
    """A call reaches FakeProvider with the right auth header and comes back normalized."""
    ep = match_endpoint(
        provider, base_url=fake_provider.base_url(provider), api_key=SecretStr("k1")
    )
    async with ep:
        payload = ep.create_payload({"model": "test-model", "messages": MESSAGES})
        response = await ep.call(payload)
    assert response.status == "success" and response.data
    assert response.usage is not None and response.usage.input_tokens > 0
    assert response.finish_reason == "stop"
    headers = fake_provider.requests[0].headers
    assert {"openai": "authorization", "anthropic": "x-api-key", "gemini": "x-goog-api-key"}[
        provider
    ] in headers


async def test_one_pooled_session_reused(fake_provider: FakeProvider) -> None:
    """Sequential calls reuse one session; aclose closes it and the next call reopens."""
    ep = OAIChatEndpoint(base_url=fake_provider.base_url("openai"), api_key=SecretStr("k"))
    payload = ep.create_payload({"model": "m", "messages": MESSAGES})
    await ep.call(payload)
    first = ep._transport.session
    await ep.call(payload)
    assert ep._transport.session is first
    await ep.aclose()
    assert first is not None and first.closed
    await ep.call(payload)
    assert ep._transport.session is not first
    await ep.aclose()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(status=200, body="not json at all"), errors.InvalidResponseError),
        (Reply(status=200, body=""), errors.InvalidResponseError),
        (
            Reply(status=200, body={"choices": [{"message": {}}]}, truncate=10),
            errors.ConnectionError,
        ),
        (Reply(drop=True), errors.ConnectionError),
    ],
)
async def test_bad_bodies_raise_typed_errors(
    reply: Reply, error: type[Exception], fake_provider: FakeProvider
) -> None:
    """Non-JSON, empty, truncated bodies and dropped connections raise typed errors."""
    fake_provider.script(reply)
    ep = OAIChatEndpoint(
        base_url=fake_provider.base_url("openai"), api_key=SecretStr("k"), retry_config=None
    )
    async with ep:
        with pytest.raises(error):
            await ep.call(ep.create_payload({"model": "m", "messages": MESSAGES}))


async def test_refused_connection_is_connection_error() -> None:
    """Nothing listening → ConnectionError (also the builtin), never a hang."""
    async with FakeProvider() as fp:
        url = fp.base_url("openai")
    ep = OAIChatEndpoint(base_url=url, api_key=SecretStr("k"), retry_config=None)
    async with ep:
        with pytest.raises(ConnectionError):
            await ep.call(ep.create_payload({"model": "m", "messages": MESSAGES}))


async def test_slow_server_times_out_near_deadline(fake_provider: FakeProvider) -> None:
    """A 5 s response under a 0.5 s timeout ends in TimeoutError well before 5 s."""
    fake_provider.script(Reply(delay=5.0))
    ep = OAIChatEndpoint(
        base_url=fake_provider.base_url("openai"), api_key=SecretStr("k"), retry_config=None
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with ep:
        with pytest.raises(errors.TimeoutError):
            await ep.call(ep.create_payload({"model": "m", "messages": MESSAGES}), timeout=0.5)
    assert loop.time() - start < 2.0


async def test_key_never_in_errors_or_logs(
    fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing call's error text and the library's logs never contain the API key."""
    caplog.set_level(logging.DEBUG, logger="lionpride")
    fake_provider.script(Reply(status=401))
    ep = OAIChatEndpoint(
        base_url=fake_provider.base_url("openai"), api_key=SecretStr("sk-very-secret")
    )
    async with ep:
        with pytest.raises(errors.AuthenticationError) as info:
            await ep.call(ep.create_payload({"model": "m", "messages": MESSAGES}))
    err = info.value
    text = " ".join([str(err), repr(err), json.dumps(err.to_dict()), str(err.headers), caplog.text])
    assert "sk-very-secret" not in text
    assert len(fake_provider.requests) == 1


def test_config_validation_names_bad_values() -> None:
    """Bad timeouts, unknown params and non-list tags raise ValueError naming the problem."""
    with pytest.raises(ValueError, match="timeout"):
        EndpointConfig(provider="p", name="n", endpoint="e", timeout=float("nan"))
    with pytest.raises(ValueError, match="endpoint_params"):
        EndpointConfig(provider="p", name="n", endpoint="e/{x}", params={"y": "1"})
    with pytest.raises(ValueError, match="tags must be a string or strings, got 5"):
        EndpointConfig(provider="p", name="n", endpoint="e", tags=5)


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("openai", {"choices": ["not an object"]}),
        ("anthropic", {"type": "message", "content": [{"type": "tool_use", "id": "t"}]}),
        ("gemini", {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]}),
    ],
)
async def test_malformed_bodies_raise_invalid_response(
    provider: str, body: dict[str, object], fake_provider: FakeProvider
) -> None:
    """A 200 body of the wrong shape raises InvalidResponseError, never KeyError/TypeError."""
    fake_provider.script(Reply(status=200, body=body))
    ep = match_endpoint(
        provider,
        base_url=fake_provider.base_url(provider),
        api_key=SecretStr("k"),
        retry_config=None,
    )
    async with ep:
        with pytest.raises(errors.InvalidResponseError, match="documented shape"):
            await ep.call(ep.create_payload({"model": "m", "messages": MESSAGES}))


def test_gemini_converts_openai_image_parts() -> None:
    """OpenAI image_url parts become Gemini inlineData (data URLs) or fileData (URIs)."""
    ep = GeminiEndpoint(api_key=SecretStr("k"))
    payload = ep.create_payload(
        {
            "model": "gemini-2.5-flash",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                        {"type": "image_url", "image_url": {"url": "gs://bucket/cat.webp"}},
                    ],
                }
            ],
        }
    )
    assert payload["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
        {"fileData": {"fileUri": "gs://bucket/cat.webp", "mimeType": "image/webp"}},
    ]
    with pytest.raises(ValueError, match="base64"):
        ep.create_payload(
            {
                "model": "m",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:x,abc"}}],
                    }
                ],
            }
        )


@pytest.mark.parametrize(
    ("provider", "header", "value"),
    [
        ("openai", "authorization", "Bearer team-key"),
        ("anthropic", "x-api-key", "team-key"),
        ("gemini", "x-goog-api-key", "team-key"),
    ],
)
async def test_api_key_env_names_the_callers_own_variable(
    fake_provider: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    header: str,
    value: str,
) -> None:
    """``api_key_env=`` replaces the provider's usual variable (it was a TypeError)."""
    monkeypatch.setenv("TEAM_LLM_KEY", "team-key")
    for usual in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(usual, "usual-key")
    model = iModel(
        provider=provider, base_url=fake_provider.base_url(provider), api_key_env="TEAM_LLM_KEY"
    )
    async with model:
        await model.invoke(model="test-model", messages=MESSAGES)
    assert fake_provider.requests[0].headers[header] == value
    assert model.to_dict()["backend"]["config"]["api_key_env"] == "TEAM_LLM_KEY"


async def test_a_provider_name_that_is_no_variable_name_reads_its_sanitized_variables(
    fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``my-local.llm`` reads ``MY_LOCAL_LLM_API_KEY`` and ``MY_LOCAL_LLM_BASE_URL`` (a
    variable name cannot hold ``-`` or ``.``)."""
    monkeypatch.setenv("MY_LOCAL_LLM_API_KEY", "local-key")
    monkeypatch.setenv("MY_LOCAL_LLM_BASE_URL", fake_provider.base_url("openai"))
    with pytest.warns(UserWarning, match="Unknown provider 'my-local.llm'"):
        model = iModel(provider="my-local.llm")
    async with model:
        await model.invoke(model="m", messages=MESSAGES)
    assert fake_provider.requests[0].headers["authorization"] == "Bearer local-key"
