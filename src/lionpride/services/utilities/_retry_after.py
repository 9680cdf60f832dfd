"""Server hints about retrying: ``retry-after`` style headers, Gemini's ``RetryInfo``, and
429 bodies that say waiting will not help.

The HTTP layer reads these when it builds an error, so that :func:`retry_with_backoff
<lionpride.services.utilities.resilience.retry_with_backoff>` can wait exactly as long as the
server asked, and not at all when no wait can succeed. The functions are public through
:mod:`lionpride.services.utilities.resilience`.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["parse_retry_after", "rate_limit_is_permanent", "should_retry_header"]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (plain dicts included)."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _seconds(text: str | None, scale: float = 1.0) -> float | None:
    """Parse a finite, non-negative number of seconds (times ``scale``); anything else,
    negative numbers included, is garbage: ``None``."""
    if text is None:
        return None
    try:
        value = float(text.strip()) * scale
    except ValueError:
        return None
    # A negative wait is no hint at all: taking it as 0 would retry at once, without backoff.
    return value if math.isfinite(value) and value >= 0 else None


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


def _error_object(body: Any) -> dict[str, Any] | None:
    """The ``error`` object of a decoded (or JSON text) error body, if it has one."""
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if isinstance(body, list):  # some Gemini endpoints wrap the error object in a list
        body = body[0] if body else None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _details(error: dict[str, Any] | None) -> list[Any]:
    """The ``google.rpc`` details list of a Gemini error object (empty when absent)."""
    details = error.get("details") if error is not None else None
    return details if isinstance(details, list) else []


def _gemini_retry_delay(body: Any) -> float | None:
    """Read ``retryDelay`` from a ``google.rpc.RetryInfo`` detail in a Gemini error body."""
    for detail in _details(_error_object(body)):
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
    body. Negative numbers and unparseable values are skipped (the caller backs off as if no
    hint came); an HTTP-date in the past is 0.

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


def rate_limit_is_permanent(body: Any) -> bool:
    """Tell whether a 429's body says that no wait within a call can make it succeed.

    Three 429s are not rate limits that pass in seconds, and retrying them only spends
    requests and time:

    * OpenAI ``insufficient_quota``: the billing quota is spent until someone pays;
    * OpenAI "Request too large ... on tokens per min": this one request is larger than the
      per-minute token limit, so it can never fit;
    * Gemini ``QuotaFailure`` violations on a per-day quota (``quotaId`` containing
      ``PerDay``), which resets once a day whatever ``retryDelay`` says.

    Args:
        body: The decoded error body (or its JSON text).
    """
    error = _error_object(body)
    if error is None:
        return False
    if "insufficient_quota" in (error.get("code"), error.get("type")):
        return True
    message = error.get("message")
    if isinstance(message, str) and message.startswith("Request too large"):
        return True
    for detail in _details(error):
        kind = detail.get("@type") if isinstance(detail, dict) else None
        if not (isinstance(kind, str) and kind.endswith("google.rpc.QuotaFailure")):
            continue
        violations = detail.get("violations")
        for violation in violations if isinstance(violations, list) else ():
            quota = violation.get("quotaId") if isinstance(violation, dict) else None
            if isinstance(quota, str) and "PerDay" in quota:
                return True
    return False


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """Read ``x-should-retry``: ``True``/``False`` when the server decided, else ``None``."""
    value = _header(headers, "x-should-retry")
    if value is None:
        return None
    return {"true": True, "false": False}.get(value.strip().lower())
