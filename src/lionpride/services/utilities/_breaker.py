"""The circuit breaker: fail fast while a backend keeps failing, probe it again later.

Runs once per attempt, inside the retry loop of :mod:`lionpride.services.utilities.resilience`
(which re-exports everything public here): every attempt is counted, and an open breaker
fails the remaining attempts fast instead of spinning against it. Its behaviour is described
in that module's docstring.
"""

from __future__ import annotations

import logging
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.errors import CircuitBreakerOpenError
from lionpride.services.utilities._exception_names import (
    _check_keys,
    _exception_name,
    _exception_types,
    _resolve_exceptions,
)
from lionpride.services.utilities.checks import require_count, require_positive

__all__ = ["HALF_OPEN_RETRY_AFTER", "CircuitBreaker", "CircuitState"]

# Logged under the public module's name, the one users configure logging for.
logger = logging.getLogger("lionpride.services.utilities.resilience")

P = ParamSpec("P")
T = TypeVar("T")

#: ``retry_after`` reported when every half-open probe slot is busy. A probe's outcome decides
#: the breaker's state soon, so callers are told to look again shortly (never later than
#: ``recovery_time``) rather than to wait a whole recovery period.
HALF_OPEN_RETRY_AFTER = 1.0

#: How many state changes ``CircuitBreaker.metrics`` keeps.
_MAX_STATE_CHANGES = 100

#: Number of time buckets in the failure-rate window; memory stays bounded by this.
_RATE_BUCKETS = 10


