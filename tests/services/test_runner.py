"""The runner: call options kept out of the request, one outcome per call, one grant path."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.core.event import EventStatus
from lionpride.services import iModel
from lionpride.services._calling import CALL_OPTIONS
from lionpride.services.providers.anthropic_messages import AnthropicMessagesEndpoint
from lionpride.services.providers.gemini import GeminiEndpoint
from lionpride.services.providers.oai_chat import OAIChatEndpoint
from lionpride.services.providers.oai_responses import OAIResponsesEndpoint
from lionpride.services.types.hook import HookOptions, HookPhase, HookRegistry
from lionpride.services.types.tool import Tool
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Hello!"}]


def open_ticket(title: str, priority: int = 3) -> str:
    """Open a ticket.

    Args:
        title: What it is about.
        priority: 1 (urgent) to 5.
    """
    return f"{title}:{priority}"


async def test_an_option_named_like_a_request_field_is_refused() -> None:
    """A tool whose request has a ``priority`` field refuses the ``priority`` option given
    beside it, rather than letting the option take the field's value."""
    model = iModel(backend=Tool(func_callable=open_ticket))
    with pytest.raises(errors.ValidationError, match="`priority` is both a call option"):
        await model.invoke(title="disk full", priority=1)
    calling = await model.invoke(title="disk full")
    assert calling.response.data == "disk full:3"
    calling = await model.invoke(title="disk full", poll_timeout=5.0)
    assert calling.response.data == "disk full:3"


@pytest.mark.parametrize(
    "endpoint", [OAIChatEndpoint, OAIResponsesEndpoint, AnthropicMessagesEndpoint, GeminiEndpoint]
)
def test_no_provider_request_has_a_field_named_like_a_call_option(endpoint: Any) -> None:
    """The built-in providers' requests declare no field that a call option would shadow."""
    options = endpoint(api_key=SecretStr("k")).request_options
    assert options is not None
    assert set(options.model_fields).isdisjoint(CALL_OPTIONS)


def test_hook_options_refuse_a_timeout_that_is_no_duration() -> None:
    """A hook timeout must be a finite number of seconds > 0."""
    for bad in (0, -1.0, float("inf"), True, "5"):
        with pytest.raises(errors.ValidationError, match="pre_timeout"):
            HookOptions(pre_timeout=bad)  # type: ignore[arg-type]
    assert HookOptions(pre_timeout=None).pre_timeout is None


async def test_old_hook_keywords_are_not_taken_silently(fake_provider: FakeProvider) -> None:
    """A hook setting given as a loose keyword is a request field, refused by name."""
    hooks = HookRegistry({HookPhase.PostInvocation: lambda e, **kw: None})
    model = iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        hook_registry=hooks,
    )
    async with model:
        with pytest.raises(errors.ValidationError, match="post_invoke_exit_hook"):
            await model.invoke(model="m", messages=MESSAGES, post_invoke_exit_hook=True)
    assert fake_provider.requests == []


async def test_a_calling_runs_only_through_its_model(fake_provider: FakeProvider) -> None:
    """``Calling.invoke`` on a pending Calling points to the model; after it ran, nothing."""
    model = iModel(
        provider="openai", base_url=fake_provider.base_url("openai"), api_key=SecretStr("k")
    )
    async with model:
        calling = await model.create_calling(model="m", messages=MESSAGES)
        with pytest.raises(errors.ExecutionError, match=r"model\.invoke\(calling=calling\)"):
            await calling.invoke()
        assert calling.execution.status is EventStatus.PENDING
        await model.invoke(calling)
        await calling.invoke()
    assert calling.execution.status is EventStatus.COMPLETED
    assert len(fake_provider.requests) == 1


async def test_calls_and_streams_are_booked_alike_by_the_executor(
    fake_provider: FakeProvider,
) -> None:
    """One grant path: a failed call and a failed stream both count as failed in the
    executor's stats, a completed call and stream as completed, and each once in metrics."""
    model = iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        retry_config=None,
        limit_requests=100,
    )
    executor = model.executor
    assert executor is not None
    fake_provider.script(Reply(status=400), Reply(), Reply(status=400), Reply())
    async with model:
        failed = await model.invoke(model="m", messages=MESSAGES, raise_on_error=False)
        done = await model.invoke(model="m", messages=MESSAGES)
        with pytest.raises(errors.BadRequestError):
            async for _ in model.invoke_stream(model="m", messages=MESSAGES):
                pass
        chunks = [c async for c in model.invoke_stream(model="m", messages=MESSAGES)]
    assert failed.execution.status is EventStatus.FAILED
    assert done.execution.status is EventStatus.COMPLETED and chunks[-1].is_final
    stats = executor.stats()
    assert (stats["completed"], stats["failed"], stats["in_flight"]) == (2, 2, 0)
    assert model.metrics()["calls"] == 4


async def test_a_calling_given_with_request_fields_is_refused(fake_provider: FakeProvider) -> None:
    """Request fields or options beside ``calling=`` would be dropped: refused, nothing sent."""
    model = iModel(
        provider="openai", base_url=fake_provider.base_url("openai"), api_key=SecretStr("k")
    )
    async with model:
        calling = await model.create_calling(model="m", messages=MESSAGES)
        with pytest.raises(errors.ValidationError, match="carries its request"):
            await model.invoke(calling, model="other")  # type: ignore[call-overload]
        with pytest.raises(errors.ValidationError, match="carries its request"):
            async for _ in model.invoke_stream(calling, timeout=5.0):
                pass
        assert calling.execution.status is EventStatus.PENDING
    assert fake_provider.requests == []


async def test_post_hooks_run_after_the_grant_is_returned(fake_provider: FakeProvider) -> None:
    """PostInvocation hooks of a call and of a stream see the outcome recorded and the
    concurrency slot free; a call refused before its grant runs no hooks, counted once."""
    seen: list[tuple[Any, int]] = []
    hooks = HookRegistry()
    model = iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        limit_requests=100,
        concurrency_limit=1,
        hook_registry=hooks,
    )
    executor = model.executor
    assert executor is not None

    def post(event: Any, **kw: Any) -> None:
        seen.append((event.status, executor.stats()["in_flight"]))

    hooks.register(HookPhase.PostInvocation, post)
    hooks.register(HookPhase.PreInvocation, lambda e, **kw: seen.append(("pre", 1)))
    async with model:
        await model.invoke(model="m", messages=MESSAGES)
        chunks = [c async for c in model.invoke_stream(model="m", messages=MESSAGES)]
    assert chunks[-1].is_final
    assert seen == [("pre", 1), (EventStatus.COMPLETED, 0)] * 2
    refused = await model.invoke(model="m", messages=MESSAGES, raise_on_error=False)
    assert isinstance(refused.execution.error, errors.ExecutionError)
    assert len(seen) == 4 and model.metrics()["calls"] == 3
