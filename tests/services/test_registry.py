"""Tests for ServiceRegistry: registration, lookup, tags, closing and concurrent use."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride.services.imodel import iModel
from lionpride.services.registry import ServiceRegistry
from lionpride.services.types.backend import NormalizedResponse, ServiceBackend, ServiceConfig
from lionpride.services.types.tool import Tool


class RecordingBackend(ServiceBackend):
    """A backend that counts aclose() calls and can fail to close."""

    closed: int = 0
    fail_close: bool = False

    async def call(self, request: dict[str, Any], **_: Any) -> NormalizedResponse:
        return NormalizedResponse(data=self.name)

    async def aclose(self) -> None:
        self.closed += 1
        if self.fail_close:
            raise RuntimeError(f"{self.name} would not close")


def make(name: str, *tags: str, fail_close: bool = False) -> iModel:
    config = ServiceConfig(provider="test", name=name, tags=tags)
    return iModel(backend=RecordingBackend(config=config, fail_close=fail_close))


def closed(model: iModel) -> int:
    backend = model.backend
    assert isinstance(backend, RecordingBackend)
    return backend.closed


def test_register_returns_id_and_get_finds_by_every_key() -> None:
    """A registered model is found by name, UUID, UUID string and the model itself."""
    registry = ServiceRegistry()
    model = make("alpha")
    assert registry.register(model) == model.id
    assert registry.get("alpha") is model
    assert registry.get(model.id) is model
    assert registry.get(str(model.id)) is model
    assert registry.get(model) is model


def test_register_rejects_non_imodel() -> None:
    """Registering something that is not an iModel raises TypeError naming its type."""
    with pytest.raises(TypeError, match="dict"):
        ServiceRegistry().register({"name": "x"})  # type: ignore[arg-type]


def test_duplicate_name_raises_and_leaves_registry_unchanged() -> None:
    """A second model under a taken name is refused without touching the first."""
    registry = ServiceRegistry()
    first, second = make("alpha", "one"), make("alpha", "two")
    registry.register(first)
    with pytest.raises(ValueError, match="Service 'alpha' already registered"):
        registry.register(second)
    assert registry.get("alpha") is first
    assert len(registry) == 1
    assert registry.list_by_tag("two") == []
    assert second not in registry


def test_update_replaces_the_model_and_its_tags() -> None:
    """update=True swaps in the new model and re-indexes its tags."""
    registry = ServiceRegistry()
    first, second = make("alpha", "one"), make("alpha", "two")
    registry.register(first)
    assert registry.register(second, update=True) == second.id
    assert registry.get("alpha") is second
    assert first not in registry
    assert registry.list_by_tag("one") == []
    assert registry.list_by_tag("two") == [second]
    assert registry.count() == 1


def test_same_model_twice_needs_update() -> None:
    """Registering the same model again is refused unless update=True."""
    registry = ServiceRegistry()
    model = make("alpha")
    registry.register(model)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(model)
    registry.register(model, update=True)
    assert registry.list_names() == ["alpha"]


def test_unknown_service_keyerror_lists_names() -> None:
    """get and unregister of an unknown service raise KeyError listing the known names."""
    registry = ServiceRegistry()
    with pytest.raises(KeyError, match=r"Service 'x' not found; registered: \(none\)"):
        registry.get("x")
    registry.register(make("a"))
    registry.register(make("b"))
    with pytest.raises(KeyError, match="Service 'x' not found; registered: a, b"):
        registry.get("x")
    with pytest.raises(KeyError, match="registered: a, b"):
        registry.unregister("x")
    with pytest.raises(KeyError):
        registry.get(make("c"))


def test_has_and_contains() -> None:
    """has() and `in` agree for names, ids, id strings, models and unknown keys."""
    registry = ServiceRegistry()
    model = make("alpha")
    registry.register(model)
    for key in ("alpha", model.id, str(model.id), model):
        assert registry.has(key)
        assert key in registry
    for key in ("beta", make("alpha").id, "not-a-uuid", 42):
        assert not registry.has(key)
        assert key not in registry


def test_list_names_in_registration_order_and_iteration() -> None:
    """Names list in registration order; iterating yields the models; repr shows the count."""
    registry = ServiceRegistry()
    models = [make(n) for n in ("c", "a", "b")]
    for model in models:
        registry.register(model)
    assert registry.list_names() == ["c", "a", "b"]
    assert list(registry) == models
    assert repr(registry) == "ServiceRegistry(count=3)"


def test_list_by_tag_with_builtin_providers() -> None:
    """Built-in provider models are tagged 'llm' plus their provider."""
    registry = ServiceRegistry()
    openai = iModel(provider="openai", api_key=SecretStr("sk-test"))
    anthropic = iModel(provider="anthropic", api_key=SecretStr("sk-test"))
    tool = iModel(backend=Tool(func_callable=len, config={"name": "length"}))
    for model in (openai, anthropic, tool):
        registry.register(model)
    assert openai.tags == {"llm", "openai"}
    assert registry.list_by_tag("llm") == [openai, anthropic]
    assert registry.list_by_tag("openai") == [openai]
    assert registry.list_by_tag("missing") == []


def test_unregister_returns_model_and_removes_it() -> None:
    """unregister returns the model and forgets its name, id and tags."""
    registry = ServiceRegistry()
    model, other = make("alpha", "t"), make("beta", "t")
    registry.register(model)
    registry.register(other)
    assert registry.unregister("alpha") is model
    assert "alpha" not in registry
    assert model.id not in registry
    assert registry.list_by_tag("t") == [other]
    assert registry.unregister(other.id) is other
    assert len(registry) == 0
    assert closed(model) == 0


def test_clear_empties_everything() -> None:
    """clear removes every model, name and tag."""
    registry = ServiceRegistry()
    registry.register(make("a", "t"))
    registry.register(make("b", "t"))
    registry.clear()
    assert len(registry) == 0
    assert registry.list_names() == []
    assert registry.list_by_tag("t") == []
    registry.register(make("a"))
    assert registry.count() == 1


async def test_aclose_closes_every_model() -> None:
    """aclose closes each registered model once."""
    registry = ServiceRegistry()
    models = [make(n) for n in ("a", "b", "c")]
    for model in models:
        registry.register(model)
    await registry.aclose()
    assert [closed(m) for m in models] == [1, 1, 1]


async def test_aclose_continues_past_failures() -> None:
    """A model failing to close does not stop the others; its error is raised afterwards."""
    registry = ServiceRegistry()
    bad, good = make("bad", fail_close=True), make("good")
    registry.register(bad)
    registry.register(good)
    with pytest.raises(RuntimeError, match="bad would not close"):
        await registry.aclose()
    assert closed(good) == 1

    worse = make("worse", fail_close=True)
    registry.register(worse)
    with pytest.raises(ExceptionGroup) as info:
        await registry.aclose()
    assert len(info.value.exceptions) == 2
    assert closed(good) == 2


async def test_concurrent_register_and_get_stay_consistent() -> None:
    """Many tasks racing to register and look up names leave exactly one model per name."""
    registry = ServiceRegistry()
    winners: list[iModel] = []

    async def contend(i: int) -> None:
        model = make(f"svc{i % 5}", f"group{i % 2}")
        await asyncio.sleep(0)
        try:
            registry.register(model)
        except ValueError:
            pass
        else:
            winners.append(model)
        await asyncio.sleep(0)
        assert registry.get(f"svc{i % 5}").name == f"svc{i % 5}"

    await asyncio.gather(*(contend(i) for i in range(60)))
    assert len(winners) == 5
    assert len(registry) == 5
    assert sorted(registry.list_names()) == [f"svc{n}" for n in range(5)]
    assert {registry.get(m.name).id for m in winners} == {m.id for m in winners}
    tagged = registry.list_by_tag("group0") + registry.list_by_tag("group1")
    assert sorted(m.name for m in tagged) == sorted(registry.list_names())


async def test_registered_tool_invokes_by_name() -> None:
    """A Tool model fetched from the registry runs its function."""

    async def double(x: int) -> int:
        return 2 * x

    registry = ServiceRegistry()
    registry.register(iModel(backend=Tool(func_callable=double)))
    calling = await registry.get("double").invoke(x=21)
    assert calling.response.data == 42
