"""iModel: construction, the direct call path, errors and lifetime."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.core.event import EventStatus
from lionpride.services import Tool, iModel
from lionpride.services.providers import AnthropicMessagesEndpoint
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Hello!"}]


def test_needs_backend_or_provider() -> None:
    """Neither backend nor provider is a ValueError."""
    with pytest.raises(ValueError, match="backend or provider"):
        iModel()


def test_provider_kwargs_are_consumed_not_stored() -> None:
    """api_key, base_url and model defaults go to the endpoint, never onto the iModel."""
    model = iModel(provider="openai", api_key=SecretStr("sk-abc"), model="gpt-4o-mini")
    assert model.backend.config.kwargs == {"model": "gpt-4o-mini"}
    assert "sk-abc" not in json.dumps(model.model_dump(mode="json"), default=str)
    assert (model.name, model.tags, model.version) == ("openai_chat", {"llm", "openai"}, None)
    assert repr(model) == "iModel(backend=openai_chat, version=None)"


def test_user_tags_override_defaults() -> None:
    """tags=[...] replaces the default tags."""
    model = iModel(provider="gemini", api_key=SecretStr("k"), tags=["fast"])
    assert model.tags == {"fast"}


def test_backend_with_stray_kwargs_is_rejected() -> None:
    """Endpoint kwargs next to backend= are an error, not silently ignored."""
    backend = AnthropicMessagesEndpoint(api_key=SecretStr("k"))
    with pytest.raises(ValueError, match="base_url"):
        iModel(backend=backend, base_url="http://x")


async def test_seed_quick_start_anthropic_without_max_tokens(
    fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's quick start works: env-named key, no max_tokens, text in response.data."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.base_url("anthropic"))
    async with iModel(provider="anthropic", api_key="ANTHROPIC_API_KEY") as model:
        calling = await model.invoke(model="claude-sonnet-4-5", messages=MESSAGES)
    assert calling.status is EventStatus.COMPLETED
    assert calling.response is not None and isinstance(calling.response.data, str)
    sent = fake_provider.requests[0]
    assert sent.body["max_tokens"] == 4096
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"


async def test_failed_call_raises_typed_error_with_calling(fake_provider: FakeProvider) -> None:
    """A 400 raises BadRequestError carrying the failed Calling; raise_on_error=False returns it."""
    fake_provider.script(Reply(status=400), Reply(status=400))
    model = iModel(
        provider="openai", base_url=fake_provider.base_url("openai"), api_key=SecretStr("k")
    )
    async with model:
        with pytest.raises(errors.BadRequestError) as info:
            await model.invoke(model="m", messages=MESSAGES)
        assert info.value.calling.status is EventStatus.FAILED
        calling = await model.invoke(model="m", messages=MESSAGES, raise_on_error=False)
    assert calling.status is EventStatus.FAILED
    assert isinstance(calling.execution.error, errors.BadRequestError)
    assert calling.execution.retryable is False


async def test_reusing_a_calling_with_new_timeout(fake_provider: FakeProvider) -> None:
    """create_calling once, change its timeout, invoke it; a second invoke is a no-op."""
    model = iModel(
        provider="openai", base_url=fake_provider.base_url("openai"), api_key=SecretStr("k")
    )
    async with model:
        calling = await model.create_calling(model="m", messages=MESSAGES)
        calling.timeout = 120.0
        done = await model.invoke(calling=calling)
        assert done is calling and calling.status is EventStatus.COMPLETED
        await calling.invoke()
    assert len(fake_provider.requests) == 1
    assert calling.execution.duration is not None and calling.execution.attempts == 1


async def test_invalid_request_raises_before_sending(fake_provider: FakeProvider) -> None:
    """An unknown parameter raises ValueError from invoke and nothing is sent."""
    model = iModel(
        provider="openai", base_url=fake_provider.base_url("openai"), api_key=SecretStr("k")
    )
    with pytest.raises(ValueError, match="max_tokenz"):
        await model.invoke(model="m", messages=MESSAGES, max_tokenz=5)
    assert fake_provider.requests == []


async def test_aclose_closes_session(fake_provider: FakeProvider) -> None:
    """aclose closes the endpoint's pooled session."""
    model = iModel(
        provider="gemini", base_url=fake_provider.base_url("gemini"), api_key=SecretStr("k")
    )
    await model.invoke(model="gemini-2.5-flash", messages=MESSAGES)
    session = model.backend._transport.session
    await model.aclose()
    assert session is not None and session.closed


async def test_response_of_a_failed_or_unrun_calling_raises() -> None:
    """``calling.response`` is never ``None``: a failed Calling raises its own error, one
    that has not run raises ExecutionError; ``execution.response`` stays ``None`` for both."""

    def broken(x: int) -> int:
        raise KeyError("no such row")

    model = iModel(backend=Tool(func_callable=broken))
    failed = await model.invoke(x=1, raise_on_error=False)
    with pytest.raises(KeyError, match="no such row"):
        failed.response  # noqa: B018
    pending = await model.create_calling(x=1)
    with pytest.raises(errors.ExecutionError, match="has no response"):
        pending.response  # noqa: B018
    assert failed.execution.response is None and pending.execution.response is None


async def test_response_of_a_cancelled_calling_says_it_was_cancelled() -> None:
    """A Calling whose call was cancelled mid-way raises an ExecutionError that says so, not
    one that asks for the call to be invoked first."""
    entered = asyncio.Event()

    async def slow(x: int) -> int:
        entered.set()
        await asyncio.sleep(3600)
        return x

    model = iModel(backend=Tool(func_callable=slow))
    calling = await model.create_calling(x=1)
    task = asyncio.create_task(model.invoke(calling=calling))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(errors.ExecutionError, match="was cancelled") as caught:
        calling.response  # noqa: B018
    assert "invoke it first" not in str(caught.value)
