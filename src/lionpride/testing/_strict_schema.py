"""OpenAI's rules for a JSON schema sent with ``strict: true``, in the API's own words.

A strict ``response_format`` schema or function ``parameters`` must have an object at the root,
``additionalProperties: false`` on every object and every property listed in ``required``; the
API refuses the request otherwise. A schema made by ``pydantic``'s ``model_json_schema()``
breaks the first two rules until a client fixes it, which is why they are checked.
"""

from __future__ import annotations

from typing import Any

from lionpride.testing._rejection import Rejected

__all__ = ["check_strict_schema"]

# Where in the schema a rule is broken (the keys down to it), and which rule.
Fault = tuple[tuple[str, ...], str]

# Keys under which a schema holds further schemas: one schema, or a map or list of them.
_ONE = ("items", "not")
_MAP = ("properties", "$defs", "definitions")
_LIST = ("anyOf", "prefixItems")


def check_strict_schema(schema: Any, owner: str, *, param: str, code: str | None) -> None:
    """Raise :class:`Rejected` if ``schema`` breaks OpenAI's strict-mode rules.

    Args:
        schema: The JSON schema.
        owner: What the schema belongs to, as the error says it (``function 'get_weather'``).
        param: OpenAI's ``param`` for the error.
        code: OpenAI's ``code`` for the error.
    """
    if not isinstance(schema, dict) or not _is_object(schema):
        kind = schema.get("type") if isinstance(schema, dict) else schema
        fault: Fault | None = (
            (),
            f"schema must be a JSON Schema of 'type: \"object\"', got {kind!r}.",
        )
    else:
        fault = _fault(schema, ())
    if fault is not None:
        context, problem = fault
        message = f"Invalid schema for {owner}: In context={context}, {problem}"
        raise Rejected(message, param=param, code=code)


def _is_object(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind)


def _fault(schema: Any, context: tuple[str, ...]) -> Fault | None:
    """The first place in ``schema`` that breaks a rule, and what it breaks."""
    if not isinstance(schema, dict):
        return None
    if _is_object(schema) or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return context, "'additionalProperties' is required to be supplied and to be false."
        properties = schema.get("properties")
        required = schema.get("required")
        listed = required if isinstance(required, list) else []
        missing = [
            n for n in (properties if isinstance(properties, dict) else ()) if n not in listed
        ]
        if missing:
            return context, (
                "'required' is required to be supplied and to be an array including every key "
                f"in properties. Missing '{missing[0]}'."
            )
    children: list[tuple[tuple[str, ...], Any]] = []
    for key in _ONE:
        children.append(((*context, key), schema.get(key)))
    for key in _MAP:
        found = schema.get(key)
        if isinstance(found, dict):
            children += [((*context, key, name), child) for name, child in found.items()]
    for key in _LIST:
        found = schema.get(key)
        if isinstance(found, list):
            children += [((*context, key, str(i)), child) for i, child in enumerate(found)]
    for where, child in children:
        fault = _fault(child, where)
        if fault is not None:
            return fault
    return None
