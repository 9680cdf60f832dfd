"""Fallback: models tried in order on transient failures, against FakeProvider."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.services import ServiceRegistry, iModel
from lionpride.services.fallback import Fallback
from lionpride.services.utilities.resilience import no_backoff
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Hello!"}]


@pytest.fixture
async def pair(fake_provider: FakeProvider) -> AsyncIterator[tuple[iModel, iModel]]:
    """An Anthropic model and an OpenAI model, each with its own default model name."""
    fp = fake_provider
    claude = iModel(
        provider="anthropic",
        base_url=fp.base_url("anthropic"),
        api_key=SecretStr("k"),
        model="claude-sonnet-4-5",
    )
    gpt = iModel(
        provider="openai", base_url=fp.base_url("openai"), api_key=SecretStr("k"), model="gpt-5"
    )
    yield claude, gpt
    await claude.aclose()
    await gpt.aclose()


async def test_first_model_answers(
    fake_provider: FakeProvider, pair: tuple[iModel, iModel]
) -> None:
    """When the first model succeeds the second is never called."""
    claude, gpt = pair
    calling = await Fallback(claude, gpt).invoke(messages=MESSAGES)
    assert calling.backend is claude.backend
    assert [r.path for r in fake_provider.requests] == ["/v1/messages"]


async def test_transient_failure_moves_on(
    fake_provider: FakeProvider, pair: tuple[iModel, iModel]
) -> None:
    """Anthropic overloaded (529 on every attempt) → OpenAI answers."""
    fake_provider.script(Reply(status=529), Reply(status=529), Reply(status=529), path="messages")
    claude, gpt = pair
    with no_backoff():
        calling = await Fallback(claude, gpt).invoke(messages=MESSAGES)
    assert calling.backend is gpt.backend and calling.response is not None
    assert [r.path for r in fake_provider.requests].count("/v1/messages") == 3


async def test_non_retryable_failure_is_raised_at_once(
    fake_provider: FakeProvider, pair: tuple[iModel, iModel]
) -> None:
    """A 400 from the first model is raised; the second model is not tried."""
    fake_provider.script(Reply(status=400), path="messages")
    claude, gpt = pair
    with pytest.raises(errors.BadRequestError):
        await Fallback(claude, gpt).invoke(messages=MESSAGES)
    assert len(fake_provider.requests) == 1


async def test_all_failing_raises_last_with_every_error(
    fake_provider: FakeProvider, pair: tuple[iModel, iModel]
) -> None:
    """When every model fails transiently the last error is raised, carrying all of them."""
    fake_provider.script(*(Reply(status=503) for _ in range(6)))
    claude, gpt = pair
    with no_backoff(), pytest.raises(errors.ServerError) as info:
        await Fallback(claude, gpt).invoke(messages=MESSAGES)
    assert len(info.value.fallback_errors) == 1
    assert info.value not in info.value.fallback_errors


async def test_raise_on_error_false_returns_the_last_failed_calling(
    fake_provider: FakeProvider, pair: tuple[iModel, iModel]
) -> None:
    """With raise_on_error=False every model is still tried; the last failure is returned."""
    fake_provider.script(*(Reply(status=503) for _ in range(6)))
    claude, gpt = pair
    with no_backoff():
        calling = await Fallback(claude, gpt).invoke(messages=MESSAGES, raise_on_error=False)
    assert calling.backend is gpt.backend
    assert isinstance(calling.execution.error, errors.ServerError)
    assert len(fake_provider.requests) == 6
    with pytest.raises(ValueError, match="one Calling per model"):
        await Fallback(claude, gpt).invoke(calling=calling)


async def test_from_registry_by_tag_and_names(
    fake_provider: FakeProvider, pair: tuple[iModel, iModel]
) -> None:
    """A chain can be taken from a registry, by names in order or by tag."""
    claude, gpt = pair
    registry = ServiceRegistry()
    registry.register(claude)
    registry.register(gpt)
    by_names = Fallback.from_registry(registry, names=["openai_chat", "anthropic_messages"])
    assert by_names.models == (gpt, claude)
    assert Fallback.from_registry(registry, tag="llm").models == (claude, gpt)
    with pytest.raises(ValueError, match="nosuch"):
        Fallback.from_registry(registry, tag="nosuch")
    with pytest.raises(ValueError):
        Fallback()


async def test_stream_moves_on_before_its_first_chunk(
    fake_provider: FakeProvider, pair: tuple[iModel, iModel]
) -> None:
    """A stream that fails transiently before any chunk moves on to the next model, whose
    chunks (and final response) come out as iModel.invoke_stream gives them."""
    fake_provider.script(Reply(status=529), Reply(status=529), Reply(status=529), path="messages")
    claude, gpt = pair
    with no_backoff():
        chunks = [c async for c in Fallback(claude, gpt).invoke_stream(messages=MESSAGES)]
    assert chunks[-1].is_final and chunks[-1].response is not None
    assert "".join(c.content for c in chunks[:-1]) == chunks[-1].response.data
    paths = [r.path for r in fake_provider.requests]
    assert paths.count("/v1/messages") == 3 and paths[-1] == "/v1/chat/completions"


async def test_stream_raises_a_lasting_failure_at_once(
    fake_provider: FakeProvider, pair: tuple[iModel, iModel]
) -> None:
    """A non-retryable failure of the first stream is raised, the next model never asked;
    when every model fails, the earlier errors ride on ``fallback_errors``."""
    claude, gpt = pair
    fake_provider.script(Reply(status=401), path="messages")
    with pytest.raises(errors.AuthenticationError):
        [c async for c in Fallback(claude, gpt).invoke_stream(messages=MESSAGES)]
    assert [r.path for r in fake_provider.requests] == ["/v1/messages"]
    fake_provider.script(*[Reply(status=503)] * 3, path="messages")
    fake_provider.script(*[Reply(status=503)] * 3, path="chat/completions")
    with no_backoff(), pytest.raises(errors.ServerError) as caught:
        [c async for c in Fallback(claude, gpt).invoke_stream(messages=MESSAGES)]
    assert [type(e) for e in caught.value.fallback_errors] == [errors.ServerError]  # type: ignore[attr-defined]


async def test_async_with_closes_every_model(fake_provider: FakeProvider) -> None:
    """Leaving ``async with Fallback(...)`` closes each model: their own executors refuse
    further calls."""
    models = [
        iModel(
            provider="openai",
            base_url=fake_provider.base_url("openai"),
            api_key=SecretStr("k"),
            model="gpt-5",
            limit_requests=10,
        )
        for _ in range(2)
    ]
    async with Fallback(*models) as chain:
        await chain.invoke(messages=MESSAGES)
    for model in models:
        with pytest.raises(errors.ExecutionError, match="executor closed"):
            await model.invoke(messages=MESSAGES)
