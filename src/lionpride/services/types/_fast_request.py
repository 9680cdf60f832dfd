"""Checking a flat request against its schema without pydantic, when that gives the same.

A request schema (:class:`~lionpride.services.types.request.RequestModel`) is validated once
per call. For the usual request, every value already has its field's exact type (``str``,
``int``, ``float``, ``bool``, JSON lists and dicts of them), and validation gives back what
it got, copied. :func:`plain_payload` checks such a request in plain Python, field by field
(only the fields given, where the schema's validator visits every field), and returns what
``model_validate(request).to_payload()`` would, equal key for key. Anything else (a value of
another type that pydantic might coerce, a value out of range, a field validator that
objects, a schema it cannot follow) returns ``None``, and the caller validates with pydantic,
which gives the error message or the coerced value. So this path never refuses a request and
never accepts one that pydantic would refuse.

Why: the request's validation ran in the hottest part of a call, and in a program that makes
one call at a time its cost there is several times its cost in a tight loop (the validator's
code and schema are cold in the processor's caches after each network wait). ``bench_tricks``
prices it at concurrency 1.

What a schema may hold for this path (else every request of it goes to pydantic):
``str``, ``int``, ``float``, ``bool``, ``Any``, ``dict[str, X]``, ``list[X]`` of these,
unions whose members accept disjoint Python types, ``None`` in a union; the constraints
``ge``/``gt``/``le``/``lt``/``min_length``/``max_length``; field validators of mode
``"after"`` taking only the value; no model validators, aliases or ``str_*``/``strict``
settings.
"""

from __future__ import annotations

import inspect
import operator
import types
import typing
from collections.abc import Callable
from typing import Any

import annotated_types
from pydantic import BaseModel

from lionpride.services.types.request import RequestModel

__all__ = ["plain_payload"]

#: What a check returns for a value it cannot vouch for (pydantic decides instead).
_MISS: Any = object()
_Check = Callable[[Any], Any]
#: Model settings that do not change what validation returns for a value of the exact type.
_NEUTRAL_SETTINGS = frozenset(
    {
        "extra",
        "populate_by_name",
        "title",
        "frozen",
        "protected_namespaces",
        "defer_build",
        "json_schema_extra",
        "use_attribute_docstrings",
        "arbitrary_types_allowed",
    }
)
_PLAN = "__lion_plain_plan__"


class _Plan:
    """One schema's checks: a check per field, the fields that may be ``None`` (dropped
    from the payload, as ``to_payload`` drops them), the required fields, and the defaults
    every payload carries."""

    __slots__ = ("checks", "defaults", "nullable", "required")

    def __init__(self, model: type[RequestModel]) -> None:
        config = model.model_config
        if set(config) - _NEUTRAL_SETTINGS or config.get("extra") not in (None, "forbid"):
            raise TypeError("model settings")
        decorators = model.__pydantic_decorators__
        if (
            decorators.model_validators
            or decorators.root_validators
            or decorators.validators
            or model.__pydantic_post_init__ is not None
        ):
            raise TypeError("model validators")
        after = _after_validators(model)
        self.checks: dict[str, _Check] = {}
        self.nullable: set[str] = set()
        self.required: frozenset[str] = frozenset(
            name for name, info in model.model_fields.items() if info.is_required()
        )
        for name, info in model.model_fields.items():
            if info.alias or info.validation_alias:
                raise TypeError(f"{name}: alias")
            annotation, nullable = _strip_none(info.annotation)
            self.checks[name] = _field_check(
                _check_for(annotation), _bounds(info.metadata, annotation), after.get(name, [])
            )
            if nullable:
                self.nullable.add(name)
        #: The schema's non-``None`` defaults, which every payload carries.
        self.defaults = dict(model._sent_defaults)


def plain_payload(model: type[BaseModel], request: dict[str, Any]) -> dict[str, Any] | None:
    """What validating ``request`` into ``model`` and ``to_payload()`` give, or ``None``
    when only pydantic can say (see the module docstring). Once per call.

    ``request`` holds only fields of ``model`` (the caller checked its keys).
    """
    # The plan is the class's own (a subclass inherits the attribute, not the plan).
    found: tuple[type[BaseModel], _Plan | None] | None = getattr(model, _PLAN, None)
    if found is None or found[0] is not model:
        found = (model, _plan(model))
        setattr(model, _PLAN, found)
    plan = found[1]
    if plan is None or not plan.required <= request.keys():
        return None
    out = dict(plan.defaults)
    checks = plan.checks
    for name, value in request.items():
        if value is None:
            if name not in plan.nullable:
                return None
            out.pop(name, None)
            continue
        checked = checks[name](value)
        if checked is _MISS:
            return None
        out[name] = checked
    return out


def _plan(model: type[BaseModel]) -> _Plan | None:
    if not issubclass(model, RequestModel):
        return None  # its dump is ``model_dump``'s, with aliases and serializers
    try:
        return _Plan(model)
    except TypeError:  # the schema holds something this path does not follow
        return None


# -- checks by type ----------------------------------------------------------------------------


