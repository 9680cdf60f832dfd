"""The Responses endpoint against FakeProvider: translation, state replay, streams, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr
from tests.providers._api_wire import fake_model

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.providers.oai_responses import OAIResponsesEndpoint
from lionpride.testing import FakeProvider, Reply

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

REASONING_ITEM = {
    "id": "rs_1",
    "type": "reasoning",
    "summary": [],
    "encrypted_content": "gAAAAenc",
}


def model_for(fp: FakeProvider, **kwargs: Any) -> iModel:
    """A Responses model on the FakeProvider, retries off unless given."""
    return fake_model(fp, "openai", "responses", model="gpt-5", **kwargs)


def test_provider_and_compatible_names_reach_the_responses_endpoint() -> None:
    """openai and any OpenAI-compatible name with base_url build an OAIResponsesEndpoint."""
    built = iModel(provider="openai", endpoint="responses", api_key=SecretStr("k"))
    assert isinstance(built.backend, OAIResponsesEndpoint)
    assert built.backend.config.full_url == "https://api.openai.com/v1/responses"
    with pytest.warns(UserWarning):
        other = iModel(provider="myserver", endpoint="responses", base_url="http://h/v1")
    assert isinstance(other.backend, OAIResponsesEndpoint)
    assert other.backend.config.full_url == "http://h/v1/responses"


async def test_canonical_request_is_translated(fake_provider: FakeProvider) -> None:
    """System, images, files, tool history, tools, formats and limits map to Responses fields."""
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:x"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    async with model_for(fake_provider) as model:
        calling = await model.invoke(
            messages=messages,
            tools=[WEATHER],
            tool_choice="auto",
            max_tokens=50,
            reasoning_effort="low",
            response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        )
    sent = fake_provider.requests[-1].body
    assert sent["instructions"] == "Be brief."
    assert sent["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Look:"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
                {"type": "input_file", "file_data": "data:x", "filename": "a.pdf"},
            ],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    assert sent["tools"] == [{"type": "function", **WEATHER["function"], "strict": False}]
    assert sent["max_output_tokens"] == 50
    assert sent["reasoning"] == {"effort": "low"}
    assert sent["text"] == {"format": {"type": "json_schema", "name": "r", "schema": schema}}
    assert "messages" not in sent and "max_tokens" not in sent
    assert json.loads(calling.response.data) == {"a": "example"}


@pytest.mark.parametrize(
    "name", ["stop", "seed", "logit_bias", "presence_penalty", "frequency_penalty"]
)
async def test_parameter_without_equivalent_is_named(
    fake_provider: FakeProvider, name: str
) -> None:
    """A canonical parameter the Responses API lacks is a ValidationError naming it."""
    async with model_for(fake_provider) as model:
        with pytest.raises(errors.ValidationError, match=repr(name)):
            await model.invoke(messages=[{"role": "user", "content": "hi"}], **{name: 1})
    assert fake_provider.requests == []


async def test_chat_tools_keep_their_strictness(fake_provider: FakeProvider) -> None:
    """A chat tool without strict is sent non-strict (the Responses default is strict)."""
    closed = {**WEATHER["function"]["parameters"], "additionalProperties": False}
    strict_fn = {**WEATHER["function"], "parameters": closed, "strict": True}
    strict = {"type": "function", "function": strict_fn}
    async with model_for(fake_provider) as model:
        await model.invoke(messages=[{"role": "user", "content": "hi"}], tools=[WEATHER, strict])
    assert [tool["strict"] for tool in fake_provider.requests[-1].body["tools"]] == [False, True]


async def test_native_request_passes_through_unchanged(fake_provider: FakeProvider) -> None:
    """A native request (input items, built-in tools) is sent as given."""
    body = {
        "input": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "web_search"}],
        "include": ["reasoning.encrypted_content"],
        "store": False,
    }
    async with model_for(fake_provider) as model:
        await model.invoke(**body)
    assert fake_provider.requests[-1].body == {"model": "gpt-5", **body}


async def test_canonical_defaults_of_the_model_go_with_a_native_request(
    fake_provider: FakeProvider,
) -> None:
    """A model made with max_tokens and reasoning_effort sends them under their Responses
    names with a native input too, instead of refusing max_tokens as unknown."""
    async with model_for(fake_provider, max_tokens=100, reasoning_effort="low") as model:
        await model.invoke(input="hi")
    assert fake_provider.requests[-1].body == {
        "model": "gpt-5",
        "input": "hi",
        "max_output_tokens": 100,
        "reasoning": {"effort": "low"},
    }


async def test_tool_loop_with_reasoning_replay(fake_provider: FakeProvider) -> None:
    """A forced call's reasoning items are replayed before the call, then the tool result."""
    first_turn = [{"role": "user", "content": "Weather in Paris?"}]
    async with model_for(fake_provider) as model:
        first = await model.invoke(
            messages=first_turn,
            tools=[WEATHER],
            tool_choice="required",
            reasoning_effort="low",
            store=False,
            include=["reasoning.encrypted_content"],
        )
        response = first.response
        assert response.finish_reason == "tool_calls"
        (call,) = response.tool_calls
        assert call.id.startswith("call_") and set(call.arguments) == {"city"}
        state = response.metadata["provider_state"]
        assert state["items"][0]["encrypted_content"]
        assistant = {
            "role": "assistant",
            "content": response.data or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
            ],
            "provider_state": state,
        }
        tool = {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
        second = await model.invoke(
            messages=[*first_turn, assistant, tool], tools=[WEATHER], store=False
        )
    assert second.response.finish_reason == "stop"
    sent = fake_provider.requests[-1].body["input"]
    assert [i.get("type", "message") for i in sent] == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
    ]
    assert sent[1] == state["items"][0]
    assert "provider_state" not in json.dumps(sent)


