"""Tests for the Tool backend: schemas, validation, sync/async calls, provider formats."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from lionpride import errors
from lionpride.core.event import EventStatus
from lionpride.services.imodel import iModel
from lionpride.services.registry import ServiceRegistry
from lionpride.services.types.tool import Tool, ToolCalling, ToolConfig


class WeatherRequest(BaseModel):
    location: str = Field(..., description="City name")
    units: str = Field("celsius", description="Temperature units")


def get_weather(location: str, units: str = "celsius") -> dict:
    """Get weather for a location."""
    return {"temp": 22, "conditions": "sunny", "location": location}


class Address(BaseModel):
    city: str
    zip_code: str | None = None


def search(
    query: str,
    limit: int = 10,
    ratio: float | None = None,
    mode: Literal["fast", "exact"] = "fast",
    ids: list[int] | None = None,
    flag: Annotated[bool, "Whether to flag results"] = False,
    where: Annotated[Address | None, Field(description="Where to look")] = None,
    *args: Any,
    **kwargs: Any,
) -> str:
    """Search the catalogue.

    Longer explanation that is not part of the summary.

    Args:
        query: The text to look for,
            possibly spanning lines.
        limit (int): Most results to return.

    Returns:
        The results.
    """
    return query


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_seed_pattern_2_tool_integration() -> None:
    """The seed's Pattern 2 runs verbatim and returns the function's result."""
    tool = Tool(func_callable=get_weather, config={"request_options": WeatherRequest})

    tool_model = iModel(backend=tool)
    registry = ServiceRegistry()
    registry.register(tool_model)

    calling = await registry.get("get_weather").invoke(location="San Francisco")
    assert calling.response.data == {
        "temp": 22,
        "conditions": "sunny",
        "location": "San Francisco",
    }
    assert isinstance(calling, ToolCalling)
    assert calling.payload == {"location": "San Francisco", "units": "celsius"}


def test_config_defaults_to_function_name_and_tool_provider() -> None:
    """Without a config the tool is named after the function, with provider 'tool'."""
    tool = Tool(func_callable=add)
    assert (tool.name, tool.provider, tool.function_name) == ("add", "tool", "add")
    assert isinstance(tool.config, ToolConfig)
    named = Tool(func_callable=add, config={"name": "sum_two", "tags": ["math"]})
    assert (named.name, named.provider, named.tags) == ("sum_two", "tool", {"math"})


def test_one_character_name_is_accepted() -> None:
    """A tool name of a single character is valid."""

    def f(x: int) -> int:
        return x

    assert Tool(func_callable=f).name == "f"
    assert Tool(func_callable=add, config={"name": "a"}).name == "a"


def test_func_callable_must_be_a_named_callable() -> None:
    """A non-callable or nameless callable is refused with the value in the message."""
    with pytest.raises(ValueError, match=r"func_callable must be a callable.*42"):
        Tool(func_callable=42)

    class Nameless:
        def __call__(self) -> None:
            return None

    with pytest.raises(ValueError, match="Nameless"):
        Tool(func_callable=Nameless())


def test_function_is_kept_out_of_dumps_and_tools_do_not_serialize() -> None:
    """model_dump leaves out the function, and to_dict/from_dict raise NotImplementedError."""
    tool = Tool(func_callable=add)
    assert "func_callable" not in tool.model_dump()
    with pytest.raises(NotImplementedError, match="cannot be serialized"):
        tool.to_dict()
    with pytest.raises(NotImplementedError, match="cannot be serialized"):
        Tool.from_dict({"config": {"name": "add"}})


def test_generated_schema_maps_python_types() -> None:
    """Signature types, defaults, Literal, Optional, list[int] and models become JSON schema."""
    schema = Tool(func_callable=search).schema
    props = schema["properties"]
    assert schema["type"] == "object"
    assert schema["required"] == ["query"]
    assert set(props) == {"query", "limit", "ratio", "mode", "ids", "flag", "where"}
    assert props["limit"] == {
        "type": "integer",
        "default": 10,
        "description": props["limit"]["description"],
    }
    assert props["ratio"]["anyOf"] == [{"type": "number"}, {"type": "null"}]
    assert props["mode"]["enum"] == ["fast", "exact"]
    assert props["mode"]["type"] == "string"
    assert props["ids"]["anyOf"][0] == {"type": "array", "items": {"type": "integer"}}
    assert props["where"]["anyOf"][0]["properties"]["city"]["type"] == "string"


def test_descriptions_come_from_annotated_and_docstring() -> None:
    """Annotated strings, Field descriptions and the docstring's Args section describe params."""
    tool = Tool(func_callable=search)
    props = tool.schema["properties"]
    assert props["query"]["description"] == "The text to look for, possibly spanning lines."
    assert props["limit"]["description"] == "Most results to return."
    assert props["flag"]["description"] == "Whether to flag results"
    assert props["where"]["description"] == "Where to look"
    assert tool.description == "Search the catalogue."


