"""``iModel.count_tokens`` against FakeProvider: routes, bodies, limits, retries, estimate."""

from __future__ import annotations

from typing import Any

import pytest
from tests.providers._api_wire import fake_model

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.types.hook import HookPhase, HookRegistry
from lionpride.testing import FakeProvider, Reply

TEXT = "x" * 40  # ten tokens by FakeProvider's count


def model_for(fp: FakeProvider, provider: str, endpoint: str = "chat", **kw: Any) -> iModel:
    """A model on the FakeProvider, retries off unless given."""
    return fake_model(fp, provider, endpoint, **kw)


async def test_anthropic_counts_the_prompt_without_generation_settings(
    fake_provider: FakeProvider,
) -> None:
    """The count goes to messages/count_tokens, without max_tokens or temperature."""
    async with model_for(fake_provider, "anthropic") as model:
        count = await model.count_tokens(
            model="claude-sonnet-4-5",
            system=TEXT,
            messages=[{"role": "user", "content": TEXT}],
            max_tokens=100,
            temperature=0.5,
        )
    sent = fake_provider.requests[-1]
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.body == {
        "model": "claude-sonnet-4-5",
        "system": TEXT,
        "messages": [{"role": "user", "content": TEXT}],
    }
    assert count == 20


async def test_gemini_sends_a_whole_request_as_generate_content_request(
    fake_provider: FakeProvider,
) -> None:
    """With a system instruction the body is generateContentRequest, model in it and path."""
    async with model_for(fake_provider, "gemini") as model:
        count = await model.count_tokens(
            model="gemini-2.5-flash",
            contents=[{"role": "user", "parts": [{"text": TEXT}]}],
            systemInstruction={"parts": [{"text": "Be brief."}]},
        )
    sent = fake_provider.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    inner = sent.body["generateContentRequest"]
    assert inner["model"] == "models/gemini-2.5-flash"
    assert inner["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert count == 10


async def test_responses_counts_canonical_messages(fake_provider: FakeProvider) -> None:
    """A canonical request is translated, then posted to responses/input_tokens."""
    async with model_for(fake_provider, "openai", "responses") as model:
        count = await model.count_tokens(
            model="gpt-5", messages=[{"role": "user", "content": TEXT}], max_tokens=5
        )
    sent = fake_provider.requests[-1]
    assert sent.path == "/v1/responses/input_tokens"
    assert sent.body == {"model": "gpt-5", "input": [{"role": "user", "content": TEXT}]}
    assert count == 10


async def test_chat_completions_uses_the_local_estimate(fake_provider: FakeProvider) -> None:
    """Chat completions has no counting route: the local estimate, with no request sent."""
    async with model_for(fake_provider, "openai") as model:
        request = {"model": "gpt-4o", "messages": [{"role": "user", "content": TEXT}]}
        count = await model.count_tokens(**request, max_tokens=1000)
        payload = model.backend.create_payload(request)
        expected = model.backend.estimate_tokens(payload) - model.backend.output_budget(payload)
    assert count == expected and 0 < count < 1000
    assert fake_provider.requests == []


async def test_count_goes_through_limits_and_retries(fake_provider: FakeProvider) -> None:
    """A 503 is retried, and each count is one granted request of the model's limits."""
    fake_provider.script(Reply(status=503))
    async with model_for(
        fake_provider,
        "anthropic",
        limit_requests=10,
        retry_config={"max_retries": 1, "initial_delay": 0.01},
    ) as model:
        messages = [{"role": "user", "content": TEXT}]
        assert await model.count_tokens(model="c", messages=messages) == 10
        stats = model.executor.stats()
    assert len(fake_provider.requests) == 2
    assert stats["completed"] == 1


async def test_invalid_request_is_refused_before_sending(fake_provider: FakeProvider) -> None:
    """A misspelt parameter is named, and nothing is sent."""
    async with model_for(fake_provider, "anthropic") as model:
        with pytest.raises(ValueError, match="mesages"):
            await model.count_tokens(model="c", mesages=[])
    assert fake_provider.requests == []


async def test_unknown_model_on_responses_count_is_not_found(fake_provider: FakeProvider) -> None:
    """The Responses API's 400 model_not_found on input_tokens is a NotFoundError, as on invoke."""
    error = {"message": "The model 'nope' does not exist.", "type": "invalid_request_error"}
    body = {"error": {**error, "param": "model", "code": "model_not_found"}}
    fake_provider.script(Reply(status=400, body=body))
    async with model_for(fake_provider, "openai", "responses") as model:
        with pytest.raises(errors.NotFoundError, match="nope") as caught:
            await model.count_tokens(model="nope", input="hi")
    assert caught.value.status_code == 400


async def test_stored_prompt_cannot_be_counted(fake_provider: FakeProvider) -> None:
    """input_tokens takes no stored prompt: a ValidationError naming it, nothing sent."""
    async with model_for(fake_provider, "openai", "responses") as model:
        with pytest.raises(errors.ValidationError, match="'prompt'"):
            await model.count_tokens(model="gpt-5", prompt={"id": "pmpt_1"}, input="hi")
    assert fake_provider.requests == []


async def test_count_runs_the_models_invocation_hooks(fake_provider: FakeProvider) -> None:
    """The count is a request like any other: PreInvocation and PostInvocation hooks see it."""
    seen: list[Any] = []

    async def pre(calling: Any, **kw: Any) -> None:
        seen.append(calling.payload)

    async def post(calling: Any, **kw: Any) -> None:
        seen.append(kw["response"].data)

    hooks = HookRegistry({HookPhase.PreInvocation: pre, HookPhase.PostInvocation: post})
    async with model_for(fake_provider, "anthropic", hook_registry=hooks) as model:
        messages = [{"role": "user", "content": TEXT}]
        assert await model.count_tokens(model="c", messages=messages) == 10
    assert seen == [{"model": "c", "messages": messages}, 10]
