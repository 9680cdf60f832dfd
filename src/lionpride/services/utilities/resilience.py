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
the HTTP layer that builds the errors; they live in the private module ``_retry_after``, the
breaker in ``_breaker`` (the two concerns apart), and are re-exported here.

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
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.errors import CircuitBreakerOpenError
from lionpride.services.utilities._breaker import (
    HALF_OPEN_RETRY_AFTER,
    CircuitBreaker,
    CircuitState,
)
from lionpride.services.utilities._exception_names import (
    _check_keys,
    _exception_name,
    _exception_types,
    _resolve_exceptions,
)
from lionpride.services.utilities._retry_after import (
    parse_retry_after,
    rate_limit_is_permanent,
    should_retry_header,
)
from lionpride.services.utilities.checks import require_count, require_positive

__all__ = [
    "HALF_OPEN_RETRY_AFTER",
    "MAX_SERVER_WAIT",
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

T = TypeVar("T")

#: The longest ``retry_after`` waited for when a call has no deadline. Servers send hours-long
#: hints when a quota is spent; we do not sleep that long inside a call, the error (carrying
#: ``retry_after``) is raised at once instead. A deadline bounds it otherwise. The value is our
#: own: the openai SDK obeys hints up to 120 s (a longer one is not retried), the anthropic SDK
#: has no cap.
MAX_SERVER_WAIT = 60.0

_NO_BACKOFF: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "lionpride_no_backoff", default=False
)


@dataclass(frozen=True, slots=True, kw_only=True)
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
        require_count("max_retries", self.max_retries, 0)
        initial = require_positive("initial_delay", self.initial_delay)
        if require_positive("max_delay", self.max_delay) < initial:
            raise errors.ValidationError(
                f"max_delay must be >= initial_delay, got {self.max_delay!r} < {initial!r}"
            )
        if require_positive("exponential_base", self.exponential_base) < 1:
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
) -> T:
    """Call ``func(*args, **kwargs)``, retrying retryable failures with backoff.

    Runs once per call and makes every attempt itself, the first included: ``func`` runs
    once per attempt (at most ``max_retries + 1``). The wait before retry ``n`` is the
    error's ``retry_after`` when it has one, else ``config.calculate_delay(n)``. A
    :class:`CircuitBreakerOpenError` of an open breaker is never retried; one of a half-open
    breaker (probe slots busy) only when its ``retry_after`` is known, at most ``max_delay``,
    and fits the deadline. Without a deadline a ``retry_after`` above
    :data:`MAX_SERVER_WAIT` is raised at once. Cancellation is never retried.

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

    Returns:
        What ``func`` returned on the first successful attempt.

    Raises:
        Exception: The last attempt's error, unchanged (same object).
    """
    config = config or RetryConfig()
    attempt = 0
    while True:
        try:
            return await (func(*args, **kwargs) if kwargs else func(*args))
        except Exception as exc:
            wait = _plan_wait(exc, attempt, config, deadline, clock)
            if wait is None:
                raise
            error = exc
        attempt += 1
        logger.debug("attempt %d failed (%r); retrying in %.3fs", attempt, error, wait)
        if on_retry is not None:
            outcome = on_retry(attempt, error, wait)
            if inspect.isawaitable(outcome):
                await outcome
        await clock.sleep(0.0 if backoff_disabled() else wait)
