"""Requests checked without pydantic give what pydantic gives, and refuse nothing themselves.

``plain_payload`` is a shortcut of ``model_validate(request).to_payload()``: for thousands of
random requests against every request schema of the library, whenever it answers, pydantic
accepts the request and gives the same payload; whenever pydantic refuses or coerces, it
leaves the request to pydantic.
"""

from __future__ import annotations

import math
import random
import types
import typing
from typing import Any

import pytest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticUndefined

from lionpride import errors
from lionpride.services.providers.anthropic_messages import CreateMessageRequest
from lionpride.services.providers.embeddings import GeminiEmbeddingsRequest, OpenAIEmbeddingsRequest
from lionpride.services.providers.gemini import GenerateContentRequest
from lionpride.services.providers.oai_chat import OAIChatEndpoint, OpenAIChatCompletionsRequest
from lionpride.services.providers.oai_responses import ResponsesRequest
from lionpride.services.types import _fast_request
from lionpride.services.types._fast_request import plain_payload
from lionpride.services.types.request import RequestModel
from lionpride.services.types.response import (
    NormalizedResponse,
    ToolCall,
    Usage,
    normalized,
    usage_of,
)

SCHEMAS = [
    OpenAIChatCompletionsRequest,
    ResponsesRequest,
    CreateMessageRequest,
    GenerateContentRequest,
    OpenAIEmbeddingsRequest,
    GeminiEmbeddingsRequest,
]


class _Text(str):
    """A str subclass: pydantic may turn it into a plain str, so the shortcut leaves it."""


#: Values of every field's wrong type, out of range, or coercible by pydantic.
JUNK: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    3,
    2.5,
    -0.5,
    1e9,
    math.nan,
    math.inf,
    "",
    "x",
    "3",
    "1.5",
    _Text("t"),
    b"bytes",
    [],
    [1, 2],
    ["a", "b"],
    [[1, 2]],
    [{"role": "user", "content": "x"}],
    [{"role": "robot"}],
    [{"role": "user", "content": 3}],
    [{1: "x"}],
    ("a", "b"),
    {},
    {"a": 1},
    {"a": "b"},
    {1: 2},
    {"a": True},
    object(),
]