class CircuitState(StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Fail fast while a backend keeps failing; probe it again after a recovery period.

    Runs once per attempt. Admission does not await, so it needs no lock on one event loop.

    Args:
        failure_threshold: Consecutive failures (in CLOSED) that open the breaker.
        recovery_time: Seconds (on ``clock``) the breaker stays OPEN before probing.
        half_open_max_calls: Probes allowed in flight at once while HALF_OPEN.
        excluded_exceptions: Exception classes that pass through uncounted (e.g. a 400).
        name: Label for logs, errors and serialization.
        failure_rate_threshold: Also open when, over the last ``window`` seconds, at least
            ``min_calls`` calls finished and this fraction (0 < x <= 1) of them failed.
            Checked when a failure is recorded. ``None`` disables the rate rule.
        window: Span of the failure-rate window in seconds (bucketed in tenths).
        min_calls: Calls the window must hold before the rate rule applies.
        clock: Time source for recovery periods and the window.

    Raises:
        ValueError: A threshold, period or count is not a positive finite number.
        TypeError: ``excluded_exceptions`` holds something that is not an exception class.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        recovery_time: float = 30.0,
        half_open_max_calls: int = 1,
        excluded_exceptions: Iterable[type[BaseException]] | None = None,
        name: str = "default",
        failure_rate_threshold: float | None = None,
        window: float = 60.0,
        min_calls: int = 10,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.failure_threshold = require_count("failure_threshold", failure_threshold, 1)
        self.recovery_time = require_positive("recovery_time", recovery_time)
        self.half_open_max_calls = require_count("half_open_max_calls", half_open_max_calls, 1)
        self.excluded_exceptions = _exception_types(
            "excluded_exceptions", excluded_exceptions or ()
        )
        self.name = name
        if failure_rate_threshold is not None:
            failure_rate_threshold = require_positive(
                "failure_rate_threshold", failure_rate_threshold
            )
            if failure_rate_threshold > 1:
                raise errors.ValidationError(
                    f"failure_rate_threshold must be <= 1, got {failure_rate_threshold!r}"
                )
        self.failure_rate_threshold = failure_rate_threshold
        self.window = require_positive("window", window)
        self.min_calls = require_count("min_calls", min_calls, 1)
        self._clock = clock
        if any(issubclass(Exception, cls) for cls in self.excluded_exceptions):
            logger.warning(
                "circuit breaker %r excludes Exception: no failure is ever counted, "
                "so it can never open",
                name,
            )
            warnings.warn(
                f"circuit breaker {name!r} excludes Exception: it can never open", stacklevel=2
            )

        self._state = CircuitState.CLOSED
        # Bumped on every transition; an attempt admitted in an older epoch cannot move the
        # state or free a probe slot of a newer half-open period.
        self._epoch = 0
        self._opened_at = 0.0
        self._half_open_calls = 0
        self._outcomes = _OutcomeWindow(self.window)
        self.failure_count = 0
        self.last_failure_time: float | None = None
        self._success_total = 0
        self._failure_total = 0
        self._rejected_total = 0
        self._state_changes: deque[dict[str, Any]] = deque(maxlen=_MAX_STATE_CHANGES)

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self._state.value!r})"

    @property
    def state(self) -> CircuitState:
        """The current state; an OPEN breaker whose recovery time passed reads HALF_OPEN."""
        self._refresh()
        return self._state

    @property
    def metrics(self) -> dict[str, Any]:
        """A JSON-safe copy of the counters and the last 100 state changes."""
        return {
            "success_count": self._success_total,
            "failure_count": self._failure_total,
            "rejected_count": self._rejected_total,
            "state_changes": [dict(change) for change in self._state_changes],
        }

    async def execute(
        self, func: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``func(*args, **kwargs)`` through the breaker.

        Raises:
            CircuitBreakerOpenError: The breaker is OPEN, or HALF_OPEN with every probe slot
                busy; ``func`` was not called.
        """
        epoch, probe = self._admit()
        try:
            result = await func(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, self.excluded_exceptions):
                self._record_failure(epoch, exc)
            raise
        else:
            self._record_success(epoch)
            return result
        finally:
            # Whatever ended the probe (excluded error, cancellation, ...) frees its slot,
            # unless its outcome already moved the breaker to a new epoch.
            if probe and epoch == self._epoch:
                self._half_open_calls -= 1

    def reset(self) -> None:
        """Close the breaker and forget failures; metrics are kept."""
        self._transition(CircuitState.CLOSED)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-safe configuration (no state, no clock)."""
        return {
            "failure_threshold": self.failure_threshold,
            "recovery_time": self.recovery_time,
            "half_open_max_calls": self.half_open_max_calls,
            "name": self.name,
            "excluded_exceptions": [_exception_name(c) for c in self.excluded_exceptions],
            "failure_rate_threshold": self.failure_rate_threshold,
            "window": self.window,
            "min_calls": self.min_calls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, clock: Clock = SYSTEM_CLOCK) -> CircuitBreaker:
        """Build a fresh CLOSED breaker from :meth:`to_dict` output.

        Raises:
            ValueError: An unknown key, an invalid value, or an exception name outside the
                allow-list (builtins and :mod:`lionpride.errors`).
        """
        fields = dict(data)
        _check_keys(
            "CircuitBreaker",
            fields,
            (
                "failure_threshold",
                "recovery_time",
                "half_open_max_calls",
                "name",
                "excluded_exceptions",
                "failure_rate_threshold",
                "window",
                "min_calls",
            ),
        )
        if fields.get("excluded_exceptions") is not None:
            fields["excluded_exceptions"] = _resolve_exceptions(
                "excluded_exceptions", fields["excluded_exceptions"]
            )
        return cls(**fields, clock=clock)

    # -- state machine --

    def _refresh(self) -> None:
        if (
            self._state is CircuitState.OPEN
            and self._clock.now() - self._opened_at >= self.recovery_time
        ):
            self._transition(CircuitState.HALF_OPEN)

    def _admit(self) -> tuple[int, bool]:
        """Let an attempt in or raise; returns its epoch and whether it is a probe."""
        self._refresh()
        if self._state is CircuitState.CLOSED:
            return self._epoch, False
        if self._state is CircuitState.OPEN:
            retry_after = self._opened_at + self.recovery_time - self._clock.now()
        elif self._half_open_calls >= self.half_open_max_calls:
            retry_after = min(self.recovery_time, HALF_OPEN_RETRY_AFTER)
        else:
            self._half_open_calls += 1
            return self._epoch, True
        self._rejected_total += 1
        logger.debug("circuit breaker %r rejected a call (%s)", self.name, self._state.value)
        raise CircuitBreakerOpenError(
            f"Circuit breaker {self.name!r} is {self._state.value}; retry in {retry_after:.3g}s",
            retry_after=retry_after,
            details={"breaker": self.name, "state": self._state.value},
        )

    def _record_success(self, epoch: int) -> None:
        self._success_total += 1
        if epoch != self._epoch:
            return
        if self._state is CircuitState.HALF_OPEN:
            self._transition(CircuitState.CLOSED)
        elif self._state is CircuitState.CLOSED:
            self.failure_count = 0
            if self.failure_rate_threshold is not None:
                self._outcomes.record(self._clock.now(), failed=False)

    def _record_failure(self, epoch: int, exc: Exception) -> None:
        self._failure_total += 1
        logger.debug("circuit breaker %r counted a failure: %r", self.name, exc)
        if epoch != self._epoch:
            return
        now = self._clock.now()
        self.last_failure_time = now
        if self._state is CircuitState.HALF_OPEN:
            self._transition(CircuitState.OPEN)
            return
        self.failure_count += 1
        if self.failure_count >= self.failure_threshold or self._rate_exceeded(now):
            self._transition(CircuitState.OPEN)

    def _rate_exceeded(self, now: float) -> bool:
        if self.failure_rate_threshold is None:
            return False
        self._outcomes.record(now, failed=True)
        calls, failures = self._outcomes.totals(now)
        return calls >= self.min_calls and failures >= self.failure_rate_threshold * calls

    def _transition(self, new: CircuitState) -> None:
        old, now = self._state, self._clock.now()
        self._state = new
        self._epoch += 1
        self._half_open_calls = 0
        if new is CircuitState.OPEN:
            self._opened_at = now
        elif new is CircuitState.CLOSED:
            self.failure_count = 0
            self._outcomes.clear()
        if old is not new:
            self._state_changes.append({"time": now, "from": old.value, "to": new.value})
            logger.info("circuit breaker %r: %s -> %s", self.name, old.value, new.value)


class _OutcomeWindow:
    """Calls and failures over the last ``window`` seconds, in a fixed number of buckets.

    Each bucket covers ``window / _RATE_BUCKETS`` seconds, so the counted span is between 90 %
    and 100 % of ``window`` and memory never grows with traffic.
    """

    __slots__ = ("_buckets", "_width")

    def __init__(self, window: float) -> None:
        self._width = window / _RATE_BUCKETS
        self._buckets: deque[list[int]] = deque()  # [bucket index, calls, failures]

    def record(self, now: float, failed: bool) -> None:
        """Count one finished call at ``now``."""
        index = self._expire(now)
        if self._buckets and self._buckets[-1][0] == index:
            bucket = self._buckets[-1]
            bucket[1] += 1
            bucket[2] += failed
        else:
            self._buckets.append([index, 1, int(failed)])

    def totals(self, now: float) -> tuple[int, int]:
        """Return ``(calls, failures)`` inside the window ending at ``now``."""
        self._expire(now)
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)

    def clear(self) -> None:
        """Forget every recorded call."""
        self._buckets.clear()

    def _expire(self, now: float) -> int:
        index = int(now // self._width)
        while self._buckets and self._buckets[0][0] <= index - _RATE_BUCKETS:
            self._buckets.popleft()
        return index
