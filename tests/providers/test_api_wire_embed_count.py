"""Every recorded embeddings and token-count exchange in ``wire/api/`` replays to ``expect``."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from tests.providers._api_wire import api_records, fake_model

from lionpride import errors
from lionpride.services import iModel
from lionpride.testing import FakeProvider, Reply


def model_for(provider: str, fp: FakeProvider, endpoint: str) -> iModel:
    """The record's model on the FakeProvider, with retries off."""
    return fake_model(fp, "openai" if provider == "openai_responses" else provider, endpoint)


def path_model(record: dict[str, Any]) -> str:
    """The model named in a Gemini path (``/v1beta/models/{model}:method``)."""
    return record["request"]["path"].rsplit("/", 1)[-1].split(":", 1)[0]


def embed_request(record: dict[str, Any]) -> dict[str, Any]:
    """The call the README maps an embed record to."""
    body = record["request"]["body"]
    if record["provider"] == "gemini":
        texts = ["".join(p["text"] for p in r["content"]["parts"]) for r in body["requests"]]
        return {"model": path_model(record), "input": texts}
    return {k: v for k, v in body.items() if k != "encoding_format"}


@pytest.mark.parametrize("record", api_records("openai", "embed") + api_records("gemini", "embed"))
async def test_recorded_embeddings_replay(
    record: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """Vectors come back as floats in input order (sha256 as recorded), usage as reported."""
    fake_provider.script(Reply.from_wire(record))
    expect = record["expect"]
    async with model_for(record["provider"], fake_provider, "embeddings") as model:
        if "error" in expect:
            with pytest.raises(errors.NotFoundError) as caught:
                await model.invoke(**embed_request(record))
            assert caught.value.body["error"] == expect["error"]
            return
        calling = await model.invoke(**embed_request(record))
    vectors = calling.response.data
    want = expect["vectors"]
    assert len(vectors) == want["count"] and {len(v) for v in vectors} == {want["dims"]}
    assert [v[:3] for v in vectors] == want["first3"]
    digest = hashlib.sha256(json.dumps(vectors, separators=(",", ":")).encode()).hexdigest()
    assert digest == want["sha256"]
    assert calling.response.metadata.get("usage") == expect["usage"]
    native = expect["usage"] or {}
    tokens = native.get("prompt_tokens", native.get("promptTokenCount"))
    assert (calling.response.usage.input_tokens if tokens is not None else None) == tokens
    sent = fake_provider.requests[-1]
    if record["provider"] == "openai":
        assert sent.body["encoding_format"] == "base64"
    else:
        assert sent.path == record["request"]["path"]


def count_request(record: dict[str, Any]) -> dict[str, Any]:
    """The ``count_tokens`` arguments of a count record (Gemini: plus the path's model)."""
    body = dict(record["request"]["body"])
    if record["provider"] == "gemini":
        body["model"] = path_model(record)
    return body


def canonical(record: dict[str, Any]) -> dict[str, Any] | None:
    """The same count asked canonically, where the body is only plain-text messages."""
    body = record["request"]["body"]
    if set(body) == {"model", "messages"} and all(
        isinstance(m.get("content"), str) for m in body["messages"]
    ):
        return {"model": body["model"], "messages": body["messages"]}
    return None


@pytest.mark.parametrize(
    "record",
    api_records("anthropic", "count_tokens")
    + api_records("gemini", "count_tokens")
    + api_records("openai_responses", "count_tokens"),
)
async def test_recorded_token_counts_replay(
    record: dict[str, Any], fake_provider: FakeProvider
) -> None:
    """count_tokens posts the recorded body to the recorded route and returns its total."""
    endpoint = "responses" if record["provider"] == "openai_responses" else "chat"
    expect = record["expect"]
    fake_provider.script(Reply.from_wire(record))
    async with model_for(record["provider"], fake_provider, endpoint) as model:
        if "error" in expect:
            with pytest.raises(errors.NotFoundError) as caught:
                await model.count_tokens(**count_request(record))
            assert caught.value.body["error"] == expect["error"]
            return
        assert await model.count_tokens(**count_request(record)) == expect["total"]
        sent = fake_provider.requests[-1]
        assert sent.path == record["request"]["path"].replace("?beta=true", "")
        assert sent.body == record["request"]["body"]
        again = canonical(record)
        if again is not None:
            fake_provider.script(Reply.from_wire(record))
            assert await model.count_tokens(**again) == expect["total"]
            assert fake_provider.requests[-1].body == record["request"]["body"]
