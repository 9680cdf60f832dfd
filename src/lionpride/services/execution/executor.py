"""Run calls under exact rate limits, in the caller's own task.

``execute(fn)`` waits in order of (priority, arrival) for one request plus ``tokens`` and a
free concurrency slot together, then awaits ``fn()`` and returns its result. Taking the slot
with the capacity means a granted call starts at once, so calls never start in a burst above
the rate after waiting for a slot. There is no
dispatcher task and no polling: the only background task is the limiter's single timer, which
exists while someone waits for capacity. Runs once per call (not per retry attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.utilities._checks import _require_count, _require_positive
from lionpride.services.utilities._waiting import _DeadlineScope, _WaitGroup
from lionpride.services.utilities.rate_limiter import (
    RateLimitConfig,
    RateLimiter,
    Reservation,
    TokenBucket,
)

__all__ = ["RateLimitedExecutor"]

T = TypeVar("T")


class RateLimitedExecutor:
    """Rate-limited, concurrency-limited execution of async calls.

    Capacity accounting, per call:

    * cancelled or timed out before ``fn`` starts: everything is given back;
    * cancelled or timed out while ``fn`` runs, or ``fn`` raised: the tokens are refunded but
      the request slot stays spent, since the provider has already counted the request;
    * ``fn`` returned: ``settle(result)`` gives the tokens really used (``None`` keeps the
      reservation) and the difference is refunded or charged.

    Args:
        request_bucket: Limits calls; ``None`` means unlimited.
        token_bucket: Limits tokens; ``None`` means unlimited.
        limiter: A ready limiter instead of the two buckets (e.g. one shared or Redis-backed).
        queue_capacity: Most callers waiting for capacity at once.
        concurrency_limit: Most calls running at once.
        clock: Time source (must be the limiter's and the buckets').
        name: A label for logs and ``to_dict``.

    Raises:
        ValueError: Out-of-range limits, or both buckets and a limiter.

    Example:
        >>> executor = RateLimitedExecutor.from_limits(limit_requests=60, limit_tokens=None)
        >>> executor.to_dict()["request_bucket"]
        {'capacity': 60, 'refill_rate': 1.0}
    """

    def __init__(
        self,
        *,
        request_bucket: TokenBucket | None = None,
        token_bucket: TokenBucket | None = None,
        limiter: RateLimiter | None = None,
        queue_capacity: int = 10_000,
        concurrency_limit: int = 100,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "rate_limited_executor",
    ) -> None:
        _require_count("queue_capacity", queue_capacity, 1)
        _require_count("concurrency_limit", concurrency_limit, 1)
        if limiter is None:
            limiter = RateLimiter(request_bucket, token_bucket, clock=clock)
        elif request_bucket is not None or token_bucket is not None:
            raise ValueError("pass buckets or a limiter, not both")
        elif limiter.clock is not clock:
            raise ValueError("clock differs from the limiter's clock")
        self.name = name
        self._limiter = limiter
        self._clock = clock
        self._queue_capacity = queue_capacity
        self._concurrency_limit = concurrency_limit
        self._group = _WaitGroup(queue_capacity, concurrency_limit)
        self._closed = False
        self._completed = 0
        self._failed = 0
        self._cancelled = 0
        self._timed_out = 0
        self._rejected = 0

    @classmethod
    def from_limits(
        cls,
        *,
        limit_requests: int | None,
        limit_tokens: int | None,
        capacity_refresh_time: float = 60.0,
        **kw: Any,
    ) -> RateLimitedExecutor:
        """Build an executor allowing L requests (or tokens) per ``capacity_refresh_time`` s.

        Each limit L becomes a bucket of capacity L refilling L/``capacity_refresh_time``
        per second; ``None`` leaves that dimension unlimited. Other keywords go to ``__init__``.
        """
        period = _require_positive("capacity_refresh_time", capacity_refresh_time)
        clock: Clock = kw.get("clock", SYSTEM_CLOCK)

        def bucket(name: str, limit: int | None) -> TokenBucket | None:
            if limit is None:
                return None
            _require_count(name, limit, 1)
            return TokenBucket(RateLimitConfig(limit, limit / period), clock=clock)

        return cls(
            request_bucket=bucket("limit_requests", limit_requests),
            token_bucket=bucket("limit_tokens", limit_tokens),
            **kw,
        )

    @property
    def token_capacity(self) -> int | None:
        """The most tokens one call may reserve (the limiter's); ``None`` when tokens are
        not limited."""
        return self._limiter.token_capacity

    @property
    def limiter(self) -> RateLimiter:
        """The limiter calls wait on."""
        return self._limiter

    @property
    def clock(self) -> Clock:
        """The clock timeouts and limits use."""
        return self._clock

    def execute(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        tokens: int = 0,
        priority: float | None = None,
        timeout: float | None = None,
        settle: Callable[[T], int | None] | None = None,
        on_granted: Callable[[float], None] | None = None,
    ) -> Awaitable[T]:
        """Wait for capacity, then run ``fn()`` in this task and return its result.

        Use as ``await executor.execute(...)``. Arguments are checked at once; the returned
        awaitable is the whole run (no wrapper coroutine: every resume of the call passes
        through one frame fewer).

        Args:
            fn: The call; awaited once.
            tokens: Tokens to reserve besides the one request.
            priority: Lower runs first; ``None`` means 0.0; FIFO among equals.
            timeout: Seconds for the whole wait, queue plus call.
            settle: Maps the result to the tokens really used, for reconciliation.
            on_granted: Called with the seconds waited once capacity is granted.

        Raises:
            lionpride.errors.TimeoutError: ``timeout`` passed (the running call is cancelled).
            lionpride.errors.QueueFullError: ``queue_capacity`` callers already wait.
            lionpride.errors.ExecutionError: The executor is (or got) closed.
            ValueError: Bad arguments, or ``tokens`` above the token bucket's capacity.
            Exception: Whatever ``fn`` raised, unchanged.
        """
        if self._closed:
            raise errors.ExecutionError("executor closed")
        prio = 0.0 if priority is None else priority
        self._limiter._check(1, tokens, prio)
        if timeout is None:
            return self._run(fn, tokens, prio, settle, on_granted)
        _require_positive("timeout", timeout)
        return self._run_within(timeout, fn, tokens, prio, settle, on_granted)

    async def _run_within(
        self,
        timeout: float,
        fn: Callable[[], Awaitable[T]],
        tokens: int,
        priority: float,
        settle: Callable[[T], int | None] | None,
        on_granted: Callable[[float], None] | None,
    ) -> T:
        scope = _DeadlineScope(self._clock, timeout, "call did not finish")
        try:
            async with scope:
                return await self._run(fn, tokens, priority, settle, on_granted, scoped=True)
        except asyncio.CancelledError:
            self._cancelled += 1
            raise
        except errors.TimeoutError:
            if scope.fired:
                self._timed_out += 1
            raise

    async def _run(
        self,
        fn: Callable[[], Awaitable[T]],
        tokens: int,
        priority: float,
        settle: Callable[[T], int | None] | None,
        on_granted: Callable[[float], None] | None,
        scoped: bool = False,
    ) -> T:
        """The run itself; ``scoped`` runs inside a deadline, whose caller counts a
        cancellation (a deadline turns the cancellation into a timeout, not counted as one)."""
        if self._closed:  # closed after execute() handed out this run
            raise errors.ExecutionError("executor closed")
        waited = 0.0
        if not self._admit(tokens):
            waited = await self._wait_for_grant(tokens, priority, scoped)
        if on_granted is not None:
            try:
                on_granted(waited)
            except BaseException:
                self._limiter.backend.give_back(1, tokens)  # nothing started: all of it back
                self._limiter._free_slot(self._group)
                raise
        try:
            result = await fn()
        except BaseException as exc:
            self._ended(tokens, 0, exc, count_cancel=not scoped)
            raise
        if settle is None:
            self._ended(tokens, None)
            return result
        try:
            used = settle(result)
        except BaseException:
            self._ended(tokens, None)  # the usage is unknown: the reservation stands
            raise
        self._ended(tokens, used)
        return result

    def _admit(self, tokens: int) -> bool:
        """Take one request, ``tokens`` and a concurrency slot now, if they are there and
        nobody waits; ``False`` (also when closed) means: queue, or refuse, through
        :meth:`execute`.

        Every grant that needs no wait goes through here: :meth:`execute` and
        :meth:`lease`, and ``iModel``, which then awaits its call in its own frame (no
        wrapper coroutine on the common path where limits do not bind) and books it with
        :meth:`_ended`. ``tokens`` must be valid (checked by the caller). "Nobody waits"
        means nobody in the limiter's queue, which executors sharing the limiter share too.
        """
        group = self._group
        if self._closed or not group.slots or not self._limiter._take_at_once(1, tokens):
            return False
        group.slots -= 1
        return True

    def _ended(
        self,
        tokens: int,
        used: int | None,
        error: BaseException | None = None,
        *,
        count_cancel: bool = True,
    ) -> None:
        """Book a call that started: its slot back, the outcome counted, and its ``tokens``
        reconciled with ``used`` (the refund or the charge; ``None`` keeps them).

        A failed or cancelled call is ended with ``used=0``: the request stays spent, the
        tokens come back.

        Raises:
            ValueError: ``used`` is not a non-negative integer (after the booking).
        """
        limiter = self._limiter
        limiter._free_slot(self._group)  # which also wakes a head held back for want of one
        if error is None:
            self._completed += 1
        elif isinstance(error, Exception):
            self._failed += 1
        elif count_cancel and isinstance(error, asyncio.CancelledError):
            self._cancelled += 1
        if used is not None:
            if type(used) is not int or used < 0:
                _require_count("tokens used (settle's result)", used)
            if used != tokens:
                limiter._backend.give_back(0, tokens - used)

    async def _wait_for_grant(self, tokens: int, priority: float, scoped: bool) -> float:
        """Queue for one request, ``tokens`` and a concurrency slot (the slow path); return
        the seconds waited."""
        try:
            return await self._limiter._wait_in_line(1, tokens, priority, self._group)
        except errors.QueueFullError:
            self._rejected += 1
            raise
        except asyncio.CancelledError:
            if not scoped:
                self._cancelled += 1
            raise

    @contextlib.asynccontextmanager
    async def lease(
        self, *, tokens: int = 0, priority: float | None = None, timeout: float | None = None
    ) -> AsyncIterator[Reservation]:
        """Hold capacity and a concurrency slot for work the caller runs itself (a stream).

        The same rules as :meth:`execute`: queue order, ``queue_capacity``, the concurrency
        limit, closing, stats. ``timeout`` bounds only the wait. Settle the reservation with
        the tokens really used before leaving the block; leaving it by an error or
        cancellation refunds the tokens (the request stays spent).

        Raises:
            lionpride.errors.TimeoutError: No grant within ``timeout``; nothing was taken.
            lionpride.errors.QueueFullError: ``queue_capacity`` callers already wait.
            lionpride.errors.ExecutionError: The executor is closed.
        """
        if self._closed:
            raise errors.ExecutionError("executor closed")
        prio = 0.0 if priority is None else priority
        self._limiter._check(1, tokens, prio)
        if timeout is not None:
            _require_positive("timeout", timeout)
        limiter = self._limiter
        waited = 0.0
        if not self._admit(tokens):
            if timeout is None:
                waited = await self._wait_for_grant(tokens, prio, False)
            else:
                scope = _DeadlineScope(self._clock, timeout, "rate limit not granted")
                try:
                    async with scope:
                        waited = await self._wait_for_grant(tokens, prio, True)
                except asyncio.CancelledError:
                    self._cancelled += 1
                    raise
                except errors.TimeoutError:
                    if scope.fired:
                        self._timed_out += 1
                    raise
        reservation = Reservation(1, tokens, waited, limiter.backend)
        try:
            yield reservation
        except BaseException as exc:
            reservation.settle(0)
            if isinstance(exc, asyncio.CancelledError | GeneratorExit):
                self._cancelled += 1
            else:
                self._failed += 1
            raise
        else:
            self._completed += 1
            reservation.settle(None)
        finally:
            self._limiter._free_slot(self._group)

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` (a 429's ``retry_after``): queued calls wait too."""
        self._limiter.pause(seconds)

    def charge(self, requests: int = 1, tokens: int = 0) -> None:
        """Count capacity spent outside a grant, such as the extra request a retry sends:
        taken even when it is not there (the buckets go into debt), so the grants after it
        wait for it and the provider never sees more than the limit.

        Raises:
            ValueError: A negative or non-integer amount.
        """
        self._limiter.charge(requests, tokens)

    async def aclose(self) -> None:
        """Fail waiting callers with ``ExecutionError("executor closed")`` and stop the timer.

        Calls already running finish in their callers' tasks; new calls are refused.
        """
        self._closed = True
        self._cancelled += self._limiter._fail_waiters(
            self._group, lambda: errors.ExecutionError("executor closed")
        )
        await self._limiter._stop_timer()

    def reopen(self) -> None:
        """Take calls again after :meth:`aclose` (a model that made this executor for
        itself and is used again after closing, as its endpoint may be)."""
        self._closed = False

    async def __aenter__(self) -> RateLimitedExecutor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def stats(self) -> dict[str, int]:
        """Counters: queued, in_flight, completed, failed, cancelled, timed_out, rejected."""
        return {
            "queued": self._group.waiting,
            # Every started call holds one slot (taken with its grant, back at its end).
            "in_flight": self._concurrency_limit - (self._group.slots or 0),
            "completed": self._completed,
            "failed": self._failed,
            "cancelled": self._cancelled,
            "timed_out": self._timed_out,
            "rejected": self._rejected,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration (bucket shapes, never their levels)."""
        rb, tb = self._limiter.request_bucket, self._limiter.token_bucket
        return {
            "name": self.name,
            "queue_capacity": self._queue_capacity,
            "concurrency_limit": self._concurrency_limit,
            "request_bucket": None if rb is None else rb.to_dict(),
            "token_bucket": None if tb is None else tb.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, clock: Clock = SYSTEM_CLOCK) -> RateLimitedExecutor:
        """Rebuild from :meth:`to_dict` output; buckets start full.

        Raises:
            ValueError: An unknown key (named: a misspelt limit must not silently vanish),
                or invalid values.
        """
        _known_keys("executor", d, _EXECUTOR_KEYS)

        def bucket(spec: Mapping[str, Any] | None) -> TokenBucket | None:
            if spec is None:
                return None
            _known_keys("bucket", spec, _BUCKET_KEYS)
            return TokenBucket(RateLimitConfig(spec["capacity"], spec["refill_rate"]), clock=clock)

        return cls(
            request_bucket=bucket(d.get("request_bucket")),
            token_bucket=bucket(d.get("token_bucket")),
            queue_capacity=d.get("queue_capacity", 10_000),
            concurrency_limit=d.get("concurrency_limit", 100),
            clock=clock,
            name=d.get("name", "rate_limited_executor"),
        )

    def __repr__(self) -> str:
        return f"RateLimitedExecutor(name={self.name!r}, {self.stats()})"


_EXECUTOR_KEYS = frozenset(
    {"name", "queue_capacity", "concurrency_limit", "request_bucket", "token_bucket"}
)
_BUCKET_KEYS = frozenset({"capacity", "refill_rate"})


def _known_keys(what: str, data: Mapping[str, Any], known: frozenset[str]) -> None:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} settings must be a dict, got {data!r}")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {unknown}; known: {sorted(known)}")
