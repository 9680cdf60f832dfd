"""Exact rate limits: token buckets and a dual (requests + tokens) limiter.

A limit of L per T seconds is a :class:`TokenBucket` of capacity L refilling L/T per second, so
in any interval of length t at most L + L·t/T units are granted. Callers that cannot be served
at once queue in order of ``(priority, arrival)``; one timer per queue sleeps until the moment
the head can be served, computed from the bucket levels. Nothing polls, a cancelled waiter
takes nothing, and a large request at the head is never overtaken by smaller ones.

:class:`RateLimiter` waits on a :class:`CapacityBackend`. :class:`LocalCapacity` is the
in-process backend over two buckets; a shared backend (Redis) plugs in by implementing the
same five methods (plus, optionally, ``subscribe`` so refunds wake the queue) and passing
``RateLimiter(backend=...)``. The buckets and :class:`LocalCapacity` live in the private module
``_token_bucket``, the waiting core (the queue, its timer and the deadline scope) in
:mod:`~lionpride.services.utilities.waiting`; every name in ``__all__`` is public here.

Who owns what: a :class:`RateLimiter` owns the one wait queue of its set of buckets (its
backend) and the backend itself; a :class:`Reservation` owns one grant until it is settled.
:class:`Limiter` is what an executor may call on a limiter: checking, granting at once or in
line (with a :class:`~lionpride.services.utilities.waiting.WaitGroup` of its own), giving back,
charging, pausing and failing its waiters when it closes.

Example:
    >>> limiter = RateLimiter(TokenBucket(RateLimitConfig(capacity=60, refill_rate=1.0)))
    >>> limiter.try_acquire().requests
    1
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.utilities._token_bucket import LocalCapacity, RateLimitConfig, TokenBucket
from lionpride.services.utilities.checks import require_count, require_positive
from lionpride.services.utilities.waiting import DeadlineScope, WaitGroup, WaitQueue

__all__ = [
    "CapacityBackend",
    "Limiter",
    "LocalCapacity",
    "RateLimitConfig",
    "RateLimiter",
    "Reservation",
    "TokenBucket",
]


@runtime_checkable
class CapacityBackend(Protocol):
    """Where a :class:`RateLimiter` takes capacity from.

    ``take`` must take both amounts or neither. A backend that limits tokens says how many
    one request may reserve at most in ``token_capacity`` (``None``, or no such attribute,
    when tokens are not limited): callers that meter tokens (``iModel``) reserve them only
    when it is set. Two optional methods, looked up by name:

    * ``try_take(requests, tokens) -> float``: a synchronous ``take``; the limiter then grants
      without awaiting and supports ``try_acquire``.
    * ``subscribe(kick: Callable[[], None]) -> None``: the limiter passes its queue's (bound)
      ``kick`` once, at construction; the backend calls it, on the event loop, whenever
      capacity comes back to it (a refund through ``give_back``, a reset), so that waiters
      are re-examined at once instead of sleeping out a wait computed before the refund. The
      backend may hold ``kick`` weakly. Without it, waiters still get their capacity, only no
      sooner than the wait the backend last answered.
    """

    def check(self, requests: int, tokens: int) -> None:
        """Raise ``ValueError`` if the amounts could never be granted (over capacity)."""
        ...

    async def take(self, requests: int, tokens: int) -> float:
        """Take both amounts now and return 0.0, or take nothing and return the wait in seconds."""
        ...

    def give_back(self, requests: int, tokens: int) -> None:
        """Return capacity; a negative amount charges that many more (debt allowed)."""
        ...

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds``."""
        ...

    def levels(self) -> dict[str, float]:
        """Current levels by bucket name (``requests``, ``tokens``)."""
        ...


