"""Structured log lines for attempts (DEBUG) and failed calls (INFO).

Each line carries its facts as ``extra`` fields on the ``LogRecord`` (``provider``,
``model``, ``attempt``, ``status``, ``duration``, ``error_type``, ...), ready for a JSON
formatter. Neither ever includes the API key or message contents; a failure's own message
(which a provider may build from the request) is included only when asked for. Nothing is
computed when the level is disabled, so the hot path pays one ``isEnabledFor`` check.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["log_attempt", "log_failure"]

Logger = logging.Logger | logging.LoggerAdapter[Any]


def log_attempt(
    logger: Logger,
    *,
    provider: str,
    model: str | None,
    attempt: int,
    duration: float | None,
    error: BaseException | None = None,
    retry_in: float | None = None,
) -> None:
    """Log one attempt at DEBUG.

    Args:
        logger: A logger under ``lionpride``.
        provider: The provider or backend name.
        model: The requested model.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        duration: Wall seconds of the attempt, when measured.
        error: The attempt's failure; ``None`` for success.
        retry_in: Seconds until the next attempt, when one follows.
    """
    if not logger.isEnabledFor(logging.DEBUG):
        return
    status = "success" if error is None else "error"
    extra: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "attempt": attempt,
        "status": status,
        "duration": duration,
    }
    if error is not None:
        extra.update(_error_fields(error))
    if retry_in is not None:
        extra["retry_in"] = retry_in
    logger.debug(
        "%s %s attempt %d: %s%s",
        provider,
        model,
        attempt,
        status if error is None else extra["error_type"],
        "" if retry_in is None else f", retrying in {retry_in:.3f}s",
        extra=extra,
    )


def log_failure(
    logger: Logger,
    *,
    provider: str,
    model: str | None,
    attempts: int,
    duration: float | None,
    error: BaseException,
    include_message: bool = False,
) -> None:
    """Log one failed call at INFO.

    Args:
        logger: A logger under ``lionpride``.
        provider: The provider or backend name.
        model: The requested model.
        attempts: Attempts the call made.
        duration: Wall seconds of the call.
        error: Why the call failed.
        include_message: Also log ``str(error)`` (the provider's message; never the API key,
            but it may quote the request).
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    extra: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "attempts": attempts,
        "status": "error",
        "duration": duration,
        **_error_fields(error),
    }
    if include_message:
        extra["error_message"] = str(error)
    logger.info(
        "%s %s failed after %d attempt(s): %s%s",
        provider,
        model,
        attempts,
        extra["error_type"],
        f": {error}" if include_message else "",
        extra=extra,
    )


def _error_fields(error: BaseException) -> dict[str, Any]:
    fields: dict[str, Any] = {"error_type": type(error).__name__}
    status_code = getattr(error, "status_code", None)
    if isinstance(status_code, int):
        fields["status_code"] = status_code
    retryable = getattr(error, "retryable", None)
    if isinstance(retryable, bool):
        fields["retryable"] = retryable
    return fields
