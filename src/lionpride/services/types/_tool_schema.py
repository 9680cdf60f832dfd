"""Schema helpers behind :class:`lionpride.services.types.tool.Tool`.

A function's signature and Google-style docstring become a JSON schema; arguments are checked
against a schema's JSON types; a schema is rendered as TypeScript-like text for prompts and
translated into Gemini's OpenAPI-subset dialect. Private to the services package.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import inspect
import json
import re
import types
from collections import abc
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin, get_type_hints

import pydantic
from pydantic_core import to_jsonable_python

from lionpride import errors

__all__ = [
    "_JSONSchema",
    "_explain",
    "_gemini_schema",
    "_parse_docstring",
    "_quoted",
    "_signature_schema",
    "_ts_type",
    "_type_problem",
    "_unwrap_definition",
]

_JSONSchema = dict[str, Any]

_SIMPLE_TYPES: dict[Any, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    tuple: "array",
    set: "array",
    frozenset: "array",
    dict: "object",
}
_ARRAY_ORIGINS = (list, tuple, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Set)
_OBJECT_ORIGINS = (dict, abc.Mapping, abc.MutableMapping)
_TS_NAMES = {"integer": "number", "number": "number", "string": "string", "boolean": "boolean"}
#: The keys of Gemini's OpenAPI-subset schema dialect that we keep.
_GEMINI_KEYS = frozenset(
    {
        "type",
        "format",
        "description",
        "nullable",
        "enum",
        "items",
        "properties",
        "required",
        "anyOf",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
    }
)
_ARGS_HEADER = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):$")
_ARG_LINE = re.compile(r"^\**(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


# -- schema from a signature -------------------------------------------------------------


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Return the first paragraph and the ``Args:`` descriptions of a Google-style docstring."""
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _ARGS_HEADER.match(line.strip()):
            break
        summary.append(line.strip())
    args: dict[str, str] = {}
    section = next((i for i, ln in enumerate(lines) if _ARGS_HEADER.match(ln.strip())), None)
    if section is not None:
        base = len(lines[section]) - len(lines[section].lstrip())
        entry_indent: int | None = None
        current: str | None = None
        for line in lines[section + 1 :]:
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            if indent <= base:
                break  # the next section
            if entry_indent is None:
                entry_indent = indent
            match = _ARG_LINE.match(line.strip())
            if indent == entry_indent and match:
                current = match.group(1)
                args[current] = match.group(2).strip()
            elif current is not None:
                args[current] = f"{args[current]} {line.strip()}".strip()
    return " ".join(summary), args


class _Signature(NamedTuple):
    schema: _JSONSchema  # of the parameters
    var_keyword: bool  # the function takes **kwargs
    names: frozenset[str]  # every named parameter
    positional_only: tuple[str, ...]  # those that must be passed by position, in order


