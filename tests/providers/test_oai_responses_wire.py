"""Every recorded Responses exchange in ``wire/api/`` replays to its ``expect`` via iModel."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import wire_missing
from tests.providers._api_wire import API_DIR, api_records, fake_model

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.types.response import NormalizedResponse, Usage
from lionpride.testing import FakeProvider, Reply


def model_for(fp: FakeProvider) -> iModel:
    """A Responses model pointed at the FakeProvider, with retries off."""
    return fake_model(fp, "openai", "responses")


def native_body(record: dict[str, Any]) -> dict[str, Any]:
    """The recorded request body without its ``stream`` key."""
    return {k: v for k, v in record["request"]["body"].items() if k != "stream"}


async def replay(record: dict[str, Any], fp: FakeProvider) -> NormalizedResponse:
    """Send the recorded request (streamed when it was) and return the response."""
    fp.script(Reply.from_wire(record))
    async with model_for(fp) as model:
        if record["expect"]["stream"]:
            chunks = [c async for c in model.invoke_stream(**native_body(record))]
            final = chunks[-1].response
            assert final is not None and chunks[-1].is_final
            streamed = "".join(c.content for c in chunks[:-1])
            assert streamed == record["expect"]["text"]
            return final
        calling = await model.invoke(**native_body(record))
        assert calling.response is not None
        return calling.response


@pytest.mark.parametrize(
    "record",
    api_records("openai_responses", "responses_text", "responses_tool", "responses_stream"),
)
async def test_recorded_response_normalizes_to_expect(
    record: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """Text, calls (id = call_id), usage, finish, reasoning and built-in calls match expect."""
    response = await replay(record, fake_provider)
    expect = record["expect"]
    assert response.data == expect["text"]
    calls = [{"name": c.name, "arguments": c.arguments, "id": c.id} for c in response.tool_calls]
    assert calls == expect["tool_calls"]
    assert response.usage == Usage(**expect["usage"])
    assert response.finish_reason == expect["finish_reason"]
    assert response.metadata["status"] == expect["status"]
    assert response.metadata.get("reasoning") == expect.get("reasoning")
    assert response.metadata.get("server_tool_calls") == expect.get("server_tool_calls")
    assert response.metadata.get("incomplete_details") == expect.get("incomplete_details")
    assert [item["type"] for item in response.raw_response["output"]] == expect["output_types"]
    sent = dict(fake_provider.requests[-1].body)
    assert sent.pop("stream", None) is (True if expect["stream"] else None)
    # A null field is the API's default: the request schema leaves it out.
    assert sent == {k: v for k, v in native_body(record).items() if v is not None}


@pytest.mark.parametrize("record", api_records("openai_responses", "responses_error"))
async def test_recorded_error_raises_the_typed_error(
    record: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """A 400 (also to a streaming request) raises BadRequestError with the provider's error."""
    with pytest.raises(errors.BadRequestError) as caught:
        await replay(record, fake_provider)
    assert caught.value.status_code == 400
    assert caught.value.body["error"] == record["expect"]["error"]
    assert record["expect"]["error"]["message"] in str(caught.value)


async def test_reasoning_items_ride_in_provider_state(fake_provider: FakeProvider) -> None:
    """A reasoning reply keeps its items (with encrypted content) for the next turn."""
    if not API_DIR.is_dir():
        pytest.skip(wire_missing(API_DIR))
    (record,) = [
        p.values[0]
        for p in api_records("openai_responses", "responses_text")
        if p.id.endswith("reasoning_summary_encrypted")
    ]
    response = await replay(record, fake_provider)
    state = response.metadata["provider_state"]
    assert state["provider"] == "openai_responses"
    assert [i["type"] for i in state["items"]] == ["reasoning"]
    assert state["items"][0]["encrypted_content"].startswith("gAAAA")
