"""Building pydantic models from values that need no validation (the hot path only).

Validation is what makes a model safe to build from a user's input, and it is cheap, but
not free: on a call that crosses the network, a few validated models per call are a
measurable share of the library's own CPU time. Values the library computed itself (a
Calling's backend and payload, a response normalized from checked parts) are valid by
construction, and :func:`build_trusted` puts them in place directly, with every other field
defaulted exactly as validation would default it.

A class for which that cannot be done faithfully (its own ``__init__``, model validators,
``model_post_init``, private attributes, extra fields, defaults that validation would copy)
is built by validation instead, and so are values that miss a required field or that a
field validator would see.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

__all__ = ["build_trusted"]

M = TypeVar("M", bound=BaseModel)

_IMMUTABLE = (type(None), bool, int, float, str, bytes, tuple, frozenset)
_PLAN = "__lion_trusted_plan__"
_set = object.__setattr__
_new = object.__new__


class _Plan:
    """How to build one class: ``template`` holds every field in declaration order with its
    static default (``None`` standing in for the others), ``factories`` fill the
    ``default_factory`` fields, ``required`` are the fields the values must hold, and
    ``checked`` those a field validator looks at (given any of them, validation builds)."""

    __slots__ = ("checked", "factories", "required", "template")

    def __init__(self, model: type[BaseModel]) -> None:
        self.template: dict[str, Any] = {}
        self.factories: list[tuple[str, Callable[[], Any]]] = []
        required = set()
        for name, info in model.__pydantic_fields__.items():
            self.template[name] = None
            factory = info.default_factory
            if factory is not None:
                if getattr(info, "default_factory_takes_validated_data", False):
                    raise TypeError(f"{name}: its default factory reads other fields")
                self.factories.append((name, factory))  # type: ignore[arg-type]
            elif info.default is PydanticUndefined:
                required.add(name)
            elif isinstance(info.default, _IMMUTABLE):
                self.template[name] = info.default
            else:
                raise TypeError(f"{name}: validation copies its mutable default")
        self.required = frozenset(required)
        checked: set[str] = set()
        for validator in model.__pydantic_decorators__.field_validators.values():
            fields = validator.info.fields
            checked.update(model.__pydantic_fields__ if "*" in fields else fields)
        self.checked = frozenset(checked)


def _plan_for(model: type[BaseModel]) -> _Plan | None:
    if (
        model.__init__ is not BaseModel.__init__
        or model.__pydantic_decorators__.model_validators
        or model.__pydantic_post_init__ is not None
        or model.__private_attributes__
        or model.model_config.get("extra") == "allow"
    ):
        return None
    try:
        return _Plan(model)
    except TypeError:
        return None


def build_trusted(model: type[M], values: Mapping[str, Any]) -> M:
    """Build ``model`` from ``values`` that are already valid for their fields.

    Field validators do not run on ``values``; the fields not given get their defaults.
    ``model_fields_set`` is the keys of ``values``, as after ``model(**values)``.
    """
    # A plan is the class's own (a subclass inherits the attribute, not the plan): one
    # plain attribute read, where ``model.__dict__`` would build a mapping proxy per call.
    found: tuple[type[BaseModel], _Plan | None] | None = getattr(model, _PLAN, None)
    if found is None or found[0] is not model:
        found = (model, _plan_for(model))
        setattr(model, _PLAN, found)
    plan = found[1]
    if plan is None or not plan.required <= values.keys() or not plan.checked.isdisjoint(values):
        return model(**values)
    data = {**plan.template, **values}
    for name, factory in plan.factories:
        if name not in values:
            data[name] = factory()
    obj = _new(model)
    _set(obj, "__dict__", data)
    _set(obj, "__pydantic_fields_set__", set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj
