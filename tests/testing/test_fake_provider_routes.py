"""FakeProvider's Responses, embeddings and token-counting routes, spoken to with raw aiohttp."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import aiohttp
import pytest

from lionpride.testing import FakeProvider, Reply
from lionpride.testing._plan import split_sse_events
from lionpride.testing._routes import GEMINI_BATCH_CAP, OPENAI_EMBED_CAP

FORCED_TOOL = {
    "type": "function",
    "name": "get_capital",
    "parameters": {
        "type": "object",
        "properties": {"country": {"type": "string"}, "rank": {"type": "integer"}},
        "required": ["country", "rank"],
    },
}


async def post(
    fp: FakeProvider, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """POST ``body`` to ``path``; return status, content type and body text."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(fp.url + path, json=body, headers=headers) as resp,
    ):
        return resp.status, resp.content_type, await resp.text()


def events(text: str) -> list[dict[str, Any]]:
    """The data objects of an SSE body, each checked against its ``event:`` line."""
    out = []
    for raw in split_sse_events(text):
        lines = dict(line.split(": ", 1) for line in raw.strip().splitlines())
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        out.append(data)
    return out


async def test_responses_plain_carries_reasoning_with_summary_and_encrypted_content(
    fake_provider: FakeProvider,
) -> None:
    """A reasoning request gets a reasoning item (summary, encrypted content) before the text."""
    body = {
        "model": "gpt-5",
        "input": "Hi",
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
    }
    status, _, text = await post(fake_provider, "/v1/responses", body)
    reply = json.loads(text)
    assert status == 200 and reply["status"] == "completed"
    kinds = [item["type"] for item in reply["output"]]
    assert kinds == ["reasoning", "message"]
    reasoning = reply["output"][0]
    assert reasoning["summary"][0]["type"] == "summary_text"
    assert reasoning["encrypted_content"]
    assert reply["usage"]["output_tokens_details"]["reasoning_tokens"] > 0


async def test_responses_stream_is_typed_events_ending_in_completed(
    fake_provider: FakeProvider,
) -> None:
    """A streamed reply is numbered typed events whose deltas join to the final text."""
    body = {"model": "gpt-4o", "input": "Hi", "stream": True}
    status, kind, text = await post(fake_provider, "/v1/responses", body)
    assert status == 200 and kind == "text/event-stream"
    data = events(text)
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert data[0]["type"] == "response.created" and data[0]["response"]["usage"] is None
    assert data[-1]["type"] == "response.completed"
    joined = "".join(d["delta"] for d in data if d["type"] == "response.output_text.delta")
    final = data[-1]["response"]["output"][0]["content"][0]["text"]
    assert joined == final and joined
    assert "[DONE]" not in text


async def test_responses_stream_summary_comes_in_a_summary_part(
    fake_provider: FakeProvider,
) -> None:
    """Summary text deltas sit inside reasoning_summary_part added and done, as OpenAI sends."""
    reasoning = {"effort": "low", "summary": "auto"}
    body = {"model": "gpt-5", "input": "Hi", "stream": True, "reasoning": reasoning}
    _, _, text = await post(fake_provider, "/v1/responses", body)
    kinds = [d["type"] for d in events(text) if "reasoning_summary" in d["type"]]
    assert kinds == [
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ]


async def test_responses_forced_tool_gets_a_call_fitting_the_schema(
    fake_provider: FakeProvider,
) -> None:
    """tool_choice naming a function gets a function_call whose arguments fit its schema."""
    body = {
        "model": "gpt-4o",
        "input": "Capital?",
        "tools": [FORCED_TOOL],
        "tool_choice": {"type": "function", "name": "get_capital"},
        "stream": True,
    }
    _, _, text = await post(fake_provider, "/v1/responses", body)
    data = events(text)
    added = [d["item"] for d in data if d["type"] == "response.output_item.added"]
    assert [i["type"] for i in added] == ["function_call"]
    assert added[0]["arguments"] == "" and added[0]["call_id"].startswith("call_")
    joined = "".join(
        d["delta"] for d in data if d["type"] == "response.function_call_arguments.delta"
    )
    arguments = json.loads(joined)
    assert isinstance(arguments["country"], str) and isinstance(arguments["rank"], int)


async def test_responses_scripted_calls_and_output_limit(fake_provider: FakeProvider) -> None:
    """Scripted calls are answered as function_call items; max_output_tokens cuts the text."""
    fake_provider.script(Reply(tool_calls=[{"name": "f", "arguments": {"x": 1}}]))
    _, _, text = await post(fake_provider, "/v1/responses", {"model": "m", "input": "a"})
    item = json.loads(text)["output"][0]
    assert item["type"] == "function_call" and json.loads(item["arguments"]) == {"x": 1}
    body = {"model": "m", "input": "a", "max_output_tokens": 2}
    _, _, text = await post(fake_provider, "/v1/responses", body)
    reply = json.loads(text)
    assert reply["status"] == "incomplete"
    assert reply["incomplete_details"] == {"reason": "max_output_tokens"}
    assert len(reply["output"][0]["content"][0]["text"].split()) == 2