def _signature_schema(func: abc.Callable[..., Any], arg_docs: dict[str, str]) -> _Signature:
    """Describe a function's named parameters as a JSON schema."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        return _Signature(
            {"type": "object", "properties": {}, "required": []}, True, frozenset(), ()
        )
    hints = _type_hints(func)
    defs: dict[str, Any] = {}
    props: dict[str, _JSONSchema] = {}
    required: list[str] = []
    var_keyword = False
    for name, param in sig.parameters.items():
        if param.kind is param.VAR_KEYWORD:
            var_keyword = True
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(name, param.annotation)
        if isinstance(annotation, str):  # an unresolvable forward reference
            annotation = Any
        prop = _type_schema(annotation, defs)
        if "description" not in prop and name in arg_docs:
            prop["description"] = arg_docs[name]
        if param.default is param.empty:
            required.append(name)
        else:
            # A default with no JSON form is simply not advertised.
            with contextlib.suppress(Exception):
                prop["default"] = to_jsonable_python(param.default)
        props[name] = prop
    schema: _JSONSchema = {"type": "object", "properties": props, "required": required}
    if defs:
        schema["$defs"] = defs
    positional = tuple(n for n, p in sig.parameters.items() if p.kind is p.POSITIONAL_ONLY)
    return _Signature(schema, var_keyword, frozenset(props), positional)


def _type_hints(func: abc.Callable[..., Any]) -> dict[str, Any]:
    target = func if inspect.isroutine(func) or inspect.isclass(func) else type(func).__call__
    try:
        return get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable names: fall back to the raw annotations
        return {}


def _type_schema(tp: Any, defs: dict[str, Any]) -> _JSONSchema:
    """The JSON schema of one Python annotation; nested model definitions go into ``defs``."""
    if tp is inspect.Parameter.empty or tp is Any or tp is object:
        return {}
    if tp is None or tp is type(None):
        return {"type": "null"}
    origin, targs = get_origin(tp), get_args(tp)
    if origin is Annotated:
        out = _type_schema(targs[0], defs)
        for meta in targs[1:]:
            text = meta if isinstance(meta, str) else getattr(meta, "description", None)
            if isinstance(text, str):
                out["description"] = text
        return out
    if origin is Union or origin is types.UnionType:
        return {"anyOf": [_type_schema(arg, defs) for arg in targs]}
    if origin is Literal:
        out = {"enum": list(targs)}
        kinds = {_json_type(v) for v in targs}
        if len(kinds) == 1 and None not in kinds:
            out["type"] = kinds.pop()
        return out
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _type_schema(Literal[tuple(m.value for m in tp)], defs)
    simple = _SIMPLE_TYPES.get(tp)
    if simple is not None:
        return {"type": simple}
    if origin in _ARRAY_ORIGINS:
        out = {"type": "array"}
        items = [a for a in targs if a is not Ellipsis]
        if len(set(items)) == 1:
            out["items"] = _type_schema(items[0], defs)
        return out
    if origin in _OBJECT_ORIGINS:
        out = {"type": "object"}
        if len(targs) == 2 and targs[1] is not Any:
            out["additionalProperties"] = _type_schema(targs[1], defs)
        return out
    try:  # pydantic models, dataclasses, datetimes, ...: pydantic knows their schema
        schema = pydantic.TypeAdapter(tp).json_schema(ref_template="#/$defs/{model}")
    except Exception:  # not describable: accept any JSON value
        return {}
    defs.update(schema.pop("$defs", {}))
    return schema


def _json_type(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "object"


def _unwrap_definition(schema: dict[str, Any]) -> tuple[_JSONSchema, str]:
    """Accept a parameters schema or an OpenAI/Anthropic/Gemini tool definition."""
    definition = schema.get("function") if schema.get("type") == "function" else schema
    if not isinstance(definition, dict):
        raise errors.ValidationError("tool_schema of type 'function' needs a 'function' dict")
    for key in ("parameters", "input_schema"):
        inner = definition.get(key)
        if isinstance(inner, dict):
            return copy.deepcopy(inner), str(definition.get("description") or "")
    return copy.deepcopy(schema), ""


# -- validation ----------------------------------------------------------------------------


def _explain(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"invalid argument {loc!r}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _json_name(value: Any) -> str:
    """The JSON type of an argument, for messages (a Python type name when not JSON)."""
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, bool | int | float | str | dict) or value is None:
        return _json_type(value) or "null"
    return type(value).__name__


def _matches(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list | tuple)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "null":
        return value is None
    return True  # a type we do not check


def _type_problem(value: Any, schema: _JSONSchema, root: _JSONSchema, depth: int) -> str | None:
    """Why ``value`` does not fit the JSON types of ``schema``, or ``None`` when it does."""
    if depth > 32:  # a recursive schema: stop checking rather than loop
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = (root.get("$defs") or {}).get(ref.rsplit("/", 1)[-1])
        return None if target is None else _type_problem(value, target, root, depth + 1)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        if any(_type_problem(value, o, root, depth + 1) is None for o in options):
            return None
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) == 1:  # Optional[X]: say what is wrong against X
            return _type_problem(value, non_null[0], root, depth + 1)
        return f"expected {_ts_type(schema)}, got {_json_name(value)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"expected one of {schema['enum']!r}, got {value!r}"
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    if kinds and not any(_matches(value, k) for k in kinds):
        return f"expected {' or '.join(kinds)}, got {_json_name(value)}"
    items = schema.get("items")
    if isinstance(value, list | tuple) and isinstance(items, dict):
        for i, item in enumerate(value):
            problem = _type_problem(item, items, root, depth + 1)
            if problem is not None:
                return f"item {i}: {problem}"
    props = schema.get("properties")
    if isinstance(value, dict) and isinstance(props, dict):
        for key, item in value.items():
            problem = _type_problem(item, props.get(key, {}), root, depth + 1)
            if problem is not None:
                return f"field {key!r}: {problem}"
    return None


# -- rendering -------------------------------------------------------------------------------


def _ts_type(schema: _JSONSchema) -> str:
    """A TypeScript-like name for a schema (``number``, ``string[]``, ``"a" | "b"``)."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return " | ".join(_ts_type(o) for o in options)
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_ts_type({**schema, "type": k}) for k in kind)
    if kind == "array":
        inner = _ts_type(schema["items"]) if isinstance(schema.get("items"), dict) else "any"
        return f"({inner})[]" if " | " in inner else f"{inner}[]"
    if kind == "object":
        props = schema.get("properties")
        if not props:
            return "object"
        required = set(schema.get("required") or ())
        fields = "; ".join(
            f"{k}{'' if k in required else '?'}: {_ts_type(v)}" for k, v in props.items()
        )
        return f"{{ {fields} }}"
    if kind == "null":
        return "null"
    return _TS_NAMES.get(str(kind), "any")


def _gemini_schema(schema: _JSONSchema, defs: dict[str, Any], depth: int) -> _JSONSchema:
    """Translate JSON schema into Gemini's dialect: inline refs, drop unsupported keys."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        if target is None or depth > 8:  # unknown or recursive: the most we can say
            return {"type": "object"}
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _gemini_schema(merged, defs, depth + 1)
    out: _JSONSchema = {}
    for part in schema.get("allOf") or ():
        out.update(_gemini_schema(part, defs, depth + 1))
    if "const" in schema:
        out["enum"] = [schema["const"]]
    for key, value in schema.items():
        if key not in _GEMINI_KEYS:
            continue
        if key == "properties":
            if value:
                out[key] = {k: _gemini_schema(v, defs, depth) for k, v in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = _gemini_schema(value, defs, depth)
        elif key == "anyOf" or (key == "type" and isinstance(value, list)):
            members = value if key == "anyOf" else [{"type": k} for k in value]
            converted = [_gemini_schema(m, defs, depth) for m in members]
            kept = [m for m in converted if m.get("type") != "null"]
            if len(kept) < len(converted):
                out["nullable"] = True
            if len(kept) == 1:
                out = {**kept[0], **out}
            elif kept:
                out["anyOf"] = kept
        elif key == "required":
            if value:
                out[key] = list(value)
        else:
            out[key] = value
    return out
