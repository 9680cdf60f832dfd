"""Every recorded stream, replayed through FakeProvider and ``Endpoint.stream()``."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from pydantic import SecretStr
from tests.conftest import wire_records
from tests.services.test_wire_replay import expected_usage, request_for

from lionpride import errors
from lionpride.services.providers.match import match_endpoint
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.endpoint import Endpoint
from lionpride.testing import FakeProvider, Reply


def endpoint_for(record: dict[str, Any], fp: FakeProvider) -> Endpoint:
    """The record's provider endpoint, pointed at the FakeProvider, with retries off."""
    provider = record["provider"]
    with warnings.catch_warnings():
        # Unknown providers (mistral) are treated as OpenAI-compatible, with a warning.
        warnings.simplefilter("ignore", UserWarning)
        return match_endpoint(
            provider, base_url=fp.base_url(provider), api_key=SecretStr("k"), retry_config=None
        )


async def collect(ep: Endpoint, record: dict[str, Any]) -> list[StreamChunk]:
    """Stream the recorded request and return every chunk."""
    payload = ep.create_payload(request_for(record))
    return [chunk async for chunk in ep.stream(payload)]


@pytest.mark.parametrize("record", wire_records("stream_text", "stream_tool"))
async def test_recorded_stream_assembles_as_expected(
    record: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """Text, tool calls, usage, finish reason and reasoning of the final chunk match expect."""
    fake_provider.script(Reply.from_wire(record))
    async with endpoint_for(record, fake_provider) as ep:
        chunks = await collect(ep, record)
    expect = record["expect"]
    *deltas, final = chunks
    assert final.is_final and not any(c.is_final for c in deltas)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    response = final.response
    assert response is not None
    assert response.data == expect["text"]
    assert "".join(c.content for c in deltas) == expect["text"]
    assert [{"name": c.name, "arguments": c.arguments} for c in response.tool_calls] == expect[
        "tool_calls"
    ]
    assert response.usage == expected_usage(record["provider"], expect["usage"])
    assert response.metadata["native_finish_reason"] == expect["finish_reason"]
    assert response.metadata.get("reasoning") == expect.get("reasoning")
    assert "".join(c.reasoning for c in deltas) == expect.get("reasoning", "")
    assert response.metadata.get("server_tool_calls") == expect.get("server_tool_calls")
    assert fake_provider.requests[-1].body.get("stream") is (
        None if record["provider"] == "gemini" else True
    )


@pytest.mark.parametrize("record", wire_records("stream_tool"))
async def test_recorded_tool_stream_deltas_rebuild_the_calls(
    record: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """Joining the tool-call deltas by index gives back each call's name and arguments."""
    fake_provider.script(Reply.from_wire(record))
    async with endpoint_for(record, fake_provider) as ep:
        chunks = await collect(ep, record)
    joined: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        delta = chunk.tool_call_delta
        if delta is not None:
            call = joined.setdefault(delta["index"], {"name": delta["name"], "arguments": ""})
            call["arguments"] += delta["arguments"]
    response = chunks[-1].response
    assert response is not None
    assert [c["name"] for _, c in sorted(joined.items())] == [c.name for c in response.tool_calls]
    arguments = [json.loads(c["arguments"]) for _, c in sorted(joined.items())]
    assert arguments == [c.arguments for c in response.tool_calls]


@pytest.mark.parametrize("record", wire_records("stream_error"))
async def test_recorded_stream_error_raises_mapped_type(
    record: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """An error inside a 200 stream raises the typed error with the provider's message."""
    fake_provider.script(Reply.from_wire(record))
    error = record["expect"]["error"]
    status = error.get("status_code") or error["code"]
    expected_type = errors.error_for_status(status, "x").__class__
    seen: list[StreamChunk] = []
    async with endpoint_for(record, fake_provider) as ep:
        payload = ep.create_payload(request_for(record))
        with pytest.raises(expected_type) as info:
            async for chunk in ep.stream(payload):
                seen.append(chunk)
    assert info.value.status_code == status
    assert str(info.value) == error["message"]
    assert not any(c.is_final for c in seen)
    # The chunks before the error still reached the caller, as they arrived.
    assert "".join(c.reasoning for c in seen) == record["expect"].get("reasoning", "")