def test_optional_without_default_is_required() -> None:
    """An Optional parameter without a default stays required but accepts null."""

    def f(x: int | None) -> int | None:
        return x

    tool = Tool(func_callable=f)
    assert tool.required_fields == frozenset({"x"})
    assert tool.create_payload({"x": None}) == {"x": None}


def test_schema_priority_request_options_over_tool_schema() -> None:
    """request_options wins over tool_schema, which wins over the signature."""
    explicit = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a"],
    }
    assert Tool(func_callable=add, tool_schema=explicit).required_fields == frozenset({"a"})

    class AddRequest(BaseModel):
        a: int
        b: int = 1

    tool = Tool(func_callable=add, config={"request_options": AddRequest}, tool_schema=explicit)
    assert tool.schema["title"] == "AddRequest"
    assert tool.create_payload({"a": "2"}) == {"a": 2, "b": 1}


def test_tool_schema_accepts_an_openai_tool_definition() -> None:
    """An OpenAI-format definition is unwrapped to its parameters and description."""
    definition = {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Adds.",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
        },
    }
    tool = Tool(func_callable=add, tool_schema=definition)
    assert tool.schema == definition["function"]["parameters"]
    assert tool.description == "Adds."


def test_validation_names_missing_unknown_and_mistyped_arguments() -> None:
    """Missing, unknown and wrongly typed arguments are refused with their names."""
    tool = Tool(func_callable=add)
    with pytest.raises(ValueError, match=r"missing required argument.*'b'"):
        tool.create_payload({"a": 1})
    with pytest.raises(ValueError, match=r"unknown argument\(s\) 'c'; valid: a, b"):
        tool.create_payload({"a": 1, "b": 2, "c": 3})
    with pytest.raises(ValueError, match="invalid argument 'b': expected integer, got string"):
        tool.create_payload({"a": 1, "b": "2"})
    with pytest.raises(ValueError, match="invalid argument 'a': expected integer, got boolean"):
        tool.create_payload({"a": True, "b": 2})
    searcher = Tool(func_callable=search, config={"name": "s"})
    with pytest.raises(ValueError, match="invalid argument 'ids': item 1: expected integer"):
        searcher.create_payload({"query": "x", "ids": [1, "two"]})
    with pytest.raises(ValueError, match="invalid argument 'mode'"):
        searcher.create_payload({"query": "x", "mode": "slow"})


def test_request_options_errors_name_the_field() -> None:
    """Model validation failures name the bad field and pydantic's message."""
    tool = Tool(func_callable=get_weather, config={"request_options": WeatherRequest})
    message = "invalid argument 'location': Field required"
    with pytest.raises(errors.ValidationError, match=message):
        tool.create_payload({})
    with pytest.raises(ValueError, match=r"unknown argument.*'zone'"):
        tool.create_payload({"location": "Oslo", "zone": "x"})


def test_only_accepted_arguments_are_passed_on() -> None:
    """Model fields the function does not take are dropped from the payload."""

    class Request(BaseModel):
        a: int
        b: int
        note: str = "unused"

    tool = Tool(func_callable=add, config={"request_options": Request})
    assert tool.create_payload({"a": 1, "b": 2}) == {"a": 1, "b": 2}


async def test_sync_tool_runs_in_a_worker_thread() -> None:
    """A plain function runs off the event loop's thread."""
    loop_thread = threading.get_ident()

    def where() -> int:
        return threading.get_ident()

    response = await Tool(func_callable=where).call({})
    assert response.data != loop_thread


async def test_async_tool_runs_on_the_loop() -> None:
    """A coroutine function and an async callable object are awaited on the loop's thread."""
    loop_thread = threading.get_ident()

    async def where() -> int:
        await asyncio.sleep(0)
        return threading.get_ident()

    class Where:
        __name__ = "where_obj"

        async def __call__(self) -> int:
            return threading.get_ident()

    assert (await Tool(func_callable=where).call({})).data == loop_thread
    assert (await Tool(func_callable=Where()).call({})).data == loop_thread


async def test_response_carries_result_and_arguments() -> None:
    """The response holds the result as data and both in raw_response, even if not JSON-safe."""
    marker = object()

    def give(x: int) -> object:
        return marker

    response = await Tool(func_callable=give).call({"x": 1})
    assert response.status == "success"
    assert response.data is marker
    assert response.raw_response == {"result": marker, "arguments": {"x": 1}}
    assert response.to_dict()["data"] is marker