class Limiter(Protocol):
    """What a :class:`~lionpride.services.execution.executor.RateLimitedExecutor` calls on the
    limiter it waits on (:class:`RateLimiter` over local buckets, learned limits or Redis).

    The executor keeps a :class:`~lionpride.services.utilities.waiting.WaitGroup` (its queue
    bound and concurrency slots) and passes it to ``wait_in_line``, ``free_slot`` and
    ``fail_waiters``; it gives back and charges only through ``release``, ``adjust_tokens``
    and ``charge``.
    """

    @property
    def clock(self) -> Clock:
        """The clock the limiter waits on."""
        ...

    @property
    def token_capacity(self) -> int | None:
        """The most tokens one request may reserve; ``None`` when tokens are not limited."""
        ...

    @property
    def backend(self) -> CapacityBackend:
        """Where capacity comes from (a :class:`Reservation` gives back to it)."""
        ...

    @property
    def queue_depth(self) -> int:
        """Callers waiting now."""
        ...

    @property
    def levels(self) -> dict[str, float]:
        """Current bucket levels."""
        ...

    @property
    def request_bucket(self) -> TokenBucket | None:
        """The local request bucket, if any."""
        ...

    @property
    def token_bucket(self) -> TokenBucket | None:
        """The local token bucket, if any."""
        ...

    def check(self, requests: int, tokens: int, priority: float = 0.0) -> None:
        """Raise ``ValueError`` for amounts or a priority that can never be granted."""
        ...

    def take_now(self, requests: int, tokens: int) -> bool:
        """Take both amounts if nobody waits and they are there; never waits."""
        ...

    def wait_in_line(
        self, requests: int, tokens: int, priority: float, group: WaitGroup | None
    ) -> Awaitable[float]:
        """Queue until granted (a slot of ``group`` too); gives the seconds waited."""
        ...

    def free_slot(self, group: WaitGroup) -> None:
        """Give back the concurrency slot a grant took from ``group``."""
        ...

    def release(self, requests: int, tokens: int) -> None:
        """Give back capacity taken earlier."""
        ...

    def adjust_tokens(self, delta: int) -> None:
        """Reconcile tokens: ``delta < 0`` refunds, ``delta > 0`` charges."""
        ...

    def charge(self, requests: int, tokens: int) -> None:
        """Take capacity spent without a grant (debt allowed)."""
        ...

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds``."""
        ...

    def fail_waiters(self, group: WaitGroup, make_error: Callable[[], BaseException]) -> int:
        """Fail the waiters of ``group``; return how many."""
        ...

    async def stop_timer(self) -> None:
        """End the timer task if nobody waits."""
        ...


@dataclass(slots=True, eq=False)
class Reservation:
    """Capacity granted by a :class:`RateLimiter`, to give back or reconcile once.

    Attributes:
        requests: Requests taken.
        tokens: Tokens reserved (after ``settle``, the actual usage).
        waited: Seconds spent waiting for the grant.
    """

    requests: int
    tokens: int
    waited: float
    _backend: CapacityBackend | None = field(default=None, repr=False)
    _open: bool = field(default=True, repr=False)

    def release(self) -> None:
        """Give everything back (the call never happened); later calls do nothing."""
        if self._open:
            self._open = False
            if self._backend is not None:
                self._backend.give_back(self.requests, self.tokens)

    def settle(self, actual_tokens: int | None = None) -> None:
        """Reconcile with the tokens really used: refund or charge the difference.

        ``None`` keeps the reservation as it is. The request stays spent. Later calls (and
        ``release``) do nothing.

        Raises:
            ValueError: ``actual_tokens`` is negative or not an integer.
        """
        if not self._open:
            return
        if actual_tokens is None:
            self._open = False
            return
        if type(actual_tokens) is not int or actual_tokens < 0:
            require_count("actual_tokens", actual_tokens)
        self._open = False
        delta = actual_tokens - self.tokens
        self.tokens = actual_tokens
        if delta and self._backend is not None:
            self._backend.give_back(0, -delta)


class RateLimiter:
    """Requests and tokens taken together or not at all, in order of (priority, arrival).

    Args:
        request_bucket: Limits calls; ``None`` means unlimited.
        token_bucket: Limits tokens; ``None`` means unlimited.
        clock: Must be the clock the buckets read.
        backend: Another capacity source (e.g. Redis) instead of the two buckets.

    Raises:
        ValueError: Buckets and a backend both given, or a bucket on a different clock.
    """

    __slots__ = ("_backend", "_clock", "_queue", "_take_now", "free_slot", "wait_in_line")

    def __init__(
        self,
        request_bucket: TokenBucket | None = None,
        token_bucket: TokenBucket | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        backend: CapacityBackend | None = None,
    ) -> None:
        for name, bucket in (("request_bucket", request_bucket), ("token_bucket", token_bucket)):
            if bucket is None:
                continue
            if backend is not None:
                raise ValueError(f"pass {name} or backend, not both")
            if bucket.clock is not clock:
                raise ValueError(f"{name} reads a different clock than the limiter")
        self._clock = clock
        self._backend: CapacityBackend = backend or LocalCapacity(request_bucket, token_bucket)
        self._take_now: Callable[[int, int], float] | None = getattr(
            self._backend, "try_take", None
        )
        self._queue = WaitQueue(
            clock,
            self._give_back_queued,
            take_now=self._take_queued if self._take_now is not None else None,
            take=self._take_queued_async,
        )
        subscribe: Callable[[Callable[[], None]], None] | None = getattr(
            self._backend, "subscribe", None
        )
        if subscribe is not None:
            subscribe(self._queue.kick)
        #: Give back the concurrency slot of a group that a grant took (a call ended): the
        #: queue's own method, bound here so that a call's end costs one call, not two.
        self.free_slot: Callable[[WaitGroup], None] = self._queue.free_slot
        #: Queue for what could not be taken at once; gives the seconds waited. A grant to a
        #: waiter of ``group`` also takes one of its slots; no :class:`Reservation` is made.
        self.wait_in_line: Callable[[int, int, float, WaitGroup | None], Awaitable[float]] = (
            self._queue.wait
        )

    @property
    def clock(self) -> Clock:
        """The clock the limiter waits on."""
        return self._clock

    @property
    def backend(self) -> CapacityBackend:
        """Where capacity comes from."""
        return self._backend

    @property
    def request_bucket(self) -> TokenBucket | None:
        """The local request bucket, if any (of a backend that has one)."""
        bucket: TokenBucket | None = getattr(self._backend, "request_bucket", None)
        return bucket

    @property
    def token_bucket(self) -> TokenBucket | None:
        """The local token bucket, if any (of a backend that has one)."""
        bucket: TokenBucket | None = getattr(self._backend, "token_bucket", None)
        return bucket

    @property
    def token_capacity(self) -> int | None:
        """The most tokens one request may reserve; ``None`` when tokens are not limited
        (read from the backend each time: limits learned from a provider appear later)."""
        return getattr(self._backend, "token_capacity", None)

    @property
    def queue_depth(self) -> int:
        """Callers waiting now."""
        return self._queue.depth

    @property
    def levels(self) -> dict[str, float]:
        """Current bucket levels (``requests``, ``tokens``; only the buckets present)."""
        return self._backend.levels()

    def check(self, requests: int, tokens: int, priority: float = 0.0) -> None:
        """Validate a request without taking anything.

        Raises:
            ValueError: Negative or non-integer amounts, a non-finite priority, or an amount
                above a bucket's capacity (the message names both numbers).
        """
        # Exact-type checks first: this runs on every call, and plain ints and floats are
        # the norm; anything else gets the full checks (and their messages).
        if type(requests) is not int or requests < 0:
            require_count("requests", requests)
        if type(tokens) is not int or tokens < 0:
            require_count("tokens", tokens)
        kind = type(priority)
        if (
            kind is not float
            and kind is not int
            and (kind is bool or not isinstance(priority, int | float))
        ) or not math.isfinite(priority):
            raise ValueError(f"priority must be a finite number, got {priority!r}")
        self._backend.check(requests, tokens)

    async def acquire(
        self,
        requests: int = 1,
        tokens: int = 0,
        *,
        priority: float = 0.0,
        timeout: float | None = None,
    ) -> Reservation:
        """Wait until both amounts can be taken, then take them.

        Args:
            requests: Request slots to take.
            tokens: Tokens to reserve.
            priority: Lower is served first; equal priorities are FIFO.
            timeout: Seconds to wait at most.

        Raises:
            lionpride.errors.TimeoutError: ``timeout`` passed; nothing was taken.
            ValueError: Bad input, or an amount above a bucket's capacity.
        """
        self.check(requests, tokens, priority)
        if timeout is None:
            return await self._reserve(requests, tokens, priority)
        require_positive("timeout", timeout)
        async with DeadlineScope(self._clock, timeout, "rate limit not granted"):
            return await self._reserve(requests, tokens, priority)

    async def _reserve(self, requests: int, tokens: int, priority: float) -> Reservation:
        """Like :meth:`acquire` without validation or timeout (for callers that did both)."""
        if self.take_now(requests, tokens):
            waited = 0.0
        else:
            waited = await self._queue.wait(requests, tokens, priority, None)
        return Reservation(requests, tokens, waited, self._backend)

    def take_now(self, requests: int, tokens: int) -> bool:
        """Take both amounts if nobody waits and they are there; never waits (``False`` too
        for a backend with no synchronous ``try_take``). The amounts must be checked."""
        take_now = self._take_now
        return not self._queue.depth and take_now is not None and not take_now(requests, tokens)

    def try_acquire(self, requests: int = 1, tokens: int = 0) -> Reservation | None:
        """Take both amounts if available now and nobody is queued; never waits.

        Raises:
            NotImplementedError: The backend has no synchronous ``try_take``.
        """
        require_count("requests", requests)
        require_count("tokens", tokens)
        if self._take_now is None:
            raise NotImplementedError(
                f"{type(self._backend).__name__} cannot grant without waiting"
            )
        if self.take_now(requests, tokens):
            return Reservation(requests, tokens, 0.0, self._backend)
        return None

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` (a 429's ``retry_after``): queued callers back off."""
        self._backend.pause(require_positive("seconds", seconds))

    def release(self, requests: int, tokens: int) -> None:
        """Give back capacity taken earlier."""
        require_count("requests", requests)
        require_count("tokens", tokens)
        self._backend.give_back(requests, tokens)

    def charge(self, requests: int, tokens: int) -> None:
        """Take capacity that was spent without a grant (debt allowed): later grants wait."""
        require_count("requests", requests)
        require_count("tokens", tokens)
        if requests or tokens:
            self._backend.give_back(-requests, -tokens)

    def adjust_tokens(self, delta: int) -> None:
        """Reconcile tokens: ``delta < 0`` refunds, ``delta > 0`` charges (debt allowed)."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ValueError(f"delta must be an integer, got {delta!r}")
        if delta:
            self._backend.give_back(0, -delta)

    def fail_waiters(self, group: WaitGroup, make_error: Callable[[], BaseException]) -> int:
        """Fail the waiters of ``group`` (an executor closing); return how many."""
        return self._queue.fail(group, make_error)

    async def stop_timer(self) -> None:
        """End the timer task if nobody waits."""
        await self._queue.stop_if_idle()

    def _take_queued(self, amount: float, tokens: int) -> float:
        assert self._take_now is not None
        return self._take_now(int(amount), tokens)

    async def _take_queued_async(self, amount: float, tokens: int) -> float:
        return await self._backend.take(int(amount), tokens)

    def _give_back_queued(self, amount: float, tokens: int) -> None:
        self._backend.give_back(int(amount), tokens)
