"""What the request checks share: the rejection they raise and a few readers of JSON values.

The checks of each wire format (:mod:`~lionpride.testing._checks_openai`,
:mod:`~lionpride.testing._checks_anthropic`, :mod:`~lionpride.testing._checks_gemini`) walk a
request body and raise :class:`Rejected` at the first fault the live API would refuse, with a
message in that API's own wording.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["Rejected", "json_type", "listing", "text_of"]


class Rejected(Exception):
    """A request the live API answers with HTTP 400.

    Attributes:
        message: The error message, in the provider's wording, naming the bad field.
        param: The field path OpenAI puts in its ``param`` (other formats ignore it).
        code: OpenAI's machine-readable ``code`` (other formats ignore it).
    """

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type, as error messages say it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def listing(values: Iterable[str]) -> str:
    """Quoted values joined for a message: ``'a', 'b', and 'c'``."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) < 3:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def text_of(value: Any) -> str:
    """Every string inside a JSON value, joined (for rules about what a prompt says)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(text_of(v) for v in value)
    if isinstance(value, dict):
        return " ".join(text_of(v) for v in value.values())
    return ""
