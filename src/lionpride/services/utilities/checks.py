"""Argument checks shared by the limiter, the executor and the resilience settings.

Plain functions, no state: any module of the library may call them.
"""

from __future__ import annotations

import math

from lionpride import errors

__all__ = ["require_count", "require_positive"]


def require_positive(name: str, value: float) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` unless it is finite and > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise errors.ValidationError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def require_count(name: str, value: int, minimum: int = 0) -> int:
    """Return ``value``, or raise ``ValueError`` unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise errors.ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
