"""Trusted construction builds exactly what validation builds, or falls back to validation."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from lionpride.core._trusted import build_trusted
from lionpride.core.element import Element, new_id
from lionpride.services.types.backend import Calling, ServiceBackend, ServiceConfig
from lionpride.services.types.response import NormalizedResponse, Usage, normalized


class _Backend(ServiceBackend):
    pass


def _backend() -> _Backend:
    return _Backend(config=ServiceConfig(provider="p", name="n"))


def _same(a: BaseModel, b: BaseModel, skip: set[str]) -> None:
    assert type(a) is type(b)
    assert a.model_dump(exclude=skip) == b.model_dump(exclude=skip)
    assert a.model_fields_set == b.model_fields_set
    assert list(a.__dict__) == list(b.__dict__)
    assert a.__pydantic_extra__ == b.__pydantic_extra__
    assert a.__pydantic_private__ == b.__pydantic_private__


def test_a_calling_built_trusted_equals_one_built_by_validation() -> None:
    values: dict[str, Any] = {"backend": _backend(), "payload": {"x": 1}, "reserved_tokens": 7}
    trusted = build_trusted(Calling, values)
    validated = Calling(**values)
    _same(trusted, validated, skip={"id", "created_at"})
    assert trusted.reserved_tokens == 7 and trusted.timeout is None
    assert trusted.execution is not validated.execution  # factories run per instance
    again = build_trusted(Calling, values)
    assert trusted.metadata == {} and trusted.metadata is not again.metadata
    assert trusted.id != validated.id and trusted.id.version == 4


def test_a_normalized_response_built_trusted_equals_one_built_by_validation() -> None:
    parts: dict[str, Any] = {
        "data": "hi",
        "tool_calls": [],
        "usage": Usage(input_tokens=3, output_tokens=1, total_tokens=4),
        "finish_reason": "stop",
        "metadata": {"model": "m"},
        "raw_response": {"a": 1},
    }
    _same(normalized(**parts), NormalizedResponse(**parts), skip=set())
    assert normalized(**parts).status == "success" and normalized(**parts).error is None


def test_a_missing_required_field_goes_through_validation() -> None:
    with pytest.raises(ValidationError, match="backend"):
        build_trusted(Calling, {"payload": {}})


def test_classes_validation_alone_builds_right_are_validated() -> None:
    class Checked(Element):
        n: int = 0

        @model_validator(mode="after")
        def _double(self) -> Checked:
            object.__setattr__(self, "n", self.n * 2)
            return self

    class WithMutableDefault(BaseModel):
        items: list[int] = [1]  # validation copies it per instance

    assert build_trusted(Checked, {"n": 2}).n == 4
    one, two = build_trusted(WithMutableDefault, {}), build_trusted(WithMutableDefault, {})
    assert one.items == [1] and one.items is not two.items


def test_each_subclass_gets_its_own_plan() -> None:
    class Base(BaseModel):
        a: int = 1

    class Child(Base):
        b: list[int] = Field(default_factory=list)

    assert build_trusted(Base, {}).model_dump() == {"a": 1}
    assert build_trusted(Child, {"a": 5}).model_dump() == {"a": 5, "b": []}
    assert build_trusted(Base, {}).model_dump() == {"a": 1}


def test_new_ids_are_random_version_4_uuids() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    for uid in list(ids)[:100]:
        assert uid.version == 4 and uid.variant == "specified in RFC 4122"
        assert str(uid) == str(type(uid)(str(uid)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first id and leave at once
        os.write(write, new_id().bytes)
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_id) == 16 and child_id != new_id().bytes


def test_a_subclass_with_its_own_init_or_field_checks_is_validated() -> None:
    """A user's Calling subclass is built exactly as validation builds it."""

    class Audited(Calling):
        def __init__(self, **data: Any) -> None:
            super().__init__(**data)
            self.metadata["audited"] = True

    class Pinned(Calling):
        @field_validator("payload")
        @classmethod
        def _pin(cls, payload: dict[str, Any]) -> dict[str, Any]:
            return {**payload, "user": "tenant-42"}

    values: dict[str, Any] = {"backend": _backend(), "payload": {"x": 1}}
    assert build_trusted(Audited, values).metadata == {"audited": True}
    assert build_trusted(Pinned, values).payload == {"x": 1, "user": "tenant-42"}
    # A validator on a field that is not given does not stop the fast path.
    assert build_trusted(Pinned, {"backend": values["backend"]}).payload == {}
