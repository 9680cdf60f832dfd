"""Server hints about retrying: ``retry-after`` style headers and Gemini's ``RetryInfo``.

The HTTP layer reads these when it builds an error, so that :func:`retry_with_backoff
<lionpride.services.utilities.resilience.retry_with_backoff>` can wait exactly as long as the
server asked. Both functions are public through :mod:`lionpride.services.utilities.resilience`.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["parse_retry_after", "should_retry_header"]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (plain dicts included)."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _seconds(text: str | None, scale: float = 1.0) -> float | None:
    """Parse a finite number of seconds (times ``scale``), clamped at 0; garbage is ``None``."""
    if text is None:
        return None
    try:
        value = float(text.strip()) * scale
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None


def _http_date_wait(text: str | None, now: float | None) -> float | None:
    """Seconds from ``now`` (wall time) until an HTTP-date, clamped at 0."""
    if not text:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are always GMT
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _gemini_retry_delay(body: Any) -> float | None:
    """Read ``retryDelay`` from a ``google.rpc.RetryInfo`` detail in a Gemini error body."""
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if isinstance(body, list):  # some Gemini endpoints wrap the error object in a list
        body = body[0] if body else None
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if not isinstance(detail, dict):
            continue
        kind = detail.get("@type")
        delay = detail.get("retryDelay")
        if isinstance(kind, str) and kind.endswith("google.rpc.RetryInfo"):
            if isinstance(delay, str) and delay.endswith("s"):
                return _seconds(delay[:-1])
            return None
    return None


def parse_retry_after(
    headers: Mapping[str, str], body: Any = None, *, now: float | None = None
) -> float | None:
    """Return how many seconds the server asked us to wait, or ``None`` if it did not say.

    Sources, first usable one wins: ``retry-after-ms`` (milliseconds), ``retry-after``
    (seconds or an HTTP-date), then Gemini's ``RetryInfo.retryDelay`` (``"37s"``) in the error
    body. Negative values become 0; unparseable values are skipped.

    Args:
        headers: Response headers; names are matched case-insensitively.
        body: The decoded error body (or its JSON text), for Gemini.
        now: Wall-clock time (``time.time()``) for HTTP-dates; the current time when omitted.
    """
    retry_after = _header(headers, "retry-after")
    for value in (
        _seconds(_header(headers, "retry-after-ms"), 0.001),
        _seconds(retry_after),
        _http_date_wait(retry_after, now),
    ):
        if value is not None:
            return value
    return _gemini_retry_delay(body) if body is not None else None


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """Read ``x-should-retry``: ``True``/``False`` when the server decided, else ``None``."""
    value = _header(headers, "x-should-retry")
    if value is None:
        return None
    return {"true": True, "false": False}.get(value.strip().lower())
