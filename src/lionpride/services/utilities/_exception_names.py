"""Exception classes in saved configs: the names behind ``to_dict``/``from_dict``.

The breaker's ``excluded_exceptions`` and the retry policy's ``retry_on`` are saved as dotted
names and read back through an allow-list (builtins and :mod:`lionpride.errors`), so a saved
config cannot reach arbitrary code. Nothing here is imported from outside the utilities
package.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from typing import Any

from lionpride import errors

__all__ = [
    "_check_keys",
    "_exception_name",
    "_exception_types",
    "_resolve_exceptions",
]


def _exception_types(name: str, values: Iterable[object]) -> tuple[type[BaseException], ...]:
    """Validate that every item is an exception class; keep order, drop duplicates."""
    out: list[type[BaseException]] = []
    for value in values:
        if not (isinstance(value, type) and issubclass(value, BaseException)):
            raise TypeError(f"{name} must hold exception classes, got {value!r}")
        if value not in out:
            out.append(value)
    return tuple(out)


def _exception_name(cls: type[BaseException]) -> str:
    """Return the dotted name that :func:`_resolve_exception` reads back."""
    return f"{cls.__module__}.{cls.__qualname__}"


#: Names that saved configs may hold for classes since moved into :mod:`lionpride.errors`.
_MOVED: dict[str, type[BaseException]] = {
    "lionpride.services.utilities.resilience.CircuitBreakerOpenError": (
        errors.CircuitBreakerOpenError
    ),
}


def _resolve_exception(name: object) -> type[BaseException]:
    """Map a dotted name back to its class, from an allow-list only.

    Nothing is imported: only builtin exceptions and the classes of :mod:`lionpride.errors`
    (also under the names they had before they moved there) can be named, so a config file
    cannot reach arbitrary code. A bare name (``"ValueError"``) means the builtin.
    """
    if not isinstance(name, str):
        raise errors.ValidationError(f"exception names must be strings, got {name!r}")
    allowed: dict[str, type[BaseException]] = dict(_MOVED)
    for module in (builtins, errors):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                allowed[_exception_name(value)] = value
    cls = allowed.get(name if "." in name else f"builtins.{name}")
    if cls is None:
        raise errors.ValidationError(
            f"exception {name!r} is not allowed: only builtin exceptions and "
            "lionpride.errors classes can be restored"
        )
    return cls


def _resolve_exceptions(name: str, values: object) -> tuple[type[BaseException], ...]:
    """Resolve a JSON list of exception names through the allow-list."""
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise errors.ValidationError(f"{name} must be a list of exception names, got {values!r}")
    return tuple(_resolve_exception(v) for v in values)


def _check_keys(kind: str, data: Mapping[str, Any], known: Iterable[str]) -> None:
    """Reject unknown keys so a typo in a saved config is not silently ignored."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise errors.ValidationError(f"unknown {kind} keys: {', '.join(unknown)}")
