"""Every recorded non-streaming exchange, replayed through FakeProvider and iModel."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.conftest import model_on, wire_records

from lionpride import errors
from lionpride.services.imodel import iModel
from lionpride.services.types.response import Usage
from lionpride.testing import FakeProvider, Reply

_PROVIDER = {"mistral": "mistral"}


def model_for(record: dict[str, Any], fp: FakeProvider) -> iModel:
    """An iModel for the record's provider, pointed at the FakeProvider."""
    return model_on(fp, record["provider"], retry_config=None)


def request_for(record: dict[str, Any]) -> dict[str, Any]:
    """The recorded request body, plus the model for Gemini (it lives in the path)."""
    body = dict(record["request"]["body"])
    if record["provider"] == "gemini":
        body["model"] = re.search(r"models/([^:]+):", record["request"]["path"]).group(1)
    return body


def expected_usage(provider: str, native: dict[str, int]) -> Usage:
    """The normalized usage the recorded native usage should map to."""
    if provider == "anthropic":
        cache_read = native.get("cache_read_input_tokens", 0)
        inp = native["input_tokens"] + cache_read + native.get("cache_creation_input_tokens", 0)
        return Usage(
            input_tokens=inp,
            output_tokens=native["output_tokens"],
            total_tokens=inp + native["output_tokens"],
            cached_tokens=cache_read,
        )
    if provider == "gemini":
        thoughts = native.get("thoughtsTokenCount", 0)
        return Usage(
            input_tokens=native.get("promptTokenCount", 0),
            output_tokens=native.get("candidatesTokenCount", 0) + thoughts,
            total_tokens=native["totalTokenCount"],
            cached_tokens=native.get("cachedContentTokenCount", 0),
            reasoning_tokens=thoughts,
        )
    return Usage(
        input_tokens=native["prompt_tokens"],
        output_tokens=native["completion_tokens"],
        total_tokens=native["total_tokens"],
        cached_tokens=native.get("cached_tokens", 0),
        reasoning_tokens=native.get("reasoning_tokens", 0),
    )


@pytest.mark.parametrize("record", wire_records("text", "tool"))
async def test_recorded_response_normalizes_as_expected(
    record: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """Text, tool calls, usage, finish reason and reasoning match the recording's expect."""
    fake_provider.script(Reply.from_wire(record))
    async with model_for(record, fake_provider) as model:
        calling = await model.invoke(**request_for(record))
    expect = record["expect"]
    response = calling.response
    assert response is not None
    assert response.data == expect["text"]
    assert [{"name": c.name, "arguments": c.arguments} for c in response.tool_calls] == expect[
        "tool_calls"
    ]
    assert response.usage == expected_usage(record["provider"], expect["usage"])
    assert response.metadata["native_finish_reason"] == expect["finish_reason"]
    assert response.metadata.get("reasoning") == expect.get("reasoning")
    sent = fake_provider.requests[-1]
    assert sent.body == {k: v for k, v in request_for(record).items() if k != "model"} or (
        record["provider"] != "gemini" and sent.body["model"] == request_for(record)["model"]
    )


@pytest.mark.parametrize("record", wire_records("error"))
async def test_recorded_error_raises_mapped_type(
    record: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """An HTTP error raises the mapped typed error with the status and the provider's message."""
    fake_provider.script(Reply.from_wire(record))
    status = record["response"]["status"]
    expected_type = errors.error_for_status(status, "x").__class__
    async with model_for(record, fake_provider) as model:
        with pytest.raises(expected_type) as info:
            await model.invoke(**request_for(record))
    err = info.value
    assert err.status_code == status
    assert str(err) == record["expect"]["error"]["message"]
    assert err.calling is not None and err.calling.execution.error is err
    assert len(fake_provider.requests) == 1
