"""Scripts for the FakeProvider written as JSON files, for tests in any language.

``lionpride fake-provider --script FILE`` serves the replies a file lists, in order, before
the generated defaults, so that a test written in Go, JavaScript or shell can script a 429,
a tool call, a stalled stream or a recorded exchange without Python. The file is one object,
``{"replies": [...]}``, with an example in ``lionpride fake-provider --help``.

Each reply takes the fields of :class:`~lionpride.testing.Reply` (``status``, ``headers``,
``body``, ``delay``, ``drop``, ``truncate``, ``chunks``, ``chunk_delay``, ``text``,
``tool_calls``, ``usage``, ``stall_after``), plus ``path`` (serve it only to a request whose
path contains this text), ``repeat`` (serve it this many times) and ``wire`` (replay a recorded
exchange, a path relative to the script file, with ``path`` and ``repeat`` alone beside it).
A mistake is reported with the file, the reply's index and the field.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

from lionpride.errors import ScriptError
from lionpride.testing._replies import Reply

__all__ = ["load_script"]

_MAX_REPEAT = 100_000


def _non_negative(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "a number of seconds"
    return None if 0 <= value < math.inf else "a finite number >= 0"


def _count(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "a whole number"
    return None if value >= 0 else "a whole number >= 0"


def _status(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        return "an HTTP status from 100 to 599"
    return None


def _headers(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return None if ok else 'an object of strings ({"retry-after": "1"})'


def _chunks(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(c, str) for c in value)
    return None if ok else "a list of strings"


def _tool_calls(value: Any) -> str | None:
    # Arguments as an object, never the JSON text OpenAI's wire carries: the Anthropic and
    # Gemini replies put them in the body as they are.
    ok = isinstance(value, list) and all(
        isinstance(c, dict)
        and isinstance(c.get("name"), str)
        and set(c) <= {"name", "arguments"}
        and isinstance(c.get("arguments", {}), dict)
        for c in value
    )
    return None if ok else 'a list of {"name": ..., "arguments": {...}}'


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "an object"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _anything(value: Any) -> str | None:
    return None


#: The Reply fields a script may set, each with a check returning what was expected.
_REPLY_FIELDS: dict[str, Callable[[Any], str | None]] = {
    "status": _status,
    "headers": _headers,
    "body": _anything,
    "delay": _non_negative,
    "drop": _flag,
    "truncate": _count,
    "chunks": _chunks,
    "chunk_delay": _non_negative,
    "text": _text,
    "tool_calls": _tool_calls,
    "usage": _object,
    "stall_after": _count,
}
_PLACEMENT = ("path", "repeat")


def load_script(path: str | os.PathLike[str]) -> list[tuple[str | None, Reply]]:
    """Read a script file: ``(path filter, reply)`` pairs in serving order, repeats expanded.

    Serve them with ``provider.script(reply, path=filter)`` one after the other.

    Raises:
        ScriptError: The file is unreadable, not JSON, or a reply is malformed (the message
            names the file, the reply's index and the field).
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as file:
            data = json.load(file)
    except OSError as exc:
        raise ScriptError(f"cannot read {name}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ScriptError(f"{name} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"replies"}:
        raise ScriptError(f'{name}: expected {{"replies": [...]}}, got {_shape(data)}')
    replies = data["replies"]
    if not isinstance(replies, list):
        raise ScriptError(f'{name}: "replies" must be a list, got {_shape(replies)}')
    base = os.path.dirname(os.path.abspath(name))
    script: list[tuple[str | None, Reply]] = []
    for index, entry in enumerate(replies):
        where = f"{name}: replies[{index}]"
        needle, repeat, reply = _entry(entry, where, base)
        script.extend((needle, reply) for _ in range(repeat))
    return script


def _entry(entry: Any, where: str, base: str) -> tuple[str | None, int, Reply]:
    """One reply of the file: its path filter, repeat count and :class:`Reply`."""
    if not isinstance(entry, dict):
        raise ScriptError(f"{where}: expected an object, got {_shape(entry)}")
    needle = entry.get("path")
    if needle is not None and not isinstance(needle, str):
        raise ScriptError(f'{where}: "path" must be a string, got {needle!r}')
    repeat = entry.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= _MAX_REPEAT:
        raise ScriptError(f'{where}: "repeat" must be 1 to {_MAX_REPEAT:,}, got {repeat!r}')
    fields = {k: v for k, v in entry.items() if k not in _PLACEMENT}
    if "wire" in fields:
        return needle, repeat, _wire(fields, where, base)
    unknown = sorted(set(fields) - set(_REPLY_FIELDS))
    if unknown:
        valid = ", ".join([*_REPLY_FIELDS, *_PLACEMENT, "wire"])
        raise ScriptError(f"{where}: unknown field(s) {', '.join(unknown)}; valid: {valid}")
    for key, value in fields.items():
        expected = _REPLY_FIELDS[key](value)
        if expected is not None:
            raise ScriptError(f'{where}: "{key}" must be {expected}, got {value!r}')
    return needle, repeat, Reply(**fields)


def _wire(fields: dict[str, Any], where: str, base: str) -> Reply:
    """A replay of the recorded exchange ``fields["wire"]`` names."""
    others = sorted(set(fields) - {"wire"})
    if others:
        raise ScriptError(
            f'{where}: "wire" replays a recording as it was; drop {", ".join(others)} '
            '(only "path" and "repeat" may stand beside it)'
        )
    recording = fields["wire"]
    if not isinstance(recording, str):
        raise ScriptError(f'{where}: "wire" must be a file path, got {recording!r}')
    full = os.path.join(base, recording)
    try:
        return Reply.from_wire(full)
    except OSError as exc:
        raise ScriptError(f"{where}: cannot read {full}: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ScriptError(f"{where}: {full} is no wire recording ({exc!r})") from exc


def _shape(value: Any) -> str:
    """A short description of a JSON value for an error message."""
    if isinstance(value, dict):
        return f"an object with {', '.join(sorted(map(str, value))) or 'no keys'}"
    return f"{type(value).__name__} {json.dumps(value)[:60]}"