def _strip_none(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``None``, and whether ``None`` was a member."""
    if _is_union(annotation):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) < len(typing.get_args(annotation)):
            return (members[0] if len(members) == 1 else typing.Union[tuple(members)]), True  # noqa: UP007
    return annotation, False


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _check_for(annotation: Any) -> _Check:
    """The check of a value against ``annotation``: the validated value, or ``_MISS``."""
    if annotation is Any:
        return _same
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and len(args) == 2 and args[0] is str:
        return _dict_of(_check_for(args[1]), plain=args[1] is Any)
    if origin is list and len(args) == 1:
        return _list_of(_check_for(args[0]))
    if _is_union(annotation):
        kinds = [_kinds(a) for a in args]
        for i, kind in enumerate(kinds):
            for other in kinds[i + 1 :]:
                if kind & other:
                    # Two members take the same Python type: which one pydantic's smart
                    # union picks depends on more than the type.
                    raise TypeError(f"overlapping union {annotation}")
        return _first_of(tuple(_check_for(a) for a in args))
    raise TypeError(f"type {annotation}")


def _kinds(annotation: Any) -> frozenset[str]:
    """The Python types a check accepts, as names (a list by its items' types)."""
    if annotation in (str, bool, int):
        return frozenset({annotation.__name__})
    if annotation is float:
        return frozenset({"float", "int"})
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        return frozenset({"dict"})
    if origin is list and len(args) == 1:
        # An empty list passes every list member alike: each gives ``[]``.
        return frozenset(f"list[{kind}]" for kind in _kinds(args[0]))
    raise TypeError(f"union member {annotation}")


def _same(value: Any) -> Any:
    return value


def _str(value: Any) -> Any:
    return value if type(value) is str else _MISS


def _int(value: Any) -> Any:
    return value if type(value) is int else _MISS


def _bool(value: Any) -> Any:
    return value if type(value) is bool else _MISS


def _float(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return value
    return float(value) if kind is int else _MISS


_SCALARS: dict[Any, _Check] = {str: _str, int: _int, bool: _bool, float: _float}


def _dict_of(values: _Check, *, plain: bool) -> _Check:
    def check(value: Any) -> Any:
        if type(value) is not dict:
            return _MISS
        for key in value:
            if type(key) is not str:
                return _MISS
        if plain:
            return dict(value)
        out = {}
        for key, item in value.items():
            checked = values(item)
            if checked is _MISS:
                return _MISS
            out[key] = checked
        return out

    return check


def _list_of(items: _Check) -> _Check:
    def check(value: Any) -> Any:
        if type(value) is not list:
            return _MISS
        out = []
        for item in value:
            checked = items(item)
            if checked is _MISS:
                return _MISS
            out.append(checked)
        return out

    return check


def _first_of(members: tuple[_Check, ...]) -> _Check:
    def check(value: Any) -> Any:
        for member in members:
            checked = member(value)
            if checked is not _MISS:
                return checked
        return _MISS

    return check


# -- constraints and field validators ----------------------------------------------------------


#: A constraint: (comparison, bound, whether the value's length is compared).
_Bound = tuple[Callable[[Any, Any], bool], Any, bool]


#: The constraints followed: (kind, comparison, the bound's attribute, by the length).
_CONSTRAINTS = (
    (annotated_types.Ge, operator.ge, "ge", False),
    (annotated_types.Gt, operator.gt, "gt", False),
    (annotated_types.Le, operator.le, "le", False),
    (annotated_types.Lt, operator.lt, "lt", False),
    (annotated_types.MinLen, operator.ge, "min_length", True),
    (annotated_types.MaxLen, operator.le, "max_length", True),
)


def _bounds(metadata: list[Any], annotation: Any) -> list[_Bound]:
    """The field's constraints (``ge``, ``min_length``...); raises for any other."""
    bounds: list[_Bound] = []
    for item in metadata:
        for kind, compare, attribute, by_length in _CONSTRAINTS:
            if isinstance(item, kind):
                bounds.append((compare, getattr(item, attribute), by_length))
                break
        else:
            raise TypeError(f"constraint {item!r}")
    if bounds and _is_union(annotation):
        raise TypeError("constraints on a union")
    return bounds


def _field_check(
    check: _Check, bounds: list[_Bound], validators: list[Callable[[Any], Any]]
) -> _Check:
    """``check``, then the constraints, then the field validators: one call per field."""
    if not bounds and not validators:
        return check

    def field_check(value: Any) -> Any:
        checked = check(value)
        if checked is _MISS:
            return _MISS
        for compare, bound, by_length in bounds:
            # NaN compares false everywhere: it misses, and pydantic says why.
            if not compare(len(checked) if by_length else checked, bound):
                return _MISS
        try:
            for validator in validators:
                checked = validator(checked)
        except (ValueError, AssertionError):
            return _MISS  # pydantic runs it again and reports the error
        return checked

    return field_check


def _after_validators(model: type[BaseModel]) -> dict[str, list[Callable[[Any], Any]]]:
    """Each field's ``mode="after"`` validators, bound to the model, in declaration order."""
    out: dict[str, list[Callable[[Any], Any]]] = {}
    for name, decorator in model.__pydantic_decorators__.field_validators.items():
        info = decorator.info
        bound = getattr(model, name)
        if info.mode != "after" or "*" in info.fields or _takes_info(bound):
            raise TypeError(f"field validator {name}")
        for field in info.fields:
            out.setdefault(field, []).append(bound)
    return out


def _takes_info(validator: Callable[..., Any]) -> bool:
    try:
        return len(inspect.signature(validator).parameters) != 1
    except (TypeError, ValueError):
        return True
