"""Embeddings through iModel against FakeProvider: vectors, options, splitting, limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr
from tests.providers._api_wire import fake_model

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.providers.embeddings import (
    GeminiEmbeddingsEndpoint,
    OAIEmbeddingsEndpoint,
)
from lionpride.services.types.hook import HookPhase, HookRegistry
from lionpride.testing import FakeProvider, Reply
from lionpride.testing._routes import vector_for


def embedder(fp: FakeProvider, provider: str = "openai", **kwargs: Any) -> iModel:
    """An embeddings model on the FakeProvider, retries off unless given."""
    return fake_model(fp, provider, "embeddings", **kwargs)


def test_providers_reach_the_embedding_endpoints() -> None:
    """openai, gemini and a compatible name with base_url build embedding endpoints."""
    assert isinstance(
        iModel(provider="openai", endpoint="embeddings", api_key=SecretStr("k")).backend,
        OAIEmbeddingsEndpoint,
    )
    assert isinstance(
        iModel(provider="gemini", endpoint="embeddings", api_key=SecretStr("k")).backend,
        GeminiEmbeddingsEndpoint,
    )
    with pytest.warns(UserWarning):
        local = iModel(provider="myserver", endpoint="embeddings", base_url="http://h/v1")
    assert local.backend.config.full_url == "http://h/v1/embeddings"


@pytest.mark.parametrize("provider", ["openai", "gemini"])
async def test_vectors_in_input_order_as_floats(fake_provider: FakeProvider, provider: str) -> None:
    """Each text's vector, in order, equals FakeProvider's vector for that text."""
    texts = ["alpha", "beta", "gamma"]
    async with embedder(fake_provider, provider) as model:
        calling = await model.invoke(model="emb", input=texts, dimensions=8)
    assert calling.response.data == [vector_for(t, 8) for t in texts]
    assert all(isinstance(x, float) for x in calling.response.data[0])


async def test_openai_asks_base64_and_passes_dimensions(fake_provider: FakeProvider) -> None:
    """The wire asks for base64 and carries dimensions; usage is the provider's count."""
    async with embedder(fake_provider) as model:
        calling = await model.invoke(model="emb", input=["x" * 40], dimensions=4)
    sent = fake_provider.requests[-1].body
    assert sent == {
        "model": "emb",
        "input": ["x" * 40],
        "dimensions": 4,
        "encoding_format": "base64",
    }
    assert calling.response.usage.input_tokens == 10
    async with embedder(fake_provider) as model:
        floats = await model.invoke(model="emb", input="y", encoding_format="float")
    assert fake_provider.requests[-1].body["encoding_format"] == "float"
    assert floats.response.data == [vector_for("y", 64)]


async def test_gemini_task_type_title_and_dimensions(fake_provider: FakeProvider) -> None:
    """task_type, title and dimensions go into every batchEmbedContents entry."""
    async with embedder(fake_provider, "gemini") as model:
        await model.invoke(
            model="gemini-embedding-001",
            input=["a", "b"],
            task_type="RETRIEVAL_DOCUMENT",
            title="T",
            dimensions=16,
        )
    sent = fake_provider.requests[-1]
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.body["requests"][1] == {
        "model": "models/gemini-embedding-001",
        "taskType": "RETRIEVAL_DOCUMENT",
        "outputDimensionality": 16,
        "title": "T",
        "content": {"parts": [{"text": "b"}]},
    }


async def test_gemini_native_embed_content(fake_provider: FakeProvider) -> None:
    """A native embedContent body goes to :embedContent and gives one vector."""
    async with embedder(fake_provider, "gemini") as model:
        calling = await model.invoke(model="g", content={"parts": [{"text": "hi"}]})
    assert fake_provider.requests[-1].path.endswith("/models/g:embedContent")
    assert calling.response.data == [vector_for("hi", 64)]


@pytest.mark.parametrize(("provider", "cap"), [("openai", 2048), ("gemini", 100)])
async def test_large_input_is_split_and_reassembled(
    fake_provider: FakeProvider, provider: str, cap: int
) -> None:
    """An input over the cap goes out in capped requests, each granted; order is kept."""
    texts = [f"t{i}" for i in range(cap * 2 + 3)]
    async with embedder(fake_provider, provider, limit_requests=100) as model:
        calling = await model.invoke(model="emb", input=texts, dimensions=2)
        stats = model.executor.stats()
    assert calling.response.data == [vector_for(t, 2) for t in texts]
    assert calling.response.metadata["parts"] == 3
    assert len(fake_provider.requests) == 3
    assert stats["completed"] == 3
    assert model.metrics()["calls"] == 3


