"""OpenAI-compatible streams ask for usage (``stream_options.include_usage``), against
FakeProvider, which sends the usage chunk only when asked."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from pydantic import SecretStr
from tests.conftest import wire_records
from tests.services.test_wire_replay import request_for

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.observability import PriceTable
from lionpride.services.providers.oai_chat import OAIChatEndpoint
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.response import NormalizedResponse
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Name three rivers in Europe, please."}]
INCLUDE_USAGE = {"include_usage": True}


def compatible(fp: FakeProvider, provider: str = "vllm", **kwargs: Any) -> iModel:
    """An iModel for an OpenAI-compatible server that is not ``openai``, on FakeProvider."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an unknown name with base_url warns
        return iModel(
            provider=provider,
            base_url=fp.base_url(provider),
            api_key=kwargs.pop("api_key", SecretStr("k")),
            retry_config=None,
            **kwargs,
        )


async def final_response(model: iModel, **request: Any) -> NormalizedResponse:
    """Stream ``request`` to the end and return the assembled response."""
    chunks: list[StreamChunk] = [
        chunk async for chunk in model.invoke_stream(model="m", messages=MESSAGES, **request)
    ]
    response = chunks[-1].response
    assert chunks[-1].is_final and response is not None
    return response


@pytest.mark.parametrize("provider", ["groq", "openrouter", "nvidia_nim", "vllm"])
async def test_compatible_stream_asks_for_usage_and_gets_it(
    provider: str, fake_provider: FakeProvider
) -> None:
    """A stream from a non-``openai`` OpenAI-compatible provider sends include_usage and
    ends with the server's usage."""
    async with compatible(fake_provider, provider) as model:
        response = await final_response(model)
    sent = fake_provider.requests[-1].body
    assert sent["stream"] is True and sent["stream_options"] == INCLUDE_USAGE
    words = len(response.data.split())
    assert response.usage is not None
    assert response.usage.output_tokens == words > 0
    assert response.usage.total_tokens == response.usage.input_tokens + words
    assert response.metadata["usage"]["completion_tokens"] == words


async def test_stream_usage_gives_a_cost_and_settles_the_reservation_at_real_usage(
    fake_provider: FakeProvider,
) -> None:
    """With usage, the call is priced and the token bucket is charged the real count,
    not the prompt estimate plus ``max_tokens``."""
    prices = PriceTable()
    prices.register_price("m", input=1.0, output=2.0)
    async with compatible(
        fake_provider, limit_tokens=50_000, capacity_refresh_time=1e6, prices=prices
    ) as model:
        calling = await model.create_calling(
            streaming=True, model="m", messages=MESSAGES, max_tokens=2_000
        )
        async for _ in model.invoke_stream(calling):
            pass
        assert model.executor is not None
        tokens_left = model.executor.limiter.levels["tokens"]
    usage = calling.usage
    assert usage is not None and calling.reserved_tokens > 2_000 > usage.total_tokens
    assert calling.cost == prices.cost("m", usage) and calling.cost is not None
    assert tokens_left == pytest.approx(50_000 - usage.total_tokens, abs=1)


async def test_stream_usage_false_omits_stream_options(fake_provider: FakeProvider) -> None:
    """The opt-out sends no stream_options, and the server then sends no usage."""
    async with compatible(fake_provider, stream_usage=False) as model:
        response = await final_response(model)
    assert "stream_options" not in fake_provider.requests[-1].body
    assert response.data and response.usage is None


async def test_stream_usage_false_applies_to_openai_too(fake_provider: FakeProvider) -> None:
    """``openai`` follows the same setting: off means no stream_options."""
    async with compatible(fake_provider, "openai", stream_usage=False) as model:
        await final_response(model)
    assert "stream_options" not in fake_provider.requests[-1].body


