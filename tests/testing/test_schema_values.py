"""Values made up from a JSON schema fit the schema."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from lionpride.testing._schema_values import value_for_schema

SCHEMAS: list[tuple[str, dict[str, Any]]] = [
    ("string", {"type": "string"}),
    ("integer-bounds", {"type": "integer", "minimum": 5, "maximum": 9}),
    ("exclusive-bounds", {"type": "number", "exclusiveMinimum": 10, "exclusiveMaximum": 11}),
    ("below-one", {"type": "integer", "maximum": -3}),
    ("multiple-of", {"type": "integer", "minimum": 7, "multipleOf": 5}),
    ("boolean", {"type": "boolean"}),
    ("null", {"type": "null"}),
    ("enum", {"type": "string", "enum": ["celsius", "fahrenheit"]}),
    ("const", {"const": 42}),
    ("string-length", {"type": "string", "minLength": 12, "maxLength": 14}),
    ("short-string", {"type": "string", "maxLength": 2}),
    ("formats", {"type": "string", "format": "date-time"}),
    (
        "nested",
        {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1},
                "where": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                    "required": ["lat", "lon"],
                    "additionalProperties": False,
                },
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            },
            "required": ["city", "where"],
            "additionalProperties": False,
        },
    ),
    ("empty-array", {"type": "array", "items": {"type": "integer"}, "maxItems": 0}),
    ("nullable-union", {"type": ["null", "integer"]}),
    ("any-of", {"anyOf": [{"type": "null"}, {"type": "string", "enum": ["x"]}]}),
    (
        "all-of",
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
            ]
        },
    ),
    (
        "refs",
        {
            "$defs": {
                "Point": {
                    "type": "object",
                    "properties": {"x": {"type": "integer"}},
                    "required": ["x"],
                }
            },
            "type": "object",
            "properties": {"points": {"type": "array", "items": {"$ref": "#/$defs/Point"}}},
            "required": ["points"],
        },
    ),
    (
        "recursive",
        {
            "$defs": {
                "Node": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    },
                    "required": ["name"],
                }
            },
            "$ref": "#/$defs/Node",
        },
    ),
]


@pytest.mark.parametrize("schema", [pytest.param(s, id=name) for name, s in SCHEMAS])
def test_value_fits_the_schema(schema: dict[str, Any]) -> None:
    """The made-up value validates against its schema."""
    jsonschema.validate(value_for_schema(schema), schema)


def test_defaults_and_enums_are_used() -> None:
    """A default wins, then the first enum value; every declared property is filled."""
    schema = {
        "type": "object",
        "properties": {
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "default": 3},
            "note": {"type": "string"},
        },
        "required": ["unit"],
    }
    assert value_for_schema(schema) == {"unit": "celsius", "days": 3, "note": "value"}


def test_gemini_openapi_schema_reads_the_same() -> None:
    """Gemini's upper-case type names give values of the same types."""
    schema = {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING"},
            "count": {"type": "INTEGER"},
            "ok": {"type": "BOOLEAN"},
            "hours": {"type": "ARRAY", "items": {"type": "NUMBER"}},
        },
        "required": ["city"],
    }
    assert value_for_schema(schema) == {"city": "value", "count": 1, "ok": True, "hours": [1]}


def test_recursion_ends() -> None:
    """A recursive schema ends once only required properties are left to fill."""
    schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"next": {"$ref": "#/$defs/Node"}},
            }
        },
        "$ref": "#/$defs/Node",
    }
    value = value_for_schema(schema)
    depth = 0
    while value:
        value, depth = value["next"], depth + 1
    assert 0 < depth < 20