async def test_failed_part_fails_the_call(fake_provider: FakeProvider) -> None:
    """A part refused by the provider raises its typed error with the whole Calling."""
    fake_provider.script(Reply(status=400))
    async with embedder(fake_provider, "gemini") as model:
        with pytest.raises(errors.BadRequestError) as caught:
            await model.invoke(model="g", input=[str(i) for i in range(150)])
        assert caught.value.calling.payload["model"] == "g"
        fake_provider.script(Reply(status=400))
        failed = await model.invoke(
            model="g", input=[str(i) for i in range(150)], raise_on_error=False
        )
    assert failed.execution.status.value == "failed"
    assert isinstance(failed.execution.error, errors.BadRequestError)


async def test_retried_and_hooked_like_any_call(fake_provider: FakeProvider) -> None:
    """A 503 is retried; PostInvocation hooks see the embeddings response."""
    seen: list[Any] = []

    async def post(calling: Any, **kw: Any) -> None:
        seen.append(kw["response"])

    hooks = HookRegistry({HookPhase.PostInvocation: post})
    fake_provider.script(Reply(status=503))
    async with embedder(
        fake_provider, retry_config={"max_retries": 1, "initial_delay": 0.01}, hook_registry=hooks
    ) as model:
        calling = await model.invoke(model="text-embedding-3-small", input=["a"])
    assert len(fake_provider.requests) == 2 and calling.execution.attempts == 2
    assert seen[0].data == calling.response.data
    assert calling.cost is not None and calling.cost > 0


async def test_token_limit_counts_the_input(fake_provider: FakeProvider) -> None:
    """The token reservation is the input estimate (embeddings produce no output)."""
    async with embedder(fake_provider, limit_tokens=1000) as model:
        calling = await model.create_calling(model="e", input=["x" * 400])
    assert 0 < calling.reserved_tokens <= 200


@pytest.mark.parametrize(
    ("provider", "endpoint"),
    [("openai", "embeddings"), ("gemini", "embeddings"), ("openai", "responses")],
)
def test_new_endpoints_survive_to_dict_and_back(
    provider: str, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Responses or embeddings model's config round-trips with its class and request schema."""
    monkeypatch.setenv("LP_TEST_KEY", "k")
    model = iModel(provider=provider, endpoint=endpoint, api_key="LP_TEST_KEY")
    again = iModel.from_dict(model.to_dict())
    assert type(again.backend) is type(model.backend)
    assert again.backend.config.request_options is model.backend.config.request_options
    assert again.backend.config.full_url == model.backend.config.full_url


async def test_token_ids_are_one_input_and_reserve_their_tokens(
    fake_provider: FakeProvider,
) -> None:
    """A list of token ids longer than the input cap is one input: one request, one vector."""
    ids = list(range(3000))
    async with embedder(fake_provider, limit_tokens=10_000) as model:
        assert (await model.create_calling(model="e", input=ids)).reserved_tokens == 3000
        pair = await model.create_calling(model="e", input=[ids[:5], ids[:7]])
        assert pair.reserved_tokens == 12
        calling = await model.invoke(model="e", input=ids, dimensions=4)
    assert len(fake_provider.requests) == 1
    assert calling.response.data == [vector_for(json.dumps(ids), 4)]
    assert calling.response.usage.input_tokens == 3000


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("openai", {"object": "list", "data": [{"object": "embedding", "index": 0}]}),
        ("openai", {"data": [{"index": 0, "embedding": "AAAA="}]}),
        ("gemini", {"error": {"code": 500, "message": "internal"}}),
    ],
)
async def test_body_without_vectors_is_an_invalid_response(
    fake_provider: FakeProvider, provider: str, body: dict[str, Any]
) -> None:
    """A 200 body whose vectors cannot be read raises InvalidResponseError, not a KeyError."""
    fake_provider.script(Reply(body=body))
    async with embedder(fake_provider, provider) as model:
        with pytest.raises(errors.InvalidResponseError, match="expected embeddings"):
            await model.invoke(model="e", input=["a"])