async def test_responses_json_schema_format_answers_fitting_json(
    fake_provider: FakeProvider,
) -> None:
    """A text.format json_schema request is answered with JSON holding the required keys."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    body = {
        "model": "m",
        "input": "a",
        "text": {"format": {"type": "json_schema", "name": "c", "schema": schema}},
    }
    _, _, text = await post(fake_provider, "/v1/responses", body)
    answer = json.loads(json.loads(text)["output"][0]["content"][0]["text"])
    assert set(answer) == {"city"}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"input": "a"}, "model"),
        (
            {
                "model": "m",
                "input": [{"type": "function_call_output", "call_id": "c1", "output": ""}],
            },
            "c1",
        ),
        ({"model": "m", "input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "rs_1"),
    ],
)
async def test_responses_refuses_what_the_live_api_refuses(
    fake_provider: FakeProvider, body: dict[str, Any], needle: str
) -> None:
    """Missing model, an output for no call, a trailing reasoning item: OpenAI's 400 shape."""
    status, _, text = await post(fake_provider, "/v1/responses", body)
    error = json.loads(text)["error"]
    assert status == 400 and needle in error["message"]
    assert error["type"] == "invalid_request_error"


OPEN = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": OPEN}}]},
            "Missing required parameter: 'tools[0].name'.",
        ),
        (
            {"tools": [{"type": "function", "name": "f", "parameters": OPEN, "strict": True}]},
            "In context=(), 'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
            "Invalid value: 'text'. Supported values are: 'input_text',",
        ),
    ],
)
async def test_responses_refuses_chat_shapes(
    fake_provider: FakeProvider, body: dict[str, Any], needle: str
) -> None:
    """A nested chat tool, a strict tool with an open schema, a chat text part: OpenAI's 400."""
    status, _, text = await post(
        fake_provider, "/v1/responses", {"model": "m", "input": "hi", **body}
    )
    assert status == 400 and needle in json.loads(text)["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "name"),
    [
        ("/v1/responses", {"model": "m", "input": "hi", "max_tokens": 5}, "max_tokens"),
        ("/v1/responses", {"model": "m", "input": "hi", "presence_penalty": 1}, "presence_penalty"),
        ("/v1/responses/input_tokens", {"model": "m", "input": "hi", "store": False}, "store"),
        ("/v1/embeddings", {"model": "m", "input": "hi", "task_type": "x"}, "task_type"),
    ],
)
async def test_unknown_parameter_is_openais_400(
    fake_provider: FakeProvider, path: str, body: dict[str, Any], name: str
) -> None:
    """A field the route does not take gets OpenAI's unknown_parameter 400 naming it."""
    status, _, text = await post(fake_provider, path, body)
    assert status == 400
    assert json.loads(text)["error"] == {
        "message": f"Unknown parameter: '{name}'.",
        "type": "invalid_request_error",
        "param": name,
        "code": "unknown_parameter",
    }


@pytest.mark.parametrize("name", ["max_tokens", "temperature", "stream"])
async def test_anthropic_count_refuses_generation_settings(
    fake_provider: FakeProvider, name: str
) -> None:
    """A field count_tokens does not take is Anthropic's 400 naming it."""
    body = {"model": "c", "messages": [{"role": "user", "content": "hi"}], name: 1}
    status, _, text = await post(fake_provider, "/v1/messages/count_tokens", body)
    error = json.loads(text)["error"]
    assert status == 400 and error["type"] == "invalid_request_error"
    assert error["message"] == f"{name}: Extra inputs are not permitted"


async def test_embeddings_refuse_an_unknown_encoding(fake_provider: FakeProvider) -> None:
    """An encoding_format other than float or base64 is OpenAI's invalid_value 400."""
    body = {"model": "m", "input": "hi", "encoding_format": "int8"}
    status, _, text = await post(fake_provider, "/v1/embeddings", body)
    assert status == 400
    assert json.loads(text)["error"] == {
        "message": "Invalid value: 'int8'. Supported values are: 'float' and 'base64'.",
        "type": "invalid_request_error",
        "param": "encoding_format",
        "code": "invalid_value",
    }


