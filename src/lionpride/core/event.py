"""Event: something that runs once and records how it went (status, duration, response, error)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from lionpride import errors
from lionpride.core.element import Element

__all__ = ["Event", "EventStatus", "Execution"]


class EventStatus(StrEnum):
    """Where an event is in its life. PENDING and PROCESSING are active; the rest terminal."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    ABORTED = "aborted"


# Module-level names for the statuses every call passes through: reading an enum member
# through its class costs several times a global lookup.
_PENDING, _PROCESSING, _COMPLETED = (
    EventStatus.PENDING,
    EventStatus.PROCESSING,
    EventStatus.COMPLETED,
)


@dataclass(slots=True)
class Execution:
    """The outcome of an event.

    Attributes:
        status: Current status.
        duration: Wall seconds of ``invoke``; ``None`` until it ran.
        response: The result, ``None`` until success.
        error: The failure, ``None`` unless it failed.
        retryable: Whether trying again could help; ``None`` until it ran.
        attempts: Attempts made by the backend (retries + 1), when known.
        queue_wait: Seconds spent waiting for rate-limit capacity.
        cost: USD cost of the call, when the model's price is known.
        failed_in: The lifecycle phase that failed the call, when a hook did
            (``"pre_invocation"``, ``"post_invocation"``); ``None`` otherwise.
    """

    status: EventStatus = EventStatus.PENDING
    duration: float | None = None
    response: Any = None
    error: BaseException | None = None
    retryable: bool | None = None
    attempts: int = 0
    queue_wait: float = 0.0
    cost: float | None = None
    failed_in: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary; errors become ``{"error": type, "message": str}``."""
        response = self.response
        if hasattr(response, "to_dict"):
            response = response.to_dict()
        return {
            "status": self.status.value,
            "duration": self.duration,
            "response": response,
            "error": _error_dict(self.error),
            "retryable": self.retryable,
            "attempts": self.attempts,
            "queue_wait": self.queue_wait,
            "cost": self.cost,
        }


def _error_dict(err: BaseException | None) -> dict[str, Any] | None:
    if err is None:
        return None
    if isinstance(err, errors.LionprideError):
        return err.to_dict()
    return {"error": type(err).__name__, "message": str(err)}


class Event(Element):
    """Base of everything that runs once: ``invoke()`` records the outcome on ``execution``.

    Subclasses implement ``_invoke``. A second ``invoke`` is a no-op once the event left
    PENDING; use a fresh copy to run it again.
    """

    execution: Execution = Field(default_factory=Execution, exclude=True)
    timeout: float | None = Field(default=None, exclude=True)
    streaming: bool = Field(default=False, exclude=True)

    @field_validator("timeout")
    @classmethod
    def _check_timeout(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise errors.ValidationError(f"timeout must be a finite number > 0, got {value!r}")
        return value

    @property
    def status(self) -> EventStatus:
        """The execution status."""
        return self.execution.status

    @status.setter
    def status(self, value: EventStatus | str) -> None:
        if isinstance(value, EventStatus):
            self.execution.status = value
        elif isinstance(value, str):
            self.execution.status = EventStatus(value)
        else:
            raise errors.ValidationError(
                f"status must be an EventStatus or its value, got {value!r}"
            )

    @property
    def response(self) -> Any:
        """The result of a completed event (``None`` otherwise)."""
        return self.execution.response

    def _invoke(self) -> Awaitable[Any]:
        """The work itself: a coroutine (or other awaitable) that ``invoke`` awaits."""
        raise NotImplementedError

    async def invoke(self) -> None:
        """Run ``_invoke`` once under ``timeout`` and record the outcome; never raises
        except for cancellation, which is recorded as CANCELLED and re-raised."""
        ex = self.execution
        if ex.status is not _PENDING:
            return
        ex.status = _PROCESSING
        start = time.perf_counter()
        try:
            if self.timeout is None:
                result = await self._invoke()
            else:
                async with asyncio.timeout(self.timeout):
                    result = await self._invoke()
        except asyncio.CancelledError:
            # A cancellation is no failure of the call: CANCELLED with no error, never a
            # TimeoutError (a run stopped by Ctrl-C had no call time out).
            ex.status = EventStatus.CANCELLED
            ex.retryable = True
            raise
        except TimeoutError as exc:
            err = (
                exc
                if isinstance(exc, errors.TimeoutError)
                else errors.TimeoutError(f"timed out after {self.timeout}s", cause=exc)
            )
            ex.error, ex.retryable, ex.status = err, True, EventStatus.CANCELLED
        except Exception as exc:
            ex.error, ex.retryable, ex.status = exc, retryable(exc), EventStatus.FAILED
        else:
            ex.response, ex.error, ex.retryable = result, None, False
            ex.status = _COMPLETED
        finally:
            ex.duration = time.perf_counter() - start


def retryable(exc: BaseException) -> bool:
    """Whether trying again could help: a lionpride error says so; programming errors never."""
    if isinstance(exc, errors.LionprideError):
        return exc.retryable
    if isinstance(exc, BaseExceptionGroup):
        return all(retryable(e) for e in exc.exceptions)
    # Programming errors never get better by trying again.
    return not isinstance(exc, ValueError | TypeError | KeyError | AttributeError)
