"""Round trips found wanting in review: CLI models, executors, misspelt limits, from_dict,
price tables."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.core.element import Element
from lionpride.services import iModel
from lionpride.services.observability import PriceTable
from lionpride.services.providers.oai_chat import OAIChatEndpoint
from lionpride.services.types.hook import HookOptions, HookPhase, HookRegistry
from lionpride.services.types.response import Usage
from lionpride.testing import FakeProvider

REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(autouse=True)
def provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model restored from one with a raw key reads the provider's variable when it is
    made (raw keys are never saved), so the variable is set here."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")


@pytest.mark.parametrize("provider", ["claude_code", "gemini_code"])
def test_cli_models_round_trip(provider: str) -> None:
    model = iModel(provider=provider, model="sonnet", limit_requests=5)
    config = model.to_dict()
    json.dumps(config)
    restored = iModel.from_dict(config)
    assert type(restored.backend) is type(model.backend)
    assert restored.backend.config.kwargs == model.backend.config.kwargs
    assert restored.backend.config.request_options is model.backend.config.request_options


def test_a_misspelt_limit_is_named_not_dropped() -> None:
    model = iModel(provider="openai", api_key=SecretStr("sk"), limit_requests=5)
    config = model.to_dict()
    config["executor"]["request_buckets"] = config["executor"].pop("request_bucket")
    with pytest.raises(ValueError, match="request_buckets"):
        iModel.from_dict(config)
    config = model.to_dict()
    config["executor"]["request_bucket"]["capacty"] = 5
    with pytest.raises(ValueError, match="capacty"):
        iModel.from_dict(config)


async def test_a_pre_event_create_timeout_is_the_typed_timeout(
    fake_provider: FakeProvider,
) -> None:
    async def slow(event: object, **kw: object) -> None:
        await asyncio.sleep(5)

    hooks = HookRegistry({HookPhase.PreEventCreate: slow})
    async with iModel(
        provider="openai",
        api_key=SecretStr("sk"),
        base_url=fake_provider.base_url("openai"),
        hook_registry=hooks,
    ) as model:
        with pytest.raises(errors.TimeoutError, match="PreEventCreate"):
            await model.invoke(**REQUEST, hooks=HookOptions(create_exit=True, create_timeout=0.05))


def test_element_from_dict_restores_endpoints_and_models() -> None:
    endpoint = OAIChatEndpoint(api_key=SecretStr("sk"), model="gpt-4o-mini")
    restored = Element.from_dict(endpoint.to_dict())
    assert isinstance(restored, OAIChatEndpoint)
    assert restored.create_payload({"messages": REQUEST["messages"]})["model"] == "gpt-4o-mini"
    model = iModel(provider="openai", api_key=SecretStr("sk"), limit_requests=5)
    again = Element.from_dict(model.to_dict())
    assert isinstance(again, iModel) and again.executor is not None


def test_a_price_table_of_ones_own_survives_a_round_trip() -> None:
    """prices= is kept by to_dict (JSON-safe) and rebuilt by from_dict; the shipped table
    is not written out, and prices= given to from_dict wins over the stored one."""
    table = PriceTable(taken="2026-12-01")
    table.register_price("house-model", input=1.0, output=2.0)
    model = iModel(provider="openai", api_key=SecretStr("k"), prices=table)
    data = json.loads(json.dumps(model.to_dict(mode="json")))
    assert data["prices"]["models"]["house-model"]["input"] == 1.0
    restored = iModel.from_dict(data)
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, total_tokens=2_000_000)
    assert restored._rt.observer.prices.cost("house-model", usage) == pytest.approx(3.0)
    assert restored._rt.observer.prices.taken == "2026-12-01"
    assert restored.to_dict(mode="json")["prices"] == data["prices"]

    assert iModel(provider="openai", api_key=SecretStr("k")).to_dict()["prices"] is None
    other = PriceTable()
    assert iModel.from_dict(data, prices=other)._rt.observer.prices is other


def test_a_malformed_price_table_is_named() -> None:
    data = iModel(provider="openai", api_key=SecretStr("k")).to_dict(mode="json")
    with pytest.raises(ValueError, match="prices"):
        iModel.from_dict({**data, "prices": ["not", "a", "table"]})
    with pytest.raises(ValueError, match="house-model"):
        iModel.from_dict({**data, "prices": {"models": {"house-model": {"input": -1}}}})