async def test_other_provider_state_is_dropped(fake_provider: FakeProvider) -> None:
    """State of another provider (or the key itself) never reaches the wire."""
    messages = [
        {"role": "user", "content": "a"},
        {
            "role": "assistant",
            "content": "b",
            "provider_state": {"provider": "anthropic", "items": [REASONING_ITEM]},
        },
        {"role": "user", "content": "c"},
    ]
    async with model_for(fake_provider) as model:
        await model.invoke(messages=messages)
    sent = fake_provider.requests[-1].body["input"]
    assert sent == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]


async def test_stream_yields_text_and_call_deltas(fake_provider: FakeProvider) -> None:
    """Text deltas, then call fragments with the call_id; the final response has both."""
    fake_provider.script(Reply(text="On it.", tool_calls=[{"name": "f", "arguments": {"x": 1}}]))
    async with model_for(fake_provider) as model:
        chunks = [c async for c in model.invoke_stream(input="go")]
    *deltas, final = chunks
    assert "".join(c.content for c in deltas) == "On it."
    fragments = [c.tool_call_delta for c in deltas if c.tool_call_delta]
    assert {f["id"] for f in fragments} == {final.response.tool_calls[0].id}
    assert json.loads("".join(f["arguments"] for f in fragments)) == {"x": 1}
    assert final.response.data == "On it." and final.response.finish_reason == "tool_calls"
    assert fake_provider.requests[-1].body["stream"] is True


async def test_chat_stream_options_ask_no_usage(fake_provider: FakeProvider) -> None:
    """A chat include_usage is not sent (the Responses API refuses it); usage still comes."""
    async with model_for(fake_provider) as model:
        messages = [{"role": "user", "content": "hi"}]
        request = {"messages": messages, "stream_options": {"include_usage": True}}
        chunks = [c async for c in model.invoke_stream(**request)]
    assert "stream_options" not in fake_provider.requests[-1].body
    assert chunks[-1].response.usage.input_tokens > 0


async def test_stream_reasoning_summary_and_incomplete(fake_provider: FakeProvider) -> None:
    """Reasoning summary deltas come as reasoning; a cut answer finishes with length."""
    async with model_for(fake_provider) as model:
        chunks = [
            c
            async for c in model.invoke_stream(
                input="go", reasoning={"effort": "low", "summary": "auto"}, max_output_tokens=2
            )
        ]
    response = chunks[-1].response
    assert "".join(c.reasoning for c in chunks) == response.metadata["reasoning"]
    assert response.finish_reason == "length"
    assert response.usage.reasoning_tokens > 0


async def test_stream_cut_before_content_is_retried(fake_provider: FakeProvider) -> None:
    """A stream that ends after response.created (no content yet) is tried again."""
    async with model_for(fake_provider, retry_config={"max_retries": 1}) as model:
        fake_provider.script(
            Reply(
                chunks=[
                    b'event: response.created\ndata: {"type":"response.created","response":{}}\n\n'
                ]
            )
        )
        chunks = [c async for c in model.invoke_stream(input="go")]
    assert chunks[-1].response.data
    assert len(fake_provider.requests) == 2


