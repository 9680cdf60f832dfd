"""Hooks: the registry and where each phase fires in iModel calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.core.event import EventStatus
from lionpride.services import iModel
from lionpride.services.types.backend import Calling
from lionpride.services.types.hook import HookOptions, HookPhase, HookRegistry
from lionpride.services.types.response import NormalizedResponse
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Hello!"}]
REQUEST: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES}


def _model(fp: FakeProvider, hooks: HookRegistry, **kw: Any) -> iModel:
    return iModel(
        provider="openai",
        api_key=SecretStr("sk-test"),
        base_url=fp.base_url("openai"),
        retry_config=None,
        hook_registry=hooks,
        **kw,
    )


def test_registry_register_order_and_unregister() -> None:
    """Several hooks per phase keep their order; unregister removes one or all."""

    def a(event: Any, **kw: Any) -> None: ...
    def b(event: Any, **kw: Any) -> None: ...

    reg = HookRegistry({HookPhase.PreInvocation: [a, b], "post_invocation": a})
    assert reg.hooks(HookPhase.PreInvocation) == (a, b)
    assert reg.handles("post_invocation") and not reg.handles(HookPhase.ErrorHandling)
    assert reg.unregister(HookPhase.PreInvocation, a) == 1
    assert reg.hooks(HookPhase.PreInvocation) == (b,)
    assert reg.unregister(HookPhase.PostInvocation) == 1
    assert not reg.handles(HookPhase.PostInvocation)


def test_registry_rejects_unknown_phase_and_non_callable() -> None:
    """An unknown phase is named in the ValueError; a non-callable hook is refused."""
    reg = HookRegistry()
    with pytest.raises(ValueError, match="'before_call'"):
        reg.register("before_call", print)
    with pytest.raises(ValueError, match="callable"):
        reg.register(HookPhase.PreInvocation, 42)  # type: ignore[arg-type]


async def test_pre_and_post_hooks_see_payload_and_outcome(fake_provider: FakeProvider) -> None:
    """Pre hooks see the payload; post hooks see the recorded response and get params."""
    seen: list[Any] = []

    async def pre(event: Calling, **kw: Any) -> None:
        seen.append(("pre", event.payload["model"], event.status, kw["exit"]))

    def post(event: Calling, **kw: Any) -> None:
        seen.append(("post", event.execution.response is kw["response"], event.status, kw["tag"]))

    hooks = HookRegistry({HookPhase.PreInvocation: pre, HookPhase.PostInvocation: post})
    async with _model(fake_provider, hooks) as model:
        calling = await model.invoke(**REQUEST, hooks=HookOptions(post_params={"tag": "t"}))
    assert calling.status is EventStatus.COMPLETED
    assert seen == [
        ("pre", "gpt-4o-mini", EventStatus.PROCESSING, False),
        ("post", True, EventStatus.COMPLETED, "t"),
    ]
    assert calling.response is not None


async def test_raising_pre_hook_fails_call_without_backend(fake_provider: FakeProvider) -> None:
    """A raising PreInvocation hook fails the call and the backend is never contacted."""

    def pre(event: Calling, **kw: Any) -> None:
        raise PermissionError("blocked")

    hooks = HookRegistry({HookPhase.PreInvocation: pre})
    async with _model(fake_provider, hooks) as model:
        with pytest.raises(PermissionError, match="blocked") as info:
            await model.invoke(**REQUEST)
    assert info.value.calling.status is EventStatus.FAILED  # type: ignore[attr-defined]
    assert fake_provider.requests == []


async def test_slow_pre_hook_times_out_as_failure(fake_provider: FakeProvider) -> None:
    """A pre hook exceeding its timeout fails the call with a TimeoutError."""

    async def pre(event: Calling, **kw: Any) -> None:
        await asyncio.sleep(5)

    hooks = HookRegistry({HookPhase.PreInvocation: pre})
    async with _model(fake_provider, hooks) as model:
        calling = await model.invoke(
            **REQUEST, hooks=HookOptions(pre_timeout=0.01), raise_on_error=False
        )
    assert calling.status is EventStatus.FAILED
    assert isinstance(calling.execution.error, errors.TimeoutError)
    assert fake_provider.requests == []


async def test_error_hook_recovers_a_failed_call(fake_provider: FakeProvider) -> None:
    """An ErrorHandling hook returning a NormalizedResponse turns a failure into success."""
    got: list[BaseException] = []

    def on_error(event: Calling, **kw: Any) -> NormalizedResponse:
        got.append(kw["error"])
        return NormalizedResponse(status="success", data="fallback")

    fake_provider.script(Reply(status=400))
    hooks = HookRegistry({HookPhase.ErrorHandling: on_error})
    async with _model(fake_provider, hooks) as model:
        calling = await model.invoke(**REQUEST)
    assert calling.status is EventStatus.COMPLETED
    assert calling.response is not None and calling.response.data == "fallback"
    assert isinstance(got[0], errors.BadRequestError)


async def test_post_hook_sees_error_and_failure_is_only_logged(
    fake_provider: FakeProvider,
) -> None:
    """Post hooks get error= on failure; a raising post hook never fails a good call."""
    errs: list[Any] = []

    def post(event: Calling, **kw: Any) -> None:
        errs.append(kw["error"])
        raise RuntimeError("hook bug")

    fake_provider.script(Reply(status=400))
    hooks = HookRegistry({HookPhase.PostInvocation: post})
    async with _model(fake_provider, hooks) as model:
        failed = await model.invoke(**REQUEST, raise_on_error=False)
        ok = await model.invoke(**REQUEST)
    assert isinstance(errs[0], errors.BadRequestError) and errs[1] is None
    assert failed.status is EventStatus.FAILED
    assert ok.status is EventStatus.COMPLETED


async def test_post_exit_hook_error_becomes_call_error(fake_provider: FakeProvider) -> None:
    """With post_exit=True a raising post hook's error becomes the call's."""

    def post(event: Calling, **kw: Any) -> None:
        raise RuntimeError("reject")

    hooks = HookRegistry({HookPhase.PostInvocation: post})
    async with _model(fake_provider, hooks) as model:
        with pytest.raises(RuntimeError, match="reject"):
            await model.invoke(**REQUEST, hooks=HookOptions(post_exit=True))


async def test_slow_post_hook_does_not_fail_call(fake_provider: FakeProvider) -> None:
    """A post hook slower than the call timeout is cut off by its own timeout and logged."""

    async def post(event: Calling, **kw: Any) -> None:
        await asyncio.sleep(5)

    hooks = HookRegistry({HookPhase.PostInvocation: post})
    async with _model(fake_provider, hooks) as model:
        calling = await model.invoke(**REQUEST, timeout=0.2, hooks=HookOptions(post_timeout=0.25))
    assert calling.status is EventStatus.COMPLETED


async def test_pre_event_create_hook_exit_flag(fake_provider: FakeProvider) -> None:
    """PreEventCreate gets the Calling class; it aborts creation only with the exit flag."""
    got: list[Any] = []

    def create(event: Any, **kw: Any) -> None:
        got.append((event, kw))
        raise LookupError("no")

    hooks = HookRegistry({HookPhase.PreEventCreate: create})
    async with _model(fake_provider, hooks) as model:
        calling = await model.create_calling(**REQUEST, hooks=HookOptions(create_params={"x": 1}))
        with pytest.raises(LookupError):
            await model.create_calling(**REQUEST, hooks=HookOptions(create_exit=True))
    assert isinstance(calling, Calling)
    assert isinstance(got[0][0], type) and issubclass(got[0][0], Calling)
    assert got[0][1] == {"exit": False, "x": 1}


async def test_hooks_run_on_executor_path(fake_provider: FakeProvider) -> None:
    """Pre and post hooks also fire when the executor runs the call."""
    phases: list[str] = []
    hooks = HookRegistry()
    hooks.register(HookPhase.PreInvocation, lambda e, **kw: phases.append("pre"))
    hooks.register(HookPhase.PostInvocation, lambda e, **kw: phases.append("post"))
    async with _model(fake_provider, hooks, limit_requests=10) as model:
        await model.invoke(**REQUEST)
    assert phases == ["pre", "post"]


async def test_stream_runs_chunk_and_lifecycle_hooks(fake_provider: FakeProvider) -> None:
    """Streams run pre hooks, a chunk hook per chunk, then post hooks with the response."""
    log: list[str] = []
    hooks = HookRegistry()
    hooks.register(HookPhase.PreInvocation, lambda e, **kw: log.append("pre"))
    hooks.register(HookPhase.StreamChunk, lambda e, **kw: log.append("chunk"))
    hooks.register(
        HookPhase.PostInvocation,
        lambda e, **kw: log.append("post" if kw["response"] is not None else "post-none"),
    )
    async with _model(fake_provider, hooks) as model:
        chunks = [c async for c in model.invoke_stream(**REQUEST)]
    assert log[0] == "pre" and log[-1] == "post"
    assert log.count("chunk") == len(chunks) > 0