def _good(annotation: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value of ``annotation``'s exact type (sometimes at the edge of a constraint)."""
    if annotation is Any:
        return rng.choice(["a", 1, {"k": [1]}, None])
    if annotation is str:
        return rng.choice(["", "gpt", "é", "x" * 300])
    if annotation is bool:
        return rng.choice([True, False])
    if annotation is int:
        return rng.choice([-1, 0, 1, 2, 20, 21, 10**20])
    if annotation is float:
        return rng.choice([-2.5, -0.0, 0.0, 0.5, 1.0, 2.0, 2.0001, 1, 2, 0])
    if annotation is type(None):
        return None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _good(rng.choice(args), rng, depth)
    if origin is list:
        size = rng.choice([0, 1, 1, 2, 3]) if depth < 2 else 0
        if args and args[0] == dict[str, Any] and rng.random() < 0.7:
            return [
                {"role": rng.choice(["user", "assistant", "system", "tool"]), "content": "hi"}
                for _ in range(size or 1)
            ]
        return [_good(args[0], rng, depth + 1) for _ in range(size)]
    if origin is dict:
        return {f"k{i}": _good(args[1], rng, depth + 1) for i in range(rng.choice([0, 1, 2]))}
    raise AssertionError(f"no generator for {annotation}")


def _random_request(schema: type[BaseModel], rng: random.Random) -> dict[str, Any]:
    fields = schema.model_fields
    names = [n for n, f in fields.items() if f.is_required() or rng.random() < 0.15]
    if rng.random() < 0.1 and names:
        names.remove(rng.choice(names))  # a required field missing, sometimes
    request = {}
    for name in names:
        if rng.random() < 0.9:
            request[name] = _good(fields[name].annotation, rng)
        else:
            request[name] = rng.choice(JUNK)
    return request


def _pydantic(schema: type[RequestModel], request: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return schema.model_validate(request).to_payload()
    except PydanticValidationError:
        return None


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (``1 == 1.0`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_every_builtin_schema_takes_the_shortcut(schema: type[RequestModel]) -> None:
    # A schema the shortcut cannot follow would quietly send every call through pydantic.
    assert _fast_request._plan(schema) is not None


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_random_requests_get_what_pydantic_gives_or_go_to_pydantic(
    schema: type[RequestModel],
) -> None:
    rng = random.Random(f"plain-{schema.__name__}")
    answered = refused_by_pydantic = 0
    for _ in range(3000):
        request = _random_request(schema, rng)
        expected = _pydantic(schema, request)
        got = plain_payload(schema, request)
        if expected is None:
            refused_by_pydantic += 1
            assert got is None, request  # never accepts what pydantic refuses
        if got is not None:
            answered += 1
            assert expected is not None and _same(got, expected), request
    # The draw exercises both sides.
    assert answered > 500 and refused_by_pydantic > 500, (answered, refused_by_pydantic)


def test_the_payload_is_a_copy_of_the_callers_request() -> None:
    messages = [{"role": "user", "content": "hi"}]
    request = {"model": "m", "messages": messages, "logit_bias": {"1": 2}}
    payload = plain_payload(OpenAIChatCompletionsRequest, request)
    assert payload == {"model": "m", "messages": messages, "logit_bias": {"1": 2.0}}
    assert payload is not None
    assert payload["messages"] is not messages and payload["messages"][0] is not messages[0]
    messages.append({"role": "user", "content": "later"})  # the caller goes on with its list
    assert len(payload["messages"]) == 1


def test_ints_for_floats_become_floats_and_none_drops_a_default() -> None:
    payload = plain_payload(
        CreateMessageRequest,
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 1},
    )
    assert payload is not None and type(payload["temperature"]) is float
    assert payload["max_tokens"] == CreateMessageRequest.model_fields["max_tokens"].default
    assert plain_payload(
        OpenAIChatCompletionsRequest,
        {"model": "m", "messages": [{"role": "user"}], "temperature": None},
    ) == {"model": "m", "messages": [{"role": "user"}]}


def test_a_field_validator_that_objects_leaves_the_error_to_pydantic() -> None:
    endpoint = OAIChatEndpoint(provider="openai", api_key=SecretStr("k"))
    request = {"model": "m", "messages": [{"role": "robot", "content": "x"}]}
    assert plain_payload(OpenAIChatCompletionsRequest, request) is None
    with pytest.raises(errors.ValidationError, match=r"messages\[0\]\.role.*'robot'"):
        endpoint.create_payload(request)


class _Reply(BaseModel):
    text: str


class _Aliased(RequestModel):
    model: str = Field(alias="modelName")


class _Checked(RequestModel):
    low: int
    high: int

    @model_validator(mode="after")
    def _ordered(self) -> _Checked:
        if self.low > self.high:
            raise ValueError("low > high")
        return self


class _Strict(RequestModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    x: float


class _Nested(RequestModel):
    reply: _Reply


class _Choice(RequestModel):
    mode: typing.Literal["a", "b"]


class _Overlap(RequestModel):
    value: int | float


class _Pattern(RequestModel):
    name: str = Field(pattern=r"^[a-z]+$")


class _WithInfo(RequestModel):
    x: int

    @field_validator("x")
    @classmethod
    def _positive(cls, value: int, info: ValidationInfo) -> int:
        if value < 0:
            raise ValueError("negative")
        return value


class _Before(RequestModel):
    x: int

    @field_validator("x", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) else value


UNFOLLOWED = [_Aliased, _Checked, _Strict, _Nested, _Choice, _Overlap, _Pattern, _WithInfo, _Before]


@pytest.mark.parametrize("schema", UNFOLLOWED, ids=lambda s: s.__name__)
def test_a_schema_it_cannot_follow_goes_to_pydantic_every_time(
    schema: type[RequestModel],
) -> None:
    assert _fast_request._plan(schema) is None
    first = next(iter(schema.model_fields))
    assert plain_payload(schema, {first: "x"}) is None


def test_a_model_that_is_not_a_request_model_goes_to_pydantic() -> None:
    assert plain_payload(_Reply, {"text": "x"}) is None


def test_a_schema_of_ones_own_with_plain_fields_takes_the_shortcut() -> None:
    class Mine(RequestModel):
        prompt: str = Field(min_length=1)
        n: int = Field(default=1, ge=1, le=4)
        tags: list[str] | None = None

        @field_validator("prompt")
        @classmethod
        def _stripped(cls, value: str) -> str:
            return value.strip()

    assert plain_payload(Mine, {"prompt": " hi ", "tags": ["a"]}) == {
        "prompt": "hi",
        "n": 1,
        "tags": ["a"],
    }
    assert plain_payload(Mine, {"prompt": "hi", "n": 5}) is None  # over le: pydantic says so
    assert plain_payload(Mine, {"prompt": "hi", "tags": ("a",)}) is None  # pydantic coerces
    assert plain_payload(Mine, {"n": 2}) is None  # a required field missing


# -- the response's parts ------------------------------------------------------------------------


def test_counts_of_the_right_type_build_the_same_usage_and_others_are_validated() -> None:
    counts = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    usage = usage_of(counts)
    assert usage == Usage(**counts) and usage.model_fields_set == set(counts)
    assert usage_of({"input_tokens": "4"}).input_tokens == 4  # coerced, as validation does
    with pytest.raises(ValueError):
        usage_of({"input_tokens": -1})
    with pytest.raises(ValueError):
        usage_of({"input_tokens": 1.5})
    assert usage_of({"tokens": 1}) == Usage()  # not a field: ignored, as validation does


def test_normalized_parts_build_the_same_response_and_odd_ones_are_validated() -> None:
    parts: dict[str, Any] = {
        "data": "hi",
        "tool_calls": [ToolCall(id="c1", name="f", arguments={"a": 1})],
        "usage": Usage(input_tokens=1),
        "finish_reason": "tool_calls",
        "metadata": {"model": "m"},
        "raw_response": {"id": "x"},
    }
    built = normalized(**parts)
    assert built == NormalizedResponse(**parts)
    assert built.model_fields_set == NormalizedResponse(**parts).model_fields_set
    with pytest.raises(ValueError):
        normalized(**{**parts, "finish_reason": "done"})
    with pytest.raises(ValueError):
        normalized(**{**parts, "tool_calls": [{"name": 3}]})
    as_dicts = normalized(**{**parts, "tool_calls": [{"id": "c1", "name": "f"}]})
    assert as_dicts.tool_calls == [ToolCall(id="c1", name="f")]  # validated into ToolCalls


def test_the_defaults_helper_matches_the_schema() -> None:
    # The shortcut's defaults are the schema's own non-None defaults, as to_payload sends.
    for schema in SCHEMAS:
        plan = _fast_request._plan(schema)
        assert plan is not None
        expected = {
            name: info.default
            for name, info in schema.model_fields.items()
            if info.default is not None and info.default is not PydanticUndefined
        }
        assert plan.defaults == expected