async def test_error_event_raises_typed_error(fake_provider: FakeProvider) -> None:
    """An error event inside the 200 stream raises the typed error with its message."""
    event = {"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None}
    body = f"event: error\ndata: {json.dumps(event)}\n\n"
    fake_provider.script(Reply(chunks=[body]))
    async with model_for(fake_provider) as model:
        with pytest.raises(errors.RateLimitError, match="slow down"):
            async for _ in model.invoke_stream(input="go"):
                pass


async def test_failed_response_raises(fake_provider: FakeProvider) -> None:
    """A response with status failed raises a ServerError carrying its message."""
    body = {"status": "failed", "error": {"code": "server_error", "message": "boom"}, "output": []}
    fake_provider.script(Reply(body=body))
    async with model_for(fake_provider) as model:
        with pytest.raises(errors.ServerError, match="boom"):
            await model.invoke(input="go")


@pytest.mark.parametrize("stream", [False, True])
async def test_failed_for_the_request_is_not_retried(
    fake_provider: FakeProvider, stream: bool
) -> None:
    """A response failed over its input (image_too_large) is a BadRequestError, sent once."""
    error = {"code": "image_too_large", "message": "Image too large"}
    failed = {"id": "resp_1", "status": "failed", "error": error, "output": []}
    if stream:
        event = json.dumps({"type": "response.failed", "response": failed})
        fake_provider.script(Reply(chunks=[f"event: response.failed\ndata: {event}\n\n"]))
    else:
        fake_provider.script(Reply(body=failed))
    async with model_for(fake_provider, retry_config={"max_retries": 2}) as model:
        with pytest.raises(errors.BadRequestError, match="Image too large"):
            if stream:
                async for _ in model.invoke_stream(input="go"):
                    pass
            else:
                await model.invoke(input="go")
    assert len(fake_provider.requests) == 1


async def test_unknown_model_400_is_not_found(fake_provider: FakeProvider) -> None:
    """The Responses API's 400 model_not_found is raised as NotFoundError, status kept."""
    error = {
        "error": {
            "message": "The requested model 'nope' does not exist.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    fake_provider.script(Reply(status=400, body=error))
    async with model_for(fake_provider) as model:
        with pytest.raises(errors.NotFoundError, match="nope") as caught:
            await model.invoke(input="go", model="nope")
    assert caught.value.status_code == 400


async def test_responses_model_call_is_priced(fake_provider: FakeProvider) -> None:
    """A Responses-only model has a price: the call's cost is its tokens at that price."""
    usage = {
        "input_tokens": 1000,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 100,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 1100,
    }
    fake_provider.script(Reply(usage=usage))
    async with model_for(fake_provider) as model:
        calling = await model.invoke(input="go", model="o3-pro")
    assert calling.cost == pytest.approx((1000 * 20.0 + 100 * 80.0) / 1e6)


async def test_token_reservation_counts_instructions_and_input(
    fake_provider: FakeProvider,
) -> None:
    """The limit's estimate covers instructions and input; the budget is max_output_tokens."""
    async with model_for(fake_provider, limit_tokens=100_000) as model:
        short = await model.create_calling(input="hi", max_output_tokens=10)
        long = await model.create_calling(
            input="hi", instructions="word " * 400, max_output_tokens=10
        )
    assert short.reserved_tokens < 20
    assert long.reserved_tokens > short.reserved_tokens + 300


class City(BaseModel):
    """A structured answer for the Responses endpoint."""

    name: str
    population: int


def get_time(zone: str) -> str:
    """The time in a zone."""
    return "12:00"


async def test_common_step_feeds_the_responses_translation(fake_provider: FakeProvider) -> None:
    """A function as a tool and a pydantic response_format reach the Responses wire as plain
    dicts, and the answer comes back validated in ``parsed``."""
    async with model_for(fake_provider) as gpt:
        calling = await gpt.invoke(
            messages=[{"role": "user", "content": "A city?"}],
            tools=[get_time],
            response_format=City,
        )
    body = fake_provider.requests[-1].body
    assert body["tools"][0]["type"] == "function" and body["tools"][0]["name"] == "get_time"
    assert body["text"]["format"]["type"] == "json_schema"
    assert body["text"]["format"]["schema"]["required"] == ["name", "population"]
    assert isinstance(calling.response.parsed, City)


async def test_to_message_replays_reasoning_to_the_responses_endpoint(
    fake_provider: FakeProvider,
) -> None:
    """``to_message()`` of a Responses answer carries its reasoning items, which the next
    Responses request replays, and a chat-completions model never sees them."""
    async with model_for(fake_provider) as gpt:
        first = await gpt.invoke(
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER],
            tool_choice="required",
            reasoning_effort="low",
            store=False,
            include=["reasoning.encrypted_content"],
        )
        message = first.response.to_message()
        assert message["provider_state"]["provider"] == "openai_responses"
        call = message["tool_calls"][0]
        follow = [
            {"role": "user", "content": "Weather in Paris?"},
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "Sunny"},
        ]
        await gpt.invoke(messages=follow, tools=[WEATHER], store=False)
    kinds = [item.get("type", "message") for item in fake_provider.requests[-1].body["input"]]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output"]
    async with fake_model(fake_provider, "openai", "chat/completions", model="gpt-5") as chat:
        await chat.invoke(messages=follow, tools=[WEATHER])
    sent = fake_provider.requests[-1].body["messages"][1]
    assert "provider_state" not in sent and sent["tool_calls"][0]["id"] == call["id"]


async def test_token_reservation_counts_tool_results(fake_provider: FakeProvider) -> None:
    """A tool result (a function_call_output's output) is reserved like any prompt text."""
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    result = {"type": "function_call_output", "call_id": "c1", "output": "word " * 400}
    async with model_for(fake_provider, limit_tokens=100_000) as model:
        calling = await model.create_calling(input=[call, result], max_output_tokens=10)
    assert calling.reserved_tokens > 400
