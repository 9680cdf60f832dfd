"""Streaming takes the canonical request, and tool-call deltas have one shape everywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.conftest import model_on

from lionpride.services.imodel import iModel
from lionpride.testing import FakeProvider, Reply

MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
REQUEST: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Answer with tools."},
        {"role": "user", "content": "Weather in Oslo and Lima?"},
    ],
    "tools": [WEATHER],
    "tool_choice": "required",
}


def fake_model(fp: FakeProvider, provider: str) -> iModel:
    """An iModel for ``provider`` on the FakeProvider, without retries."""
    return model_on(fp, provider, model=MODELS[provider], retry_config=None)


@pytest.mark.parametrize("provider", list(MODELS))
async def test_stream_tool_call_deltas_have_one_shape(
    provider: str, fake_provider: FakeProvider
) -> None:
    """Every provider streams {index, id, name, arguments} deltas whose ids and joined
    arguments are the final response's calls; the request went out translated."""
    calls = [
        {"name": "get_weather", "arguments": {"city": "Oslo"}},
        {"name": "get_weather", "arguments": {"city": "Lima"}},
    ]
    fake_provider.script(Reply(tool_calls=calls))
    async with model_on(
        fake_provider, provider, model=MODELS[provider], retry_config=None
    ) as model:
        chunks = [chunk async for chunk in model.invoke_stream(**REQUEST)]
    deltas = [c.tool_call_delta for c in chunks if c.tool_call_delta]
    assert deltas and all(set(d) == {"index", "id", "name", "arguments"} for d in deltas)
    joined: dict[int, list[str]] = {}
    ids: dict[int, str] = {}
    for delta in deltas:
        joined.setdefault(delta["index"], []).append(delta["arguments"])
        if delta["id"]:
            ids[delta["index"]] = delta["id"]
    final = chunks[-1].response
    assert final is not None
    assert [json.loads("".join(joined[i])) for i in sorted(joined)] == [
        c["arguments"] for c in calls
    ]
    assert [ids[i] for i in sorted(ids)] == [call.id for call in final.tool_calls]
    body = fake_provider.requests[-1].body
    if provider == "anthropic":
        assert body["system"] == "Answer with tools." and body["tool_choice"] == {"type": "any"}
    elif provider == "gemini":
        assert body["systemInstruction"] == {"parts": [{"text": "Answer with tools."}]}
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    else:
        assert body["messages"] == REQUEST["messages"]