async def test_function_errors_propagate_unchanged() -> None:
    """An exception from the function is raised as-is by call and by invoke."""

    def boom(x: int) -> int:
        raise LookupError(f"no {x}")

    tool = Tool(func_callable=boom)
    with pytest.raises(LookupError, match="no 1"):
        await tool.call({"x": 1})
    with pytest.raises(LookupError) as info:
        await iModel(backend=tool).invoke(x=1)
    assert info.value.calling.status == EventStatus.FAILED


async def test_timeout_raises_lionpride_timeout() -> None:
    """An async tool exceeding its timeout raises lionpride's TimeoutError."""
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    with pytest.raises(errors.TimeoutError, match=r"did not finish within 0\.01s"):
        await Tool(func_callable=hang).call({}, timeout=0.01)


async def test_imodel_invoke_with_tool_backend() -> None:
    """iModel.invoke returns a Calling with the result and rejects bad arguments up front."""
    model = iModel(backend=Tool(func_callable=add))
    calling = await model.invoke(a=2, b=3)
    assert calling.response.data == 5
    assert calling.status == EventStatus.COMPLETED
    with pytest.raises(ValueError, match="'b'"):
        await model.invoke(a=2, b="three")


def test_rendered_signature() -> None:
    """rendered shows the description, parameter types, optional marks and defaults."""
    text = Tool(func_callable=search).rendered
    lines = text.splitlines()
    assert lines[0] == "// Search the catalogue."
    assert lines[1] == "search("
    assert "  query: string, // The text to look for, possibly spanning lines." in lines
    assert '  mode?: "fast" | "exact" = "fast",' in lines
    assert "  ids?: number[] | null = null," in lines
    assert Tool(func_callable=get_weather).rendered.endswith(
        'get_weather(\n  location: string,\n  units?: string = "celsius",\n)'
    )


def test_provider_tool_formats() -> None:
    """to_openai, to_anthropic and to_gemini return each provider's tool shape."""
    tool = Tool(func_callable=add)
    params = tool.schema
    assert tool.to_openai() == {
        "type": "function",
        "function": {"name": "add", "description": "Add two integers.", "parameters": params},
    }
    assert tool.to_anthropic() == {
        "name": "add",
        "description": "Add two integers.",
        "input_schema": params,
    }
    assert tool.to_gemini() == {
        "name": "add",
        "description": "Add two integers.",
        "parameters": params,
    }


def test_gemini_schema_drops_unsupported_keys() -> None:
    """Gemini's declaration inlines refs and drops titles, defaults and additionalProperties."""

    class Inner(BaseModel):
        city: str

    class Outer(BaseModel):
        where: Inner
        extra: dict[str, int] = {}
        note: str | None = None

    def f(where: dict, extra: dict, note: str | None = None) -> None:
        return None

    declaration = Tool(func_callable=f, config={"request_options": Outer}).to_gemini()
    params = declaration["parameters"]
    text = repr(params)
    for key in ("$ref", "$defs", "title", "default", "additionalProperties"):
        assert key not in text
    assert params["properties"]["where"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    assert params["properties"]["note"] == {"type": "string", "nullable": True}
    assert params["required"] == ["where"]

    def nothing() -> None:
        return None

    assert "parameters" not in Tool(func_callable=nothing).to_gemini()


async def test_positional_only_parameters_are_passed_by_position() -> None:
    """A builtin with a positional-only parameter is called correctly by name."""
    model = iModel(backend=Tool(func_callable=len, config={"name": "length"}))
    assert model.backend.required_fields == frozenset({"obj"})
    calling = await model.invoke(obj=[1, 2, 3])
    assert calling.response.data == 3


async def test_sync_tool_that_times_out_keeps_running_in_its_thread() -> None:
    """A timed-out sync tool raises TimeoutError while its thread runs on to completion."""
    release, finished = threading.Event(), threading.Event()

    def slow() -> None:
        release.wait(5)
        finished.set()

    with pytest.raises(errors.TimeoutError):
        await Tool(func_callable=slow).call({}, timeout=0.01)
    assert not finished.is_set()
    release.set()
    assert await asyncio.to_thread(finished.wait, 5)


async def test_open_schemas_accept_extra_arguments() -> None:
    """A function taking **kwargs, or a schema allowing additionalProperties, takes extras."""

    def echo(a: int, **kwargs: Any) -> dict[str, Any]:
        return {"a": a, **kwargs}

    response = await iModel(backend=Tool(func_callable=echo)).invoke(a=1, extra="x")
    assert response.response.data == {"a": 1, "extra": "x"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    closed = Tool(func_callable=echo, tool_schema=schema)
    with pytest.raises(ValueError, match="unknown argument"):
        closed.create_payload({"a": 1, "extra": "x"})
    opened = Tool(func_callable=echo, tool_schema={**schema, "additionalProperties": True})
    assert opened.create_payload({"a": 1, "extra": "x"}) == {"a": 1, "extra": "x"}