@pytest.mark.parametrize(
    "request_options",
    [
        {"stream_options": {"include_usage": False}},
        {"stream_options": {"include_usage": True, "continuous_usage_stats": True}},
        {"extra_body": {"stream_options": {"include_usage": False}}},
    ],
    ids=["own_false", "own_extra_key", "in_extra_body"],
)
async def test_callers_stream_options_are_sent_unchanged(
    request_options: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """A caller's own stream_options (as a parameter or in extra_body) is never replaced."""
    own = (request_options.get("extra_body") or request_options)["stream_options"]
    async with compatible(fake_provider) as model:
        response = await final_response(model, **request_options)
    assert fake_provider.requests[-1].body["stream_options"] == own
    assert (response.usage is not None) is own["include_usage"]


async def test_plain_calls_never_carry_stream_options(fake_provider: FakeProvider) -> None:
    """Only streams ask for the usage chunk; a plain call's body is untouched."""
    async with compatible(fake_provider) as model:
        await model.invoke(model="m", messages=MESSAGES)
    assert "stream_options" not in fake_provider.requests[-1].body


@pytest.mark.parametrize("stream_usage", [True, False])
async def test_stream_usage_survives_to_dict_and_from_dict(
    stream_usage: bool, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setting is serialized, restored, and the restored model streams accordingly."""
    monkeypatch.setenv("LP_TEST_VLLM_KEY", "k")
    model = compatible(fake_provider, api_key="LP_TEST_VLLM_KEY", stream_usage=stream_usage)
    data = json.loads(json.dumps(model.to_dict()))
    assert data["backend"]["config"]["stream_usage"] is stream_usage
    async with iModel.from_dict(data) as restored:
        assert isinstance(restored.backend, OAIChatEndpoint)
        assert restored.backend.config.stream_usage is stream_usage
        response = await final_response(restored)
    sent = fake_provider.requests[-1].body
    assert ("stream_options" in sent) is stream_usage
    assert (response.usage is not None) is stream_usage


# A server that does not know the option, answering as pydantic-validated servers do.
_REJECTION = {
    "object": "error",
    "message": {
        "detail": [
            {
                "type": "extra_forbidden",
                "loc": ["body", "stream_options"],
                "msg": "Extra inputs are not permitted",
            }
        ]
    },
    "type": "invalid_request_error",
}


async def test_rejected_stream_options_raise_with_a_note_naming_the_opt_out(
    fake_provider: FakeProvider,
) -> None:
    """A 422 naming stream_options keeps the server's message and adds a note that says
    how to turn the option off; with it off the same server streams."""
    fake_provider.script(Reply(status=422, body=_REJECTION))
    async with compatible(fake_provider) as model:
        with pytest.raises(errors.BadRequestError) as info:
            await final_response(model)
    assert info.value.status_code == 422 and "extra_forbidden" in str(info.value)
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 1 and "stream_usage=False" in notes[0]
    async with compatible(fake_provider, stream_usage=False) as model:
        response = await final_response(model)
    assert response.data and "stream_options" not in fake_provider.requests[-1].body


@pytest.mark.parametrize(
    ("body", "request_options"),
    [
        ({"error": {"message": "model 'm' does not exist", "type": "invalid_request_error"}}, {}),
        (_REJECTION, {"stream_options": {"include_usage": True}}),
    ],
    ids=["unrelated_400", "callers_own_option"],
)
async def test_no_note_when_the_added_option_is_not_the_cause(
    body: dict[str, Any], request_options: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """The note appears only for an error that names an option the library added."""
    fake_provider.script(Reply(status=400, body=body))
    async with compatible(fake_provider) as model:
        with pytest.raises(errors.BadRequestError) as info:
            await final_response(model, **request_options)
    assert not getattr(info.value, "__notes__", None)


_COMPATIBLE_STREAMS = [
    p
    for p in wire_records("stream")
    if p.values[0] is None or p.values[0]["provider"] in {"openai", "groq", "openrouter"}
]


@pytest.mark.parametrize("record", _COMPATIBLE_STREAMS)
async def test_recorded_stream_requests_are_rebuilt_with_include_usage(
    record: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """Given a recorded stream request without stream_options, the body sent is the
    recorded one with ``include_usage`` (as OpenAI and OpenRouter were sent; Groq accepts it
    and reports usage either way), and still assembles as the recording's expect says."""
    request = {k: v for k, v in request_for(record).items() if k != "stream_options"}
    fake_provider.script(Reply.from_wire(record))
    async with compatible(fake_provider, record["provider"]) as model:
        if record["kind"] == "stream_error":
            with pytest.raises(errors.APIStatusError):
                async for _ in model.invoke_stream(**request):
                    pass
        else:
            chunks = [chunk async for chunk in model.invoke_stream(**request)]
            response = chunks[-1].response
            assert response is not None and response.data == record["expect"]["text"]
            assert response.metadata["native_finish_reason"] == record["expect"]["finish_reason"]
            assert (response.usage is None) is (record["expect"]["usage"] is None)
    assert fake_provider.requests[-1].body == {**request, "stream_options": INCLUDE_USAGE}
