"""Read the rate-limit headers providers send with every answer.

OpenAI-compatible services (OpenAI, Groq, OpenRouter...) send ``x-ratelimit-limit-<family>``,
``x-ratelimit-remaining-<family>`` and ``x-ratelimit-reset-<family>`` for the families
``requests`` and ``tokens``, the reset as a Go duration until the bucket is full again (``12ms``,
``1s``, ``1m30.5s``, ``6m0s``, ``2h0m0s``). Anthropic sends
``anthropic-ratelimit-<family>-limit|remaining|reset`` for ``requests``, ``tokens``,
``input-tokens`` and ``output-tokens``, the reset as an RFC 3339 time. Both describe the
provider's bucket at the moment it admitted the request. Public through
:mod:`lionpride.services.utilities.adaptive`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["LimitReading", "parse_duration", "read_limit_headers"]

#: The families a reading may name, in the order they are reported.
FAMILIES = ("requests", "tokens", "input_tokens", "output_tokens")

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


@dataclass(frozen=True, slots=True)
class LimitReading:
    """One family's bucket as the provider reported it.

    Attributes:
        limit: The bucket's capacity.
        remaining: What was left when the provider admitted the request.
        reset: Seconds from then until the bucket is full again (``None`` if not sent).
    """

    limit: int
    remaining: int
    reset: float | None


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration (``59.9ms``, ``1m30.5s``, ``2h0m0s``); ``None`` if malformed.

    Example:
        >>> parse_duration("6m0s")
        360.0
    """
    text = text.strip()
    if not text:
        return None
    total, end = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != end:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        end = match.end()
    return total if end == len(text) and math.isfinite(total) else None


def _rfc3339_wait(text: str, wall_now: float) -> float | None:
    """Seconds from ``wall_now`` until an RFC 3339 time (0 if past); ``None`` if malformed."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - wall_now)


def _http_date(text: str | None) -> float | None:
    """The wall-clock time of an HTTP ``Date`` header; ``None`` if absent or malformed."""
    if not text:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    # "-0000" (UTC, zone unknown) parses without a zone: HTTP dates are UTC.
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def read_limit_headers(
    headers: Mapping[str, str], *, wall_now: float | None = None
) -> dict[str, LimitReading]:
    """Return the readings of every family the headers describe (empty when none).

    A family counts when its limit and remaining are both well-formed; a malformed reset is
    reported as ``None``. ``headers`` must look names up case-insensitively (aiohttp's do) or
    have lower-case names.

    Args:
        headers: Response headers.
        wall_now: Wall-clock time (``time.time()``) for Anthropic's reset times (the
            answer's ``Date`` instead, when ``wall_now`` is more than a second past it).
    """
    readings: dict[str, LimitReading] = {}
    get = headers.get
    if get("x-ratelimit-limit-requests") is not None or get("x-ratelimit-limit-tokens"):
        for family in ("requests", "tokens"):
            limit = _count(get(f"x-ratelimit-limit-{family}"))
            remaining = _count(get(f"x-ratelimit-remaining-{family}"))
            if limit and remaining is not None:
                reset_text = get(f"x-ratelimit-reset-{family}")
                reset = None if reset_text is None else parse_duration(reset_text)
                readings[family] = LimitReading(limit, remaining, reset)
        return readings
    if get("anthropic-ratelimit-requests-limit") is None and not get(
        "anthropic-ratelimit-tokens-limit"
    ):
        return readings
    now = time.time() if wall_now is None else wall_now
    # The resets are times on the provider's clock: a client clock running ahead of it would
    # shorten every wait and raise the rate. The answer's ``Date`` is the provider's clock
    # when it answered, rounded down to the second: a client more than that second past it
    # runs ahead, and the Date counts as now instead.
    served = _http_date(get("date"))
    if served is not None and now > served + 1:
        now = served
    for family in FAMILIES:
        prefix = f"anthropic-ratelimit-{family.replace('_', '-')}"
        limit = _count(get(f"{prefix}-limit"))
        remaining = _count(get(f"{prefix}-remaining"))
        if limit and remaining is not None:
            reset_text = get(f"{prefix}-reset")
            reset = None if reset_text is None else _rfc3339_wait(reset_text, now)
            readings[family] = LimitReading(limit, remaining, reset)
    return readings
