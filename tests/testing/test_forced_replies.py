"""Unscripted, FakeProvider calls a forced tool and answers structured output with fitting JSON."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import pytest

from lionpride.testing import FakeProvider, Reply

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "where": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
            "required": ["lat", "lon"],
        },
    },
    "required": ["city", "unit", "where"],
    "additionalProperties": False,
}
TIME = {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}
CITY = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "population": {"type": "integer", "minimum": 1000},
        "districts": {"type": "array", "items": {"type": "string"}, "minItems": 2},
    },
    "required": ["city", "population", "districts"],
}
ASK = [{"role": "user", "content": "Weather in Paris, as json?"}]


@pytest.fixture
async def fp() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as provider:
        yield provider


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post_json(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    """POST ``body`` and return the JSON reply of a 200."""
    async with session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def post_events(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> list[Any]:
    """POST ``body`` and return the JSON data of each SSE event."""
    async with session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        raw = (await resp.read()).decode().replace("\r\n", "\n")
    events = []
    for line in raw.split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line.removeprefix("data: ")))
    return events


CITY_FORMAT = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}}


def openai_body(**fields: Any) -> dict[str, Any]:
    """An OpenAI request asking about the weather, with ``fields`` added."""
    return {"model": "gpt-test", "messages": ASK, **fields}


def chat_url(fp: FakeProvider) -> str:
    """The OpenAI chat completions URL of ``fp``."""
    return fp.base_url("openai") + "/chat/completions"


def anthropic_body(**fields: Any) -> dict[str, Any]:
    """An Anthropic request asking about the weather, with ``fields`` added."""
    return {"model": "claude-test", "max_tokens": 1024, "messages": ASK, **fields}


def openai_tools() -> list[dict[str, Any]]:
    """Two OpenAI function tools, weather first."""
    return [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
        {"type": "function", "function": {"name": "get_time", "parameters": TIME}},
    ]


def anthropic_tools() -> list[dict[str, Any]]:
    """Two Anthropic tools, weather first."""
    return [
        {"name": "get_weather", "input_schema": WEATHER},
        {"name": "get_time", "input_schema": TIME},
    ]


def gemini_tools(key: str = "parametersJsonSchema") -> list[dict[str, Any]]:
    """Two Gemini function declarations, weather first, with schemas under ``key``."""
    return [
        {
            "functionDeclarations": [
                {"name": "get_weather", key: WEATHER},
                {"name": "get_time", key: TIME},
            ]
        }
    ]


# -- forced tools -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "name", "schema"),
    [
        ("required", "get_weather", WEATHER),
        ({"type": "function", "function": {"name": "get_time"}}, "get_time", TIME),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "get_time"}}],
                },
            },
            "get_time",
            TIME,
        ),
    ],
)
async def test_openai_forced_tool_is_called(
    fp: FakeProvider,
    session: aiohttp.ClientSession,
    choice: Any,
    name: str,
    schema: dict[str, Any],
) -> None:
    """OpenAI tool_choice required, named or allowed_tools answers a fitting call, no text."""
    url = chat_url(fp)
    body = openai_body(tools=openai_tools(), tool_choice=choice)
    reply = await post_json(session, url, body)
    choice_out = reply["choices"][0]
    assert choice_out["finish_reason"] == "tool_calls"
    assert choice_out["message"]["content"] is None
    [call] = choice_out["message"]["tool_calls"]
    assert call["function"]["name"] == name
    jsonschema.validate(json.loads(call["function"]["arguments"]), schema)


async def test_openai_forced_tool_streams(fp: FakeProvider, session: aiohttp.ClientSession) -> None:
    """A streamed forced call joins to arguments that fit the schema."""
    url = chat_url(fp)
    body = openai_body(tools=openai_tools(), tool_choice="required", stream=True)
    chunks = await post_events(session, url, body)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert not any(d.get("content") for d in deltas)
    calls = [tc for d in deltas for tc in d.get("tool_calls", ())]
    assert calls[0]["function"]["name"] == "get_weather"
    arguments = "".join(tc["function"]["arguments"] for tc in calls)
    jsonschema.validate(json.loads(arguments), WEATHER)


async def test_auto_tool_choice_gets_text(fp: FakeProvider, session: aiohttp.ClientSession) -> None:
    """A tool that is offered but not forced leaves the reply as text."""
    url = chat_url(fp)
    body = openai_body(tools=openai_tools(), tool_choice="auto")
    message = (await post_json(session, url, body))["choices"][0]["message"]
    assert message["content"] and "tool_calls" not in message


@pytest.mark.parametrize(
    ("choice", "name", "schema"),
    [
        ({"type": "any"}, "get_weather", WEATHER),
        ({"type": "tool", "name": "get_time"}, "get_time", TIME),
    ],
)
async def test_anthropic_forced_tool_is_called(
    fp: FakeProvider,
    session: aiohttp.ClientSession,
    choice: dict[str, Any],
    name: str,
    schema: dict[str, Any],
) -> None:
    """Anthropic tool_choice any or tool answers one fitting tool_use block, plain and streamed."""
    url = fp.base_url("anthropic") + "/messages"
    body = anthropic_body(tools=anthropic_tools(), tool_choice=choice)
    reply = await post_json(session, url, body)
    assert reply["stop_reason"] == "tool_use"
    [block] = reply["content"]
    assert block["type"] == "tool_use" and block["name"] == name
    jsonschema.validate(block["input"], schema)
    events = await post_events(session, url, {**body, "stream": True})
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [s["type"] for s in starts] == ["tool_use"] and starts[0]["name"] == name
    partial = "".join(
        e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"
    )
    jsonschema.validate(json.loads(partial), schema)


@pytest.mark.parametrize(
    ("config", "name", "schema", "key"),
    [
        ({"mode": "ANY"}, "get_weather", WEATHER, "parametersJsonSchema"),
        ({"mode": "ANY", "allowedFunctionNames": ["get_time"]}, "get_time", TIME, "parameters"),
        ({"mode": "ANY"}, "get_weather", WEATHER, "parameters_json_schema"),
    ],
)
async def test_gemini_forced_function_is_called(
    fp: FakeProvider,
    session: aiohttp.ClientSession,
    config: dict[str, Any],
    name: str,
    schema: dict[str, Any],
    key: str,
) -> None:
    """Gemini mode ANY (with allowedFunctionNames) answers a fitting functionCall, plain and SSE."""
    base = fp.base_url("gemini") + "/models/gemini-test"
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
        "tools": gemini_tools(key),
        "toolConfig": {"functionCallingConfig": config},
    }
    reply = await post_json(session, base + ":generateContent", body)
    [part] = reply["candidates"][0]["content"]["parts"]
    assert part["functionCall"]["name"] == name
    jsonschema.validate(part["functionCall"]["args"], schema)
    chunks = await post_events(session, base + ":streamGenerateContent?alt=sse", body)
    parts = [p for c in chunks for p in c["candidates"][0]["content"].get("parts", ())]
    assert [p["functionCall"]["name"] for p in parts] == [name]


async def test_tool_without_parameters_gets_empty_arguments(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """A forced tool that declares no parameters is called with an empty object."""
    tools = [{"type": "function", "function": {"name": "ping"}}]
    body = openai_body(tools=tools, tool_choice="required")
    message = (await post_json(session, chat_url(fp), body))["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["arguments"] == "{}"


@pytest.mark.parametrize(
    ("tools", "choice"),
    [
        (
            [
                {
                    "type": "function",
                    "function": {
                        "name": "odd",
                        "parameters": {
                            "type": "object",
                            "properties": [],
                            "required": 5,
                            "anyOf": 1,
                        },
                    },
                }
            ],
            "required",
        ),
        (
            [{"type": "function", "function": {"name": "odd"}}],
            {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [[1], 2]}},
        ),
    ],
)
async def test_odd_shapes_still_get_an_answer(
    fp: FakeProvider, session: aiohttp.ClientSession, tools: list[Any], choice: Any
) -> None:
    """A schema or tool list of unexpected shapes gets a reply, never a server error."""
    body = openai_body(tools=tools, tool_choice=choice)
    reply = await post_json(session, chat_url(fp), body)
    assert reply["choices"][0]["finish_reason"] in ("stop", "tool_calls")


async def test_forced_tool_wins_over_reply_text(session: aiohttp.ClientSession) -> None:
    """A provider-wide reply text does not stop a forced tool from being called."""
    async with FakeProvider(reply_text="Paris.") as fp:
        url = chat_url(fp)
        body = openai_body(tools=openai_tools(), tool_choice="required")
        message = (await post_json(session, url, body))["choices"][0]["message"]
    assert message["content"] is None and len(message["tool_calls"]) == 1


# -- structured output --------------------------------------------------------------------------


async def test_openai_json_schema_reply_fits(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """OpenAI response_format json_schema answers JSON text that fits, plain and streamed."""
    url = chat_url(fp)
    body = openai_body(response_format=CITY_FORMAT)
    reply = await post_json(session, url, body)
    jsonschema.validate(json.loads(reply["choices"][0]["message"]["content"]), CITY)
    chunks = await post_events(session, url, {**body, "stream": True})
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    jsonschema.validate(json.loads(text), CITY)


async def test_openai_json_object_reply_is_an_object(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """OpenAI response_format json_object answers a JSON object."""
    url = chat_url(fp)
    body = openai_body(response_format={"type": "json_object"})
    reply = await post_json(session, url, body)
    assert isinstance(json.loads(reply["choices"][0]["message"]["content"]), dict)


async def test_anthropic_output_format_reply_fits(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """Anthropic output_config.format answers a text block of fitting JSON, plain and streamed."""
    url = fp.base_url("anthropic") + "/messages"
    # Constrained decoding refuses minimum and minItems above 1: the schema leaves them out.
    schema = copy.deepcopy(CITY)
    del schema["properties"]["population"]["minimum"], schema["properties"]["districts"]["minItems"]
    body = anthropic_body(output_config={"format": {"type": "json_schema", "schema": schema}})
    reply = await post_json(session, url, body)
    [block] = reply["content"]
    jsonschema.validate(json.loads(block["text"]), schema)
    events = await post_events(session, url, {**body, "stream": True})
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    jsonschema.validate(json.loads(text), schema)


@pytest.mark.parametrize(
    "config",
    [
        {"responseMimeType": "application/json", "responseJsonSchema": CITY},
        {
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "OBJECT",
                "properties": {"city": {"type": "STRING"}, "population": {"type": "INTEGER"}},
                "required": ["city", "population"],
            },
        },
        {"response_mime_type": "application/json", "response_json_schema": CITY},
    ],
)
async def test_gemini_json_reply_fits(
    fp: FakeProvider, session: aiohttp.ClientSession, config: dict[str, Any]
) -> None:
    """Gemini JSON mime type with a schema answers fitting JSON, plain and SSE."""
    base = fp.base_url("gemini") + "/models/gemini-test"
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Largest city?"}]}],
        "generationConfig": config,
    }
    reply = await post_json(session, base + ":generateContent", body)
    value = json.loads(reply["candidates"][0]["content"]["parts"][0]["text"])
    assert isinstance(value["city"], str) and isinstance(value["population"], int)
    chunks = await post_events(session, base + ":streamGenerateContent?alt=sse", body)
    text = "".join(p["text"] for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert json.loads(text) == value


async def test_reply_text_wins_over_generated_json(session: aiohttp.ClientSession) -> None:
    """A reply text the user chose is sent as is, even for a structured-output request."""
    async with FakeProvider(reply_text='{"city": "Paris"}') as fp:
        url = chat_url(fp)
        body = openai_body(response_format=CITY_FORMAT)
        reply = await post_json(session, url, body)
    assert reply["choices"][0]["message"]["content"] == '{"city": "Paris"}'


# -- scripted tool calls ------------------------------------------------------------------------


async def test_scripted_tool_call_without_text_has_null_content(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """A scripted OpenAI tool-call reply with no text has content null, as the service sends."""
    fp.script(Reply(tool_calls=[{"name": "get_time", "arguments": {"zone": "UTC"}}]))
    url = chat_url(fp)
    body = openai_body(tools=openai_tools())
    message = (await post_json(session, url, body))["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["name"] == "get_time"
