"""Circuit breaker and retry with backoff, both timed by an injected clock.

An endpoint composes them as ``retry_with_backoff(breaker.execute(attempt))``: the retry loop
runs once per call, the breaker once per attempt, so every attempt is counted and an open
breaker fails the remaining attempts fast instead of spinning against it.

:class:`CircuitBreaker` opens after ``failure_threshold`` consecutive failures (or, optionally,
a failure rate over a time window), fails fast while open, lets ``half_open_max_calls`` probes
through once ``recovery_time`` has passed, and closes again on a probe's success. Cancellation
counts as neither success nor failure, and a probe slot is released whatever the probe's outcome.

While the breaker is open, every call fails at once with ``CircuitBreakerOpenError``, whose
``retry_after`` says when the breaker half-opens: retry never waits for an open breaker, however
short ``recovery_time`` is (a call that waited would only become a probe, late). The first
call after ``recovery_time`` is a probe; a call that finds every probe slot busy is retried
after at most :data:`HALF_OPEN_RETRY_AFTER` (1 s), when the probe has likely decided.

:func:`retry_with_backoff` retries errors that say they are retryable (``.retryable`` on
:class:`lionpride.errors.LionprideError`, plus the builtin ``ConnectionError`` and
``TimeoutError``) with full-jitter exponential backoff, waits exactly the server's
``retry_after`` when the error carries one, and never waits past ``deadline``: a wait that does
not fit re-raises the error at once. Without a deadline, a ``retry_after`` above
:data:`MAX_SERVER_WAIT` (60 s) is not waited for either. The last error
is re-raised unchanged.

:func:`parse_retry_after`, :func:`should_retry_header` and :func:`rate_limit_is_permanent` read
the servers' hints (headers, Gemini's ``RetryInfo``, 429 bodies that mean "not in seconds") for
the HTTP layer that builds the errors; they live in the private module ``_retry_after`` and are
re-exported here.

Keeping tests fast:
    Code under test that retries can skip every backoff wait inside :func:`no_backoff`; the
    retry decisions (how many attempts, which errors, server hints, deadlines) stay exactly
    the same, only the sleeps are skipped::

        from pydantic import SecretStr

        from lionpride.services import iModel
        from lionpride.services.utilities.resilience import no_backoff
        from lionpride.testing import FakeProvider, Reply

        async def test_my_app_survives_a_503_and_a_429():
            async with FakeProvider() as fp:
                fp.script(Reply(status=503), Reply(status=429, headers={"retry-after": "30"}))
                model = iModel(provider="openai", base_url=fp.base_url("openai"),
                               api_key=SecretStr("test"), model="gpt-4o-mini")
                with no_backoff():  # no 0.5 s backoff, no 30 s retry-after: instant
                    calling = await model.invoke(messages=[{"role": "user", "content": "Hi"}])
                await model.aclose()
            assert calling.response.data and len(fp.requests) == 3

    The switch is a context variable, so it covers tasks started inside the block and nothing
    outside it.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import inspect
import logging
import math
import random
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.errors import CircuitBreakerOpenError
from lionpride.services.utilities._resilience_parts import (
    _check_keys,
    _exception_name,
    _exception_types,
    _OutcomeWindow,
    _resolve_exceptions,
)
from lionpride.services.utilities._retry_after import (
    parse_retry_after,
    rate_limit_is_permanent,
    should_retry_header,
)
from lionpride.services.utilities.checks import require_count as _require_count
from lionpride.services.utilities.checks import require_positive as _require_positive

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "CircuitState",
    "RetryConfig",
    "backoff_disabled",
    "no_backoff",
    "parse_retry_after",
    "rate_limit_is_permanent",
    "retry_with_backoff",
    "should_retry_header",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: ``retry_after`` reported when every half-open probe slot is busy. A probe's outcome decides
#: the breaker's state soon, so callers are told to look again shortly (never later than
#: ``recovery_time``) rather than to wait a whole recovery period.
HALF_OPEN_RETRY_AFTER = 1.0

#: The longest ``retry_after`` waited for when a call has no deadline. Servers send hours-long
#: hints when a quota is spent; we do not sleep that long inside a call, the error (carrying
#: ``retry_after``) is raised at once instead. A deadline bounds it otherwise. The value is our
#: own: the openai SDK obeys hints up to 120 s (a longer one is not retried), the anthropic SDK
#: has no cap.
MAX_SERVER_WAIT = 60.0

#: How many state changes ``CircuitBreaker.metrics`` keeps.
_MAX_STATE_CHANGES = 100

_NO_BACKOFF: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "lionpride_no_backoff", default=False
)


class CircuitState(StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# --- circuit breaker ----------------------------------------------------------------------------


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
        failure_threshold: int = 5,
        recovery_time: float = 30.0,
        half_open_max_calls: int = 1,
        excluded_exceptions: Iterable[type[BaseException]] | None = None,
        name: str = "default",
        *,
        failure_rate_threshold: float | None = None,
        window: float = 60.0,
        min_calls: int = 10,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.failure_threshold = _require_count("failure_threshold", failure_threshold, 1)
        self.recovery_time = _require_positive("recovery_time", recovery_time)
        self.half_open_max_calls = _require_count("half_open_max_calls", half_open_max_calls, 1)
        self.excluded_exceptions = _exception_types(
            "excluded_exceptions", excluded_exceptions or ()
        )
        self.name = name
        if failure_rate_threshold is not None:
            failure_rate_threshold = _require_positive(
                "failure_rate_threshold", failure_rate_threshold
            )
            if failure_rate_threshold > 1:
                raise errors.ValidationError(
                    f"failure_rate_threshold must be <= 1, got {failure_rate_threshold!r}"
                )
        self.failure_rate_threshold = failure_rate_threshold
        self.window = _require_positive("window", window)
        self.min_calls = _require_count("min_calls", min_calls, 1)
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


# --- retry --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How often and how patiently :func:`retry_with_backoff` tries again.

    The retries and delays are those of the official OpenAI and Anthropic SDKs: two retries,
    0.5 s doubling to 8 s. The jitter is not theirs: they take at most a quarter off each wait,
    while ours (full jitter) draws it from ``[0, cap]``, which spreads the retries of many
    callers hitting one limit further apart.

    Args:
        max_retries: Retries after the first attempt (0 means one attempt).
        initial_delay: Backoff cap for the first retry, in seconds.
        max_delay: Largest backoff cap, in seconds.
        exponential_base: Growth factor of the cap per retry.
        jitter: Draw each wait uniformly from ``[0, cap]`` (full jitter) instead of ``cap``.
        retry_on: Exception classes to retry; ``None`` retries errors whose ``retryable`` is
            true plus the builtin ``ConnectionError`` and ``TimeoutError``.

    Raises:
        ValueError: A field is out of range, NaN or infinite.
    """

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    exponential_base: float = 2.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] | None = None

    def __post_init__(self) -> None:
        _require_count("max_retries", self.max_retries, 0)
        initial = _require_positive("initial_delay", self.initial_delay)
        if _require_positive("max_delay", self.max_delay) < initial:
            raise errors.ValidationError(
                f"max_delay must be >= initial_delay, got {self.max_delay!r} < {initial!r}"
            )
        if _require_positive("exponential_base", self.exponential_base) < 1:
            raise errors.ValidationError(
                f"exponential_base must be >= 1 (waits would shrink), got {self.exponential_base!r}"
            )
        if self.retry_on is not None:
            object.__setattr__(self, "retry_on", _exception_types("retry_on", self.retry_on))

    def calculate_delay(self, attempt: int) -> float:
        """Return the backoff before retry ``attempt`` (0-based).

        The cap is ``min(initial_delay * exponential_base**attempt, max_delay)``; with jitter
        the wait is drawn uniformly from ``[0, cap]``.
        """
        if attempt < 0:
            raise errors.ValidationError(f"attempt must be >= 0, got {attempt!r}")
        try:
            cap = min(self.initial_delay * self.exponential_base**attempt, self.max_delay)
        except OverflowError:
            cap = self.max_delay
        return random.uniform(0.0, cap) if self.jitter else cap

    def as_kwargs(self) -> dict[str, Any]:
        """Return the six fields as a dict (``retry_on`` as classes)."""
        return {
            "max_retries": self.max_retries,
            "initial_delay": self.initial_delay,
            "max_delay": self.max_delay,
            "exponential_base": self.exponential_base,
            "jitter": self.jitter,
            "retry_on": self.retry_on,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-safe fields, ``retry_on`` as dotted names (or ``None``)."""
        out = self.as_kwargs()
        if self.retry_on is not None:
            out["retry_on"] = [_exception_name(c) for c in self.retry_on]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryConfig:
        """Build a config from :meth:`to_dict` output.

        Raises:
            ValueError: An unknown key, an invalid value, or a ``retry_on`` name outside the
                allow-list (builtins and :mod:`lionpride.errors`).
        """
        fields = dict(data)
        _check_keys("RetryConfig", fields, cls.__dataclass_fields__)
        if fields.get("retry_on") is not None:
            fields["retry_on"] = _resolve_exceptions("retry_on", fields["retry_on"])
        return cls(**fields)


@contextlib.contextmanager
def no_backoff() -> Iterator[None]:
    """Skip every retry wait inside the block (and in tasks started inside it).

    Meant for tests: the same attempts happen with the same decisions, only instantly.
    """
    token = _NO_BACKOFF.set(True)
    try:
        yield
    finally:
        _NO_BACKOFF.reset(token)


def backoff_disabled() -> bool:
    """Tell whether the caller runs inside :func:`no_backoff` (other waits may skip too)."""
    return _NO_BACKOFF.get()


def _is_retryable(exc: Exception, config: RetryConfig) -> bool:
    if config.retry_on is not None:
        return isinstance(exc, config.retry_on)
    if isinstance(exc, errors.LionprideError):
        return exc.retryable
    return isinstance(exc, builtins.ConnectionError | builtins.TimeoutError)


def _server_wait(exc: Exception) -> float | None:
    """Return the error's ``retry_after`` when it is a usable number of seconds."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(0.0, float(value))


def _plan_wait(
    exc: Exception, attempt: int, config: RetryConfig, deadline: float | None, clock: Clock
) -> float | None:
    """Return how long to wait before retrying after ``exc``, or ``None`` to re-raise it."""
    if attempt >= config.max_retries or not _is_retryable(exc, config):
        return None
    server = _server_wait(exc)
    # An open breaker fails the call fast, however soon it will half-open: sleeping until
    # then would hold every call of an outage for the recovery time, each to end as a
    # probe. Only busy probe slots (half-open) are worth a short wait for their outcome.
    if isinstance(exc, CircuitBreakerOpenError) and (
        exc.state == CircuitState.OPEN or server is None or server > config.max_delay
    ):
        return None
    wait = config.calculate_delay(attempt) if server is None else server
    if deadline is None:
        if server is not None and server > MAX_SERVER_WAIT:
            return None
    # A wait that ends at (or past) the deadline leaves no time for the attempt, which would
    # only replace the server's error with a less useful timeout.
    elif wait >= deadline - clock.now():
        return None
    return wait


async def retry_with_backoff(
    func: Callable[..., Awaitable[T]],
    *,
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    config: RetryConfig | None = None,
    deadline: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
    on_retry: Callable[[int, BaseException, float], Any] | None = None,
    first_error: Exception | None = None,
) -> T:
    """Call ``func(*args, **kwargs)``, retrying retryable failures with backoff.

    Runs once per call; ``func`` runs once per attempt (at most ``max_retries + 1``). The wait
    before retry ``n`` is the error's ``retry_after`` when it has one, else
    ``config.calculate_delay(n)``. A :class:`CircuitBreakerOpenError` of an open breaker is never
    retried; one of a half-open breaker (probe slots busy) only when its ``retry_after`` is
    known, at most ``max_delay``, and fits the deadline. Without a deadline a
    ``retry_after`` above :data:`MAX_SERVER_WAIT` is raised at once. Cancellation is never
    retried.

    Args:
        func: The async callable to try.
        args: Positional arguments for ``func``.
        kwargs: Keyword arguments for ``func`` (any names, including ``config``).
        config: Retry policy; ``RetryConfig()`` when omitted.
        deadline: Absolute time on ``clock`` by which every wait must end with time to spare
            for the next attempt; a wait that would not re-raises the error immediately.
        clock: Time source for the deadline and the waits.
        on_retry: Called (sync or async) before each wait with the 1-based number of the
            attempt that failed, its error and the planned wait.
        first_error: The error of a first attempt the caller already made itself (a fast
            path that skips this function until something fails); retrying starts there.

    Returns:
        What ``func`` returned on the first successful attempt.

    Raises:
        Exception: The last attempt's error, unchanged (same object).
    """
    config = config or RetryConfig()
    call_kwargs = dict(kwargs or {})
    attempt = 0
    while True:
        if first_error is None:
            try:
                return await func(*args, **call_kwargs)
            except Exception as exc:
                wait = _plan_wait(exc, attempt, config, deadline, clock)
                if wait is None:
                    raise
                error = exc
        else:
            error, first_error = first_error, None
            wait = _plan_wait(error, attempt, config, deadline, clock)
            if wait is None:
                raise error
        attempt += 1
        logger.debug("attempt %d failed (%r); retrying in %.3fs", attempt, error, wait)
        if on_retry is not None:
            outcome = on_retry(attempt, error, wait)
            if inspect.isawaitable(outcome):
                await outcome
        await clock.sleep(0.0 if backoff_disabled() else wait)
