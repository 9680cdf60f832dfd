"""``response_format=MyModel``: the answer validated into the model, on every provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from tests.conftest import model_on

from lionpride import errors
from lionpride.services.imodel import iModel
from lionpride.services.types.hook import HookPhase, HookRegistry
from lionpride.services.types.response import NormalizedResponse
from lionpride.testing import FakeProvider, Reply

PROVIDERS = ["openai", "anthropic", "gemini"]
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}


def fake_model(fp: FakeProvider, provider: str) -> iModel:
    """An iModel for ``provider`` on the FakeProvider, without retries."""
    return model_on(fp, provider, model=MODELS[provider], retry_config=None)


class City(BaseModel):
    """A city and its country."""

    name: str
    country: str


ASK = [{"role": "user", "content": "The largest city in Mexico?"}]
GOOD = json.dumps({"name": "Mexico City", "country": "Mexico"})


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parsed_is_the_validated_model(provider: str, fake_provider: FakeProvider) -> None:
    """The final text is validated into the response_format class."""
    fake_provider.script(Reply(text=GOOD))
    async with model_on(
        fake_provider, provider, model=MODELS[provider], retry_config=None
    ) as model:
        calling = await model.invoke(messages=ASK, response_format=City)
    assert calling.response is not None
    assert calling.response.parsed == City(name="Mexico City", country="Mexico")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_answer_that_does_not_fit_raises_with_the_text(
    provider: str, fake_provider: FakeProvider
) -> None:
    """JSON that does not validate raises OutputValidationError carrying text and reason."""
    bad = json.dumps({"name": "Mexico City"})
    fake_provider.script(Reply(text=bad))
    async with model_on(
        fake_provider, provider, model=MODELS[provider], retry_config=None
    ) as model:
        with pytest.raises(errors.OutputValidationError) as caught:
            await model.invoke(messages=ASK, response_format=City)
    assert caught.value.text == bad
    assert "country" in caught.value.validation_message
    assert caught.value.calling is not None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stream_validates_at_its_final_chunk(
    provider: str, fake_provider: FakeProvider
) -> None:
    """A stream's final response carries parsed; a misfit fails the stream at its end."""
    fake_provider.script(Reply(text=GOOD), Reply(text="not json"))
    async with model_on(
        fake_provider, provider, model=MODELS[provider], retry_config=None
    ) as model:
        chunks = [c async for c in model.invoke_stream(messages=ASK, response_format=City)]
        final = chunks[-1].response
        assert final is not None and final.parsed == City(name="Mexico City", country="Mexico")
        with pytest.raises(errors.OutputValidationError):
            async for _ in model.invoke_stream(messages=ASK, response_format=City):
                pass


async def test_a_tool_call_turn_is_not_parsed(fake_provider: FakeProvider) -> None:
    """A turn of a tool loop (it calls tools) leaves parsed empty instead of failing."""
    fake_provider.script(Reply(tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}]))
    async with model_on(
        fake_provider, "openai", model=MODELS["openai"], retry_config=None
    ) as model:
        calling = await model.invoke(messages=ASK, response_format=City)
    assert calling.response is not None
    assert calling.response.parsed is None and calling.response.tool_calls


def test_parsed_is_typed_as_the_model(tmp_path: Path) -> None:
    """mypy sees ``calling.response.parsed`` as the response_format class."""
    api = pytest.importorskip("mypy.api")
    source = tmp_path / "typed.py"
    source.write_text(
        "from pydantic import BaseModel\n"
        "from lionpride.services import iModel\n"
        "class City(BaseModel):\n"
        "    name: str\n"
        "async def main(model: iModel) -> None:\n"
        "    calling = await model.invoke(messages=[], response_format=City)\n"
        "    assert calling.response is not None\n"
        "    reveal_type(calling.response.parsed)\n"
    )
    out, err, _ = api.run(["--strict", "--no-incremental", str(source)])
    assert "typed.City | None" in out, out + err


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_model_without_structured_output_answers_through_a_tool(
    stream: bool, fake_provider: FakeProvider
) -> None:
    """An older Claude is made to call the structured-output tool; its input is the answer's
    text (streamed as text, not as tool-call deltas) and validates into the model."""
    answer = {"name": "Mexico City", "country": "Mexico"}
    fake_provider.script(
        Reply(tool_calls=[{"name": "lionpride_structured_output", "arguments": answer}])
    )
    request = {"model": "claude-3-7-sonnet-latest", "messages": ASK, "response_format": City}
    async with fake_model(fake_provider, "anthropic") as model:
        if stream:
            chunks = [c async for c in model.invoke_stream(**request)]
            assert not any(c.tool_call_delta for c in chunks)
            assert '"Mexico City"' in "".join(c.content for c in chunks)
            response = chunks[-1].response
        else:
            response = (await model.invoke(**request)).response
    sent = fake_provider.requests[-1].body
    assert sent["tool_choice"] == {"type": "tool", "name": "lionpride_structured_output"}
    assert response is not None and response.tool_calls == []
    assert response.parsed == City(**answer)


@pytest.mark.parametrize("streaming", [False, True])
async def test_error_hooks_see_a_misfit_and_their_answer_is_validated(
    streaming: bool, fake_provider: FakeProvider
) -> None:
    """An answer that does not validate reaches the ErrorHandling hooks in a call as in a
    stream, and the response a hook gives back is validated into parsed in both."""
    seen: list[BaseException] = []

    def repair(event: object, **kw: Any) -> NormalizedResponse:
        seen.append(kw["error"])
        return NormalizedResponse(data=GOOD)

    fake_provider.script(Reply(text="```json\nnot quite```"))
    hooks = HookRegistry({HookPhase.ErrorHandling: repair})
    async with model_on(
        fake_provider, "openai", model=MODELS["openai"], retry_config=None, hook_registry=hooks
    ) as model:
        if streaming:
            chunks = [c async for c in model.invoke_stream(messages=ASK, response_format=City)]
            response = chunks[-1].response
        else:
            response = (await model.invoke(messages=ASK, response_format=City)).response
    assert [type(error) for error in seen] == [errors.OutputValidationError]
    assert response is not None
    assert response.parsed == City(name="Mexico City", country="Mexico")
