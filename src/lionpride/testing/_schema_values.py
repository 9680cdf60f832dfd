"""A value that fits a JSON schema, made up from the schema alone.

FakeProvider answers a forced tool call or a structured-output request with arguments or JSON
built here: the ``default`` or ``const`` where the schema gives one, else the first ``enum``
value, else a value of the declared type within its bounds; every property of an object (the
required ones at least), arrays of ``minItems`` (at least one) items. ``$ref`` into ``$defs`` /
``definitions``, ``anyOf``/``oneOf`` (the first branch that is not ``null``) and ``allOf`` are
followed. Gemini's OpenAPI schema dialect (upper-case ``type`` names, ``nullable``) reads the
same way.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["value_for_schema"]

# Deeper than this, a recursive schema ends in the smallest value that still fits.
_MAX_DEPTH = 8

_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "hostname": "example.com",
}


def value_for_schema(schema: Any) -> Any:
    """A JSON value that validates against ``schema`` (a JSON Schema or Gemini Schema dict).

    Args:
        schema: The schema; anything that is not a dict is read as "any value" (``{}``).
    """
    root = schema if isinstance(schema, dict) else {}
    return _value(root, root, 0)


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref`` pointers (``#/$defs/Name``, ``#/definitions/Name``, ``#``)."""
    seen = 0
    while isinstance(schema.get("$ref"), str) and seen < _MAX_DEPTH:
        target: Any = root
        for key in schema["$ref"].removeprefix("#").strip("/").split("/"):
            if key:
                name = key.replace("~1", "/").replace("~0", "~")
                target = target.get(name, {}) if isinstance(target, dict) else {}
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **rest} if isinstance(target, dict) else rest
        seen += 1
    return schema


def _value(schema: dict[str, Any], root: dict[str, Any], depth: int) -> Any:
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        branches = [b for b in _items(schema.get(key)) if isinstance(b, dict)]
        if branches:
            chosen = next((b for b in branches if _type(b, root) != "null"), branches[0])
            return _value({**_without(schema, key), **chosen}, root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged = _without(schema, "allOf")
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged = _merge(merged, _resolve(part, root))
        return _value(merged, root, depth + 1)
    kind = _type(schema, root)
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        return _array(schema, root, depth)
    if kind == "string":
        return _string(schema)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {} if "properties" in schema else "value"


def _type(schema: dict[str, Any], root: dict[str, Any]) -> str | None:
    kind = _resolve(schema, root).get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), kind[0] if kind else None)
    if kind is None and "properties" in schema:
        return "object"
    if kind is None and "items" in schema:
        return "array"
    return str(kind).lower() if kind is not None else None


def _items(value: Any) -> list[Any]:
    """``value`` if it is a list, else no items (a malformed schema reads as unconstrained)."""
    return value if isinstance(value, list) else []


def _without(schema: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}


def _merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    merged = {**left, **right}
    for key in ("properties",):
        if isinstance(left.get(key), dict) and isinstance(right.get(key), dict):
            merged[key] = {**left[key], **right[key]}
    if isinstance(left.get("required"), list) and isinstance(right.get("required"), list):
        merged["required"] = [*left["required"], *right["required"]]
    return merged


def _object(schema: dict[str, Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = [r for r in _items(schema.get("required")) if isinstance(r, str)]
    # Past the depth limit only the required properties are filled, so recursion ends.
    names = required if depth >= _MAX_DEPTH else [*required, *properties]
    value: dict[str, Any] = {}
    for name in names:
        if name not in value:
            spec = properties.get(name)
            value[name] = _value(spec if isinstance(spec, dict) else {}, root, depth + 1)
    return value


def _array(schema: dict[str, Any], root: dict[str, Any], depth: int) -> list[Any]:
    items = schema.get("items")
    items = items if isinstance(items, dict) else {}
    low = schema.get("minItems")
    count = low if isinstance(low, int) else (0 if depth >= _MAX_DEPTH else 1)
    high = schema.get("maxItems")
    if isinstance(high, int):
        count = min(count, high)
    prefix = schema.get("prefixItems")
    values = [_value(p if isinstance(p, dict) else {}, root, depth + 1) for p in _items(prefix)]
    values += [_value(items, root, depth + 1) for _ in range(max(0, count - len(values)))]
    return values


def _string(schema: dict[str, Any]) -> str:
    text = _FORMATS.get(str(schema.get("format")), "value")
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text = text + "x" * (low - len(text))
    if isinstance(high, int):
        text = text[:high]
    return text


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    low = _bound(schema, "minimum", "exclusiveMinimum", integer=integer, up=True)
    high = _bound(schema, "maximum", "exclusiveMaximum", integer=integer, up=False)
    value: float = 1
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        value = math.ceil(value / step) * step
        if high is not None and value > high:
            value -= step
    return int(value) if integer else value


def _bound(
    schema: dict[str, Any], inclusive: str, exclusive: str, *, integer: bool, up: bool
) -> float | None:
    """The tightest bound the schema sets on one side, as an inclusive limit."""
    limit = schema.get(inclusive)
    limit = limit if isinstance(limit, int | float) and not isinstance(limit, bool) else None
    strict = schema.get(exclusive)
    if isinstance(strict, int | float) and not isinstance(strict, bool):
        nudge = 1 if integer else 1e-6
        step = strict + nudge if up else strict - nudge
        if limit is None or (step > limit if up else step < limit):
            limit = step
    if limit is not None and integer:
        limit = math.ceil(limit) if up else math.floor(limit)
    return limit
