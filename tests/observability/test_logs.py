"""log_attempt and log_failure: levels, structured extra fields, nothing secret."""

from __future__ import annotations

import logging

import pytest

from lionpride import errors
from lionpride.services.observability import log_attempt, log_failure

LOGGER = "lionpride.services.test_observability"
SECRET = "sk-live-abc123 and the user's prompt"


def test_successful_attempt_is_one_debug_line_with_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A successful attempt logs once at DEBUG with provider, model, attempt, status, duration."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    log_attempt(
        logging.getLogger(LOGGER), provider="openai", model="gpt-4o", attempt=1, duration=0.25
    )
    [record] = caplog.records
    assert record.levelno == logging.DEBUG and record.name == LOGGER
    fields = {k: getattr(record, k) for k in ("provider", "model", "attempt", "status")}
    assert fields == {"provider": "openai", "model": "gpt-4o", "attempt": 1, "status": "success"}
    assert record.duration == 0.25  # type: ignore[attr-defined]
    assert record.getMessage() == "openai gpt-4o attempt 1: success"


def test_failed_attempt_names_the_error_but_not_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed attempt carries error_type, status_code and retry_in, never str(error)."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    err = errors.RateLimitError(SECRET, status_code=429)
    log_attempt(
        logging.getLogger(LOGGER),
        provider="groq",
        model="llama-3.1-8b-instant",
        attempt=2,
        duration=0.1,
        error=err,
        retry_in=1.5,
    )
    [record] = caplog.records
    assert record.status == "error"  # type: ignore[attr-defined]
    assert record.error_type == "RateLimitError"  # type: ignore[attr-defined]
    assert record.status_code == 429  # type: ignore[attr-defined]
    assert record.retryable is True  # type: ignore[attr-defined]
    assert record.retry_in == 1.5  # type: ignore[attr-defined]
    assert "retrying in 1.500s" in record.getMessage()
    assert SECRET not in caplog.text and "sk-live" not in str(record.__dict__)


def test_failure_is_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    """A failed call logs once at INFO with attempts and error type, message left out."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    logger = logging.getLogger(LOGGER)
    err = errors.ServerError(SECRET, status_code=503)
    log_attempt(logger, provider="openai", model="m", attempt=1, duration=0.1, error=err)
    log_failure(logger, provider="openai", model="m", attempts=3, duration=2.0, error=err)
    [record] = caplog.records  # the DEBUG attempt line is filtered out at INFO
    assert record.levelno == logging.INFO
    assert record.attempts == 3 and record.error_type == "ServerError"  # type: ignore[attr-defined]
    assert record.getMessage() == "openai m failed after 3 attempt(s): ServerError"
    assert SECRET not in str(record.__dict__)


def test_failure_message_only_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    """include_message=True adds the provider's message to the line and its fields."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    err = errors.BadRequestError("max_tokens is too large", status_code=400)
    log_failure(
        logging.getLogger(LOGGER),
        provider="anthropic",
        model="claude-haiku-4-5",
        attempts=1,
        duration=0.05,
        error=err,
        include_message=True,
    )
    [record] = caplog.records
    assert record.error_message == "max_tokens is too large"  # type: ignore[attr-defined]
    assert record.getMessage().endswith("BadRequestError: max_tokens is too large")


def test_disabled_levels_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """With the logger at WARNING neither helper emits a record."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    logger = logging.getLogger(LOGGER)
    log_attempt(logger, provider="p", model=None, attempt=1, duration=None)
    log_failure(
        logger, provider="p", model=None, attempts=1, duration=None, error=RuntimeError("x")
    )
    assert caplog.records == []
