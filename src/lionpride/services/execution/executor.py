"""Run calls under exact rate limits, in the caller's own task.

``execute(fn)`` waits in order of (priority, arrival) for one request plus ``tokens`` and a
free concurrency slot together, then awaits ``fn()`` and returns its result; ``lease()`` holds
the same grant for work the caller runs itself (a call awaited in its own frame, a stream).
Taking the slot with the capacity means a granted call starts at once, so calls never start
in a burst above the rate after waiting for a slot. There is no dispatcher task and no
polling: the only background task is the limiter's single timer, which exists while someone
waits for capacity. Runs once per call (not per retry attempt).

Who owns what: :class:`RateLimitedExecutor` owns an :class:`_Admission`, which owns the
executor's :class:`~lionpride.services.utilities.waiting.WaitGroup` (queue bound, free slots),
its counters and its closed flag, and is the one grant path: ``admit`` (at once), ``wait``
(in line, optionally within a deadline) and ``ended`` (the booking of a call that started).
:class:`Lease` and ``execute`` both go through it. The limiter is reached only through the
:class:`~lionpride.services.utilities.rate_limiter.Limiter` interface, for local buckets,
learned limits and Redis alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.utilities.checks import require_count, require_positive
from lionpride.services.utilities.rate_limiter import (
    CapacityBackend,
    Limiter,
    RateLimitConfig,
    RateLimiter,
    Reservation,
    TokenBucket,
)
from lionpride.services.utilities.waiting import DeadlineScope, WaitGroup

__all__ = ["Lease", "RateLimitedExecutor"]

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class _Admission:
    """The grant path of one executor: its slots and queue bound, counters and closed flag.

    Every grant is one request, ``tokens`` and one concurrency slot, taken together. Runs
    once per call. The executor and its leases call the public methods; the counters are
    read by ``stats()`` and counted only here.
    """

    limiter: Limiter
    clock: Clock
    group: WaitGroup
    closed: bool = False
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    rejected: int = 0
    #: Where a lease's reservation settles (a limiter's backend never changes).
    backend: CapacityBackend = field(init=False)

    def __post_init__(self) -> None:
        self.backend = self.limiter.backend

    def admit(self, tokens: int) -> bool:
        """Take one request, ``tokens`` and a slot now, if they are there and nobody waits.

        ``False`` (also when closed) means: :meth:`wait`. ``tokens`` must be checked. "Nobody
        waits" means nobody in the limiter's queue, which executors sharing it share too.
        """
        group = self.group
        if self.closed or not group.slots or not self.limiter.take_now(1, tokens):
            return False
        group.slots -= 1
        return True

    async def wait(self, tokens: int, priority: float, scoped: bool) -> float:
        """Queue for one request, ``tokens`` and a slot; return the seconds waited.

        ``scoped``: inside a deadline, whose owner counts a cancellation (a deadline turns
        it into a timeout, not counted as a cancellation).

        Raises:
            lionpride.errors.ExecutionError: Closed (also while waiting).
            lionpride.errors.QueueFullError: ``queue_capacity`` callers already wait.
        """
        if self.closed:  # closed after the call was handed out
            raise errors.ExecutionError("executor closed")
        try:
            return await self.limiter.wait_in_line(1, tokens, priority, self.group)
        except errors.QueueFullError:
            self.rejected += 1
            raise
        except asyncio.CancelledError:
            if not scoped:
                self.cancelled += 1
            raise

    async def within(self, timeout: float, what: str, work: Awaitable[T]) -> T:
        """Await ``work`` within ``timeout`` s (``TimeoutError`` naming ``what``), counting
        a timeout or a cancellation."""
        scope = DeadlineScope(self.clock, timeout, what)
        try:
            async with scope:
                return await work
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        except errors.TimeoutError:
            if scope.fired:
                self.timed_out += 1
            raise

    def close(self) -> None:
        """Refuse new grants and fail the waiters (counted as cancelled)."""
        self.closed = True
        self.cancelled += self.limiter.fail_waiters(
            self.group, lambda: errors.ExecutionError("executor closed")
        )

    def unstarted(self, tokens: int) -> None:
        """Give back a grant whose call never started: the request, the tokens, the slot."""
        self.limiter.release(1, tokens)
        self.limiter.free_slot(self.group)

    def expired(self) -> None:
        """Book a call that started and was ended by its caller's deadline: its slot back,
        counted as a timeout (its tokens are reconciled by its lease)."""
        self.limiter.free_slot(self.group)
        self.timed_out += 1

    def ended(
        self,
        tokens: int,
        used: int | None,
        error: BaseException | None = None,
        count_cancel: bool = True,
    ) -> None:
        """Book a call that started: its slot back, the outcome counted, and its ``tokens``
        reconciled with ``used`` (the refund or the charge; ``None`` keeps them).

        A failed or cancelled call is ended with ``used=0``: the request stays spent, the
        tokens come back.

        Raises:
            ValueError: ``used`` is not a non-negative integer (after the booking).
        """
        limiter = self.limiter
        limiter.free_slot(self.group)  # which also wakes a head held back for want of one
        if error is None:
            self.completed += 1
        elif isinstance(error, Exception):
            self.failed += 1
        elif count_cancel and isinstance(error, (asyncio.CancelledError, GeneratorExit)):
            self.cancelled += 1
        if used is not None:
            if type(used) is not int or used < 0:
                require_count("tokens used (settle's result)", used)
            if used != tokens:
                limiter.adjust_tokens(used - tokens)


class Lease(Reservation):
    """A :class:`Reservation` held for an ``async with`` block (see
    :meth:`RateLimitedExecutor.lease`): capacity and a concurrency slot, granted on entry.

    Granted at once when capacity is free (no suspension); otherwise waits in line. The
    block enters as the lease itself: ``waited``, ``settle(used)`` and the amounts are the
    reservation's.
    """

    __slots__ = ("_admission", "_expired", "_priority", "_timeout")

    def __init__(
        self, admission: _Admission, tokens: int, priority: float, timeout: float | None
    ) -> None:
        # The reservation's fields set here, not through its generated ``__init__``: one
        # call fewer on every grant.
        self.requests, self.tokens, self.waited = 1, tokens, 0.0
        self._backend, self._open = admission.backend, True
        self._admission = admission
        self._priority = priority
        self._timeout = timeout
        self._expired = False

    def expire(self) -> None:
        """Say that the caller's deadline for the work ended the block (``iModel``'s
        ``poll_timeout``): it is counted ``timed_out``, as :meth:`RateLimitedExecutor.execute`
        counts its own timeout, not ``failed``."""
        self._expired = True

    async def __aenter__(self) -> Lease:
        admission, tokens = self._admission, self.tokens
        if admission.admit(tokens):
            return self
        if self._timeout is None:
            self.waited = await admission.wait(tokens, self._priority, False)
        else:
            self.waited = await admission.within(
                self._timeout,
                "rate limit not granted",
                admission.wait(tokens, self._priority, True),
            )
        return self

    async def __aexit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        # Left by an error or a cancellation: the tokens come back, the request stays spent.
        self.settle(None if error is None else 0)
        if self._expired:
            self._admission.expired()
        else:
            self._admission.ended(self.tokens, None, error)  # reconciled above: used=None


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
        limiter: Limiter | None = None,
        queue_capacity: int = 10_000,
        concurrency_limit: int = 100,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "rate_limited_executor",
    ) -> None:
        require_count("queue_capacity", queue_capacity, 1)
        require_count("concurrency_limit", concurrency_limit, 1)
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
        self._admission = _Admission(limiter, clock, WaitGroup(queue_capacity, concurrency_limit))

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
        period = require_positive("capacity_refresh_time", capacity_refresh_time)
        clock: Clock = kw.get("clock", SYSTEM_CLOCK)

        def bucket(name: str, limit: int | None) -> TokenBucket | None:
            if limit is None:
                return None
            require_count(name, limit, 1)
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
    def limiter(self) -> Limiter:
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
        if self._admission.closed:
            raise errors.ExecutionError("executor closed")
        prio = 0.0 if priority is None else priority
        self._limiter.check(1, tokens, prio)
        if timeout is None:
            return self._run(fn, tokens, prio, settle, on_granted)
        require_positive("timeout", timeout)
        run = self._run(fn, tokens, prio, settle, on_granted, scoped=True)
        return self._admission.within(timeout, "call did not finish", run)

    def lease(
        self, *, tokens: int = 0, priority: float | None = None, timeout: float | None = None
    ) -> Lease:
        """Hold capacity and a concurrency slot for work the caller runs itself.

        Use as ``async with executor.lease(tokens=...) as reservation:``. The same rules and
        stats as :meth:`execute`: queue order, ``queue_capacity``, the concurrency limit,
        closing. Granted without suspending when capacity is free. ``timeout`` bounds only
        the wait. Settle the reservation with the tokens really used before leaving the
        block; leaving it by an error or cancellation refunds the tokens (the request stays
        spent).

        Raises:
            lionpride.errors.TimeoutError: No grant within ``timeout``; nothing was taken.
            lionpride.errors.QueueFullError: ``queue_capacity`` callers already wait.
            lionpride.errors.ExecutionError: The executor is closed.
            ValueError: Bad arguments, or ``tokens`` above the token bucket's capacity.
        """
        admission = self._admission
        if admission.closed:
            raise errors.ExecutionError("executor closed")
        prio = 0.0 if priority is None else priority
        self._limiter.check(1, tokens, prio)
        if timeout is not None:
            require_positive("timeout", timeout)
        return Lease(admission, tokens, prio, timeout)

    async def _run(
        self,
        fn: Callable[[], Awaitable[T]],
        tokens: int,
        priority: float,
        settle: Callable[[T], int | None] | None,
        on_granted: Callable[[float], None] | None,
        scoped: bool = False,
    ) -> T:
        """The run itself; ``scoped`` runs inside a deadline (see :meth:`_Admission.wait`)."""
        admission = self._admission
        waited = 0.0
        if not admission.admit(tokens):
            waited = await admission.wait(tokens, priority, scoped)
        if on_granted is not None:
            try:
                on_granted(waited)
            except BaseException:
                admission.unstarted(tokens)
                raise
        try:
            result = await fn()
        except BaseException as exc:
            admission.ended(tokens, 0, exc, count_cancel=not scoped)
            raise
        if settle is None:
            admission.ended(tokens, None)
            return result
        try:
            used = settle(result)
        except BaseException:
            admission.ended(tokens, None)  # the usage is unknown: the reservation stands
            raise
        admission.ended(tokens, used)
        return result

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
        self._admission.close()
        await self._limiter.stop_timer()

    def reopen(self) -> None:
        """Take calls again after :meth:`aclose` (a model that made this executor for
        itself and is used again after closing, as its endpoint may be)."""
        self._admission.closed = False

    async def __aenter__(self) -> RateLimitedExecutor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def stats(self) -> dict[str, int]:
        """Counters: queued, in_flight, completed, failed, cancelled, timed_out, rejected."""
        admission = self._admission
        group = admission.group
        return {
            "queued": group.waiting,
            # Every started call holds one slot (taken with its grant, back at its end).
            "in_flight": self._concurrency_limit - (group.slots or 0),
            "completed": admission.completed,
            "failed": admission.failed,
            "cancelled": admission.cancelled,
            "timed_out": admission.timed_out,
            "rejected": admission.rejected,
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