async def test_openai_embeddings_are_deterministic_and_base64_matches_floats(
    fake_provider: FakeProvider,
) -> None:
    """Equal texts get equal vectors; base64 float32 decodes to the JSON floats, in order."""
    body: dict[str, Any] = {"model": "e", "input": ["a", "b", "a"], "dimensions": 8}
    _, _, text = await post(fake_provider, "/v1/embeddings", body)
    reply = json.loads(text)
    floats = [d["embedding"] for d in sorted(reply["data"], key=lambda d: d["index"])]
    assert floats[0] == floats[2] != floats[1] and len(floats[0]) == 8
    assert reply["usage"]["prompt_tokens"] == 3
    _, _, text = await post(fake_provider, "/v1/embeddings", {**body, "encoding_format": "base64"})
    decoded = [
        list(struct.unpack("<8f", base64.b64decode(d["embedding"])))
        for d in json.loads(text)["data"]
    ]
    assert decoded == floats


async def test_embedding_caps_are_refused_in_each_shape(fake_provider: FakeProvider) -> None:
    """One input over the per-request cap is a 400, OpenAI and Gemini shaped."""
    body = {"model": "e", "input": ["x"] * (OPENAI_EMBED_CAP + 1)}
    status, _, text = await post(fake_provider, "/v1/embeddings", body)
    assert status == 400 and "type" in json.loads(text)["error"]
    many = {"requests": [{"content": {"parts": [{"text": "x"}]}}] * (GEMINI_BATCH_CAP + 1)}
    status, _, text = await post(fake_provider, "/v1beta/models/g:batchEmbedContents", many)
    assert status == 400 and json.loads(text)["error"]["status"] == "INVALID_ARGUMENT"


async def test_gemini_embed_routes_agree_with_each_other(fake_provider: FakeProvider) -> None:
    """embedContent and batchEmbedContents give the same vector for the same text."""
    content = {"parts": [{"text": "hello"}]}
    _, _, one = await post(
        fake_provider, "/v1beta/models/g:embedContent", {"content": content, "taskType": "X"}
    )
    batch = {"requests": [{"model": "models/g", "content": content}]}
    _, _, many = await post(fake_provider, "/v1beta/models/g:batchEmbedContents", batch)
    assert json.loads(one)["embedding"] == json.loads(many)["embeddings"][0]


async def test_count_tokens_routes(fake_provider: FakeProvider) -> None:
    """Anthropic, Gemini and OpenAI count routes answer in their own shapes."""
    text = "x" * 40
    _, _, a = await post(
        fake_provider,
        "/v1/messages/count_tokens",
        {"model": "c", "messages": [{"role": "user", "content": text}]},
    )
    _, _, g = await post(
        fake_provider, "/v1beta/models/g:countTokens", {"contents": [{"parts": [{"text": text}]}]}
    )
    _, _, o = await post(fake_provider, "/v1/responses/input_tokens", {"model": "m", "input": text})
    assert json.loads(a) == {"input_tokens": 10}
    assert json.loads(g)["totalTokens"] == 10
    assert json.loads(o) == {"object": "response.input_tokens", "input_tokens": 10}


async def test_new_routes_are_under_the_provider_limits() -> None:
    """The second embeddings request inside a one-request window is a 429 with retry-after."""
    async with FakeProvider(limit_requests=1, window=60) as fp:
        body = {"model": "e", "input": ["a"]}
        assert (await post(fp, "/v1/embeddings", body))[0] == 200
        status, _, text = await post(fp, "/v1/embeddings", body)
        assert status == 429 and json.loads(text)["error"]["code"] == "rate_limit_exceeded"
        assert fp.count_429 == 1


@pytest.mark.parametrize(
    ("path", "headers", "key"),
    [
        ("/v1beta/models/g:unknownMethod", {}, "status"),
        ("/v1/nothing", {"x-api-key": "k", "anthropic-version": "2023-06-01"}, "type"),
        ("/v1/nothing", {"authorization": "Bearer k"}, "param"),
    ],
)
async def test_unknown_path_is_a_404_in_the_provider_shape(
    fake_provider: FakeProvider, path: str, headers: dict[str, str], key: str
) -> None:
    """Gemini, Anthropic and OpenAI clients each get their own 404 body for an unknown path."""
    status, _, text = await post(fake_provider, path, {}, headers)
    body = json.loads(text)
    assert status == 404 and key in body["error"]
    assert (body.get("type") == "error") is (key == "type")


async def test_scripted_error_on_a_route_has_that_route_shape(fake_provider: FakeProvider) -> None:
    """A scripted 503 on a Gemini embedding route gets Gemini's error body."""
    fake_provider.script(Reply(status=503))
    status, _, text = await post(
        fake_provider, "/v1beta/models/g:batchEmbedContents", {"requests": []}
    )
    assert status == 503 and json.loads(text)["error"]["status"] == "UNAVAILABLE"
