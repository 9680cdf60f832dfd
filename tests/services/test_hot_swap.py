"""One canonical request through Fallback and a registry swap: the same shaped result
whichever provider answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from tests.conftest import model_on

from lionpride.services import ServiceRegistry, iModel
from lionpride.services.fallback import Fallback
from lionpride.services.utilities.resilience import no_backoff
from lionpride.testing import FakeProvider, Reply

MODELS = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4o", "gemini": "gemini-2.5-flash"}
PATHS = {"anthropic": "messages", "openai": "chat/completions", "gemini": "generateContent"}
IMAGE = "data:image/png;base64,iVBORw0KGgo="


class Dish(BaseModel):
    """A dish and the vegetable in it."""

    dish: str
    vegetable: str


def get_recipe(dish: str) -> str:
    """A recipe for a dish.

    Args:
        dish: The dish's name.
    """
    return f"Recipe for {dish}"


REQUEST: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You are a cook."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What dish is this?"},
                {"type": "image_url", "image_url": {"url": IMAGE}},
            ],
        },
    ],
    "tools": [get_recipe],
    "response_format": Dish,
}


def model_for(provider: str, fp: FakeProvider, **extra: Any) -> iModel:
    """An iModel for ``provider`` on the FakeProvider."""
    return model_on(fp, provider, model=MODELS[provider], **extra)


@pytest.fixture
async def trio(fake_provider: FakeProvider) -> AsyncIterator[list[iModel]]:
    """Anthropic, OpenAI and Gemini models, in that order."""
    models = [model_for(p, fake_provider) for p in MODELS]
    yield models
    for model in models:
        await model.aclose()


def shape(message: dict[str, Any]) -> dict[str, Any]:
    """A message without what differs by provider (call ids, provider state)."""
    calls = [
        {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
        for c in message.get("tool_calls") or ()
    ]
    return {"role": message["role"], "content": message["content"], "tool_calls": calls}


@pytest.mark.parametrize("answering", list(MODELS))
async def test_fallback_gives_one_shape_whichever_answers(
    answering: str, fake_provider: FakeProvider, trio: list[iModel]
) -> None:
    """System prompt, tools, an image and response_format=Dish: the earlier providers are
    overloaded, the answering one's result is the same validated Dish and message."""
    for provider in list(MODELS)[: list(MODELS).index(answering)]:
        fake_provider.script(*[Reply(status=529)] * 3, path=PATHS[provider])
    answer = Dish(dish="Fries", vegetable="potato")
    fake_provider.script(Reply(text=answer.model_dump_json()), path=PATHS[answering])
    with no_backoff():
        calling = await Fallback(*trio).invoke(**REQUEST)
    assert calling.backend.provider == answering
    assert calling.response is not None
    assert calling.response.parsed == answer
    assert shape(calling.response.to_message()) == {
        "role": "assistant",
        "content": answer.model_dump_json(),
        "tool_calls": [],
    }


@pytest.mark.parametrize("provider", list(MODELS))
async def test_registry_swap_runs_the_same_tool_loop(
    provider: str, fake_provider: FakeProvider
) -> None:
    """A model swapped in under the registry name runs the same two-turn tool loop."""
    registry = ServiceRegistry()
    registry.register(model_for("openai", fake_provider, name="chef"))
    registry.register(model_for(provider, fake_provider, name="chef"), update=True)
    model = registry.get("chef")
    call = {"name": "get_recipe", "arguments": {"dish": "fries"}}
    fake_provider.script(Reply(tool_calls=[call]))
    first = await model.invoke(**REQUEST)
    assert first.response is not None
    turn = first.response.to_message()
    assert shape(turn)["tool_calls"] == [call]
    result = {"role": "tool", "tool_call_id": turn["tool_calls"][0]["id"], "content": "Fry them."}
    fake_provider.script(Reply(text='{"dish": "Fries", "vegetable": "potato"}'))
    messages = [*REQUEST["messages"], turn, result]
    second = await model.invoke(**{**REQUEST, "messages": messages})
    assert second.response is not None
    assert second.response.parsed == Dish(dish="Fries", vegetable="potato")
    assert model.backend.provider == provider
    await registry.aclose()


@pytest.mark.parametrize("answering", list(MODELS))
async def test_an_empty_answer_goes_back_to_every_provider(
    answering: str, fake_provider: FakeProvider, trio: list[iModel]
) -> None:
    """An empty answer's to_message() (no text, no tool call) is taken back by every provider:
    not a null content OpenAI refuses, nor an empty turn Anthropic and Gemini refuse."""
    fake_provider.script(Reply(text=""), path=PATHS[answering])
    question = {"role": "user", "content": "Hi"}
    first = await dict(zip(MODELS, trio, strict=True))[answering].invoke(messages=[question])
    turn = first.response.to_message()
    assert turn == {"role": "assistant", "content": ""}
    for model in trio:
        follow_up = [question, turn, {"role": "user", "content": "Go on."}]
        calling = await model.invoke(messages=follow_up)
        assert calling.response.data


@pytest.mark.parametrize("first", ["openai", "anthropic"])
async def test_a_tool_loop_begun_elsewhere_goes_on_on_gemini_3(
    first: str, fake_provider: FakeProvider
) -> None:
    """A function call another provider made carries the stand-in thought signature the
    Gemini docs give, which Gemini 3 requires on a step's first call of the current turn."""
    call = {"name": "get_recipe", "arguments": {"dish": "fries"}}
    fake_provider.script(Reply(tool_calls=[call]), path=PATHS[first])
    async with model_for(first, fake_provider) as model:
        turn = (await model.invoke(**REQUEST)).response.to_message()
    result = {"role": "tool", "tool_call_id": turn["tool_calls"][0]["id"], "content": "Fry."}
    messages = [*REQUEST["messages"], turn, result]
    async with model_on(fake_provider, "gemini", model="gemini-3-flash-preview") as gemini:
        answer = await gemini.invoke(messages=messages, tools=REQUEST["tools"])
    assert answer.response.data
    sent = fake_provider.requests[-1].body["contents"][1]["parts"]
    assert sent[0]["thoughtSignature"] == "skip_thought_signature_validator"
