"""Exact rate limits: token buckets and a dual (requests + tokens) limiter.

A limit of L per T seconds is a :class:`TokenBucket` of capacity L refilling L/T per second, so
in any interval of length t at most L + L·t/T units are granted. Callers that cannot be served
at once queue in order of ``(priority, arrival)``; one timer per queue sleeps until the moment
the head can be served, computed from the bucket levels. Nothing polls, a cancelled waiter
takes nothing, and a large request at the head is never overtaken by smaller ones.

:class:`RateLimiter` waits on a :class:`CapacityBackend`. :class:`LocalCapacity` is the
in-process backend over two buckets; a shared backend (Redis) plugs in by implementing the
same five methods (plus, optionally, ``subscribe`` so refunds wake the queue) and passing
``RateLimiter(backend=...)``. The waiting core (the queue, its
timer and the deadline scope) lives in the private module ``_waiting``.

Example:
    >>> limiter = RateLimiter(TokenBucket(RateLimitConfig(capacity=60, refill_rate=1.0)))
    >>> limiter.try_acquire().requests
    1
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.utilities._checks import _require_count, _require_positive
from lionpride.services.utilities._waiting import _DeadlineScope, _WaitGroup, _WaitQueue

__all__ = [
    "CapacityBackend",
    "LocalCapacity",
    "RateLimitConfig",
    "RateLimiter",
    "Reservation",
    "TokenBucket",
]

#: Waits shorter than this count as "now": float rounding must not cause zero-length sleeps.
_MIN_WAIT = 1e-9


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """The shape of one token bucket.

    Args:
        capacity: Most units the bucket holds (the burst size), an integer > 0.
        refill_rate: Units added per second; 0 makes a bucket refilled only by ``reset()``.
        initial_tokens: Units at first use; ``None`` means full.

    Raises:
        ValueError: Naming the parameter that is out of range.
    """

    capacity: int
    refill_rate: float
    initial_tokens: int | None = None

    def __post_init__(self) -> None:
        _require_count("capacity", self.capacity, 1)
        rate = self.refill_rate
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or rate < 0
        ):
            raise ValueError(f"refill_rate must be a finite number >= 0, got {rate!r}")
        if self.initial_tokens is not None:
            _require_count("initial_tokens", self.initial_tokens)
            if self.initial_tokens > self.capacity:
                raise ValueError(
                    f"initial_tokens ({self.initial_tokens}) must not exceed "
                    f"capacity ({self.capacity})"
                )


class TokenBucket:
    """A token bucket read lazily from an injected clock.

    Tokens refill continuously at ``refill_rate`` up to ``capacity``. ``acquire`` waits in FIFO
    order; ``try_acquire`` never waits. The clock is first read at first use, so a bucket can be
    built outside a running event loop.

    Args:
        config: Capacity, refill rate and initial level.
        clock: Time source; tests pass a ``FakeClock``.
    """

    __slots__ = (
        "__weakref__",
        "_capacity",
        "_clock",
        "_config",
        "_last",
        "_listeners",
        "_paused_until",
        "_queue",
        "_rate",
        "_tokens",
    )

    def __init__(self, config: RateLimitConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._config = config
        self._clock = clock
        self._capacity = config.capacity
        self._rate = float(config.refill_rate)
        initial = config.initial_tokens
        self._tokens = float(config.capacity if initial is None else initial)
        self._last: float | None = None
        self._paused_until = -math.inf
        self._listeners: list[weakref.WeakMethod[Callable[[], None]]] = []
        self._queue = _WaitQueue(clock, self._give_back_alone, take_now=self._take_alone)

    @property
    def capacity(self) -> int:
        """Most tokens the bucket holds."""
        return self._capacity

    @property
    def refill_rate(self) -> float:
        """Tokens added per second."""
        return self._rate

    @property
    def config(self) -> RateLimitConfig:
        """The configuration this bucket was built from."""
        return self._config

    @property
    def clock(self) -> Clock:
        """The clock this bucket reads."""
        return self._clock

    @property
    def level(self) -> float:
        """Tokens available now (negative while in debt after a charge)."""
        self._refill(self._clock.now())
        return self._tokens

    async def acquire(self, tokens: float = 1, *, timeout: float | None = None) -> bool:
        """Take ``tokens``, waiting in FIFO order; ``False`` if ``timeout`` would pass first.

        With a refill rate and a timeout, the wait is computed up front: if the tokens cannot
        arrive within ``timeout`` this returns ``False`` at once, without waiting. With
        ``refill_rate=0`` only ``reset()``/``release()`` can serve a waiter, so it waits for
        them until ``timeout``.

        Raises:
            ValueError: ``tokens`` is not > 0 or exceeds ``capacity``; ``timeout`` not > 0.
        """
        amount = self._check_amount(tokens)
        if amount > self._capacity:
            raise ValueError(
                f"Cannot acquire {tokens} tokens: exceeds bucket capacity {self._capacity}"
            )
        if timeout is not None:
            _require_positive("timeout", timeout)
        now = self._clock.now()
        queue = self._queue
        if queue.depth == 0 and self._delay(amount, now) == 0:
            self._tokens -= amount
            return True
        if timeout is None:
            await queue.wait(amount, 0, 0.0, None)
            return True
        if self._rate > 0:
            self._refill(now)  # skipped above when someone waits; the level may be stale
            earliest = max(
                self._paused_until - now,
                (queue.queued_amount + amount - self._tokens) / self._rate,
            )
            if earliest > timeout + _MIN_WAIT:
                return False
        try:
            async with _DeadlineScope(self._clock, timeout, "tokens not granted"):
                await queue.wait(amount, 0, 0.0, None)
        except errors.TimeoutError:
            return False
        return True

    def try_acquire(self, tokens: float = 1) -> bool:
        """Take ``tokens`` if they are available now and nobody is queued; never waits.

        Raises:
            ValueError: ``tokens`` is not > 0.
        """
        amount = self._check_amount(tokens)
        if self._queue.depth or self._delay(amount, self._clock.now()) > 0:
            return False
        self._tokens -= amount
        return True

    def release(self, tokens: float = 1) -> None:
        """Give ``tokens`` back (capped at capacity) and wake waiters that can now be served.

        Raises:
            ValueError: ``tokens`` is not > 0.
        """
        self._refund(self._check_amount(tokens))

    def reset(self) -> None:
        """Fill the bucket to capacity (a pause, if any, still holds)."""
        self._last = self._clock.now()
        self._tokens = float(self._capacity)
        self._notify()

    def pause(self, seconds: float) -> None:
        """Grant nothing before ``now + seconds`` (e.g. a provider's ``retry_after``).

        Raises:
            ValueError: ``seconds`` is not finite and > 0.
        """
        until = self._clock.now() + _require_positive("seconds", seconds)
        if until > self._paused_until:
            self._paused_until = until

    def to_dict(self) -> dict[str, float]:
        """Return the configuration (never the current level)."""
        return {"capacity": self._capacity, "refill_rate": self._rate}

    def __repr__(self) -> str:
        return f"TokenBucket(capacity={self._capacity}, refill_rate={self._rate})"

    # Primitives shared with LocalCapacity, which takes from two buckets at once.

    def _check_amount(self, tokens: float) -> float:
        return _require_positive("tokens", tokens)

    def _refill(self, now: float) -> None:
        last = self._last
        if last is None:
            self._last = now
        elif now > last:
            level = self._tokens + (now - last) * self._rate
            self._tokens = level if level < self._capacity else float(self._capacity)
            self._last = now

    def _delay(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` can be taken (0.0 means now); refills first."""
        # The refill is inlined: this runs on every grant.
        last = self._last
        if last is None:
            self._last = now
        elif now > last:
            level = self._tokens + (now - last) * self._rate
            self._tokens = level if level < self._capacity else float(self._capacity)
            self._last = now
        wait = self._paused_until - now
        if amount:
            deficit = amount - self._tokens
            if deficit > 0:
                deficit_wait = deficit / self._rate if self._rate else math.inf
                if deficit_wait > wait:
                    wait = deficit_wait
        return wait if wait > _MIN_WAIT else 0.0

    def _refund(self, amount: float) -> None:
        self._refill(self._clock.now())
        self._tokens = min(float(self._capacity), self._tokens + amount)
        self._notify()

    def _charge(self, amount: float) -> None:
        self._refill(self._clock.now())
        self._tokens -= amount

    def _subscribe(self, kick: Callable[[], None]) -> None:
        """Call ``kick`` whenever capacity comes back (held weakly)."""
        self._listeners.append(weakref.WeakMethod(kick))

    def _notify(self) -> None:
        self._queue.kick()
        dead = False
        for ref in self._listeners:
            kick = ref()
            if kick is None:
                dead = True
            else:
                kick()
        if dead:
            self._listeners = [ref for ref in self._listeners if ref() is not None]

    def _take_alone(self, amount: float, _tokens: int) -> float:
        delay = self._delay(amount, self._clock.now())
        if delay == 0:
            self._tokens -= amount
        return delay

    def _give_back_alone(self, amount: float, _tokens: int) -> None:
        self._refund(amount)


@runtime_checkable
class CapacityBackend(Protocol):
    """Where a :class:`RateLimiter` takes capacity from.

    ``take`` must take both amounts or neither. Two optional methods, looked up by name:

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
        """Return capacity; a negative ``tokens`` charges that many more (debt allowed)."""
        ...

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds``."""
        ...

    def levels(self) -> dict[str, float]:
        """Current levels by bucket name (``requests``, ``tokens``)."""
        ...


class LocalCapacity:
    """In-process capacity: an optional request bucket and an optional token bucket."""

    __slots__ = ("request_bucket", "token_bucket")

    def __init__(
        self, request_bucket: TokenBucket | None = None, token_bucket: TokenBucket | None = None
    ) -> None:
        self.request_bucket = request_bucket
        self.token_bucket = token_bucket

    def check(self, requests: int, tokens: int) -> None:
        """Raise ``ValueError`` naming the amount and capacity a bucket can never hold."""
        rb, tb = self.request_bucket, self.token_bucket
        if rb is not None and requests > rb.capacity:
            raise ValueError(
                f"requests={requests} exceeds the request bucket's capacity {rb.capacity}"
            )
        if tb is not None and tokens > tb.capacity:
            raise ValueError(f"tokens={tokens} exceeds the token bucket's capacity {tb.capacity}")

    def subscribe(self, kick: Callable[[], None]) -> None:
        """Call ``kick`` whenever either bucket gets capacity back (held weakly)."""
        for bucket in (self.request_bucket, self.token_bucket):
            if bucket is not None:
                bucket._subscribe(kick)

    def try_take(self, requests: int, tokens: int) -> float:
        """Take both amounts now (0.0), or nothing and return the seconds to wait."""
        rb, tb = self.request_bucket, self.token_bucket
        wait = 0.0
        now = 0.0
        if rb is not None:
            now = rb._clock.now()
            wait = rb._delay(requests, now)
        if tb is not None:
            if rb is None or tb._clock is not rb._clock:
                now = tb._clock.now()
            tb_wait = tb._delay(tokens, now)
            if tb_wait > wait:
                wait = tb_wait
        if wait:
            return wait
        if rb is not None:
            rb._tokens -= requests
        if tb is not None:
            tb._tokens -= tokens
        return 0.0

    async def take(self, requests: int, tokens: int) -> float:
        """Same as :meth:`try_take` (local buckets never block)."""
        return self.try_take(requests, tokens)

    def give_back(self, requests: int, tokens: int) -> None:
        """Refund ``requests`` and ``tokens``; negative ``tokens`` charges instead."""
        if requests and self.request_bucket is not None:
            self.request_bucket._refund(requests)
        tb = self.token_bucket
        if tb is not None:
            if tokens > 0:
                tb._refund(tokens)
            elif tokens < 0:
                tb._charge(-tokens)

    def pause(self, seconds: float) -> None:
        """Pause both buckets."""
        for bucket in (self.request_bucket, self.token_bucket):
            if bucket is not None:
                bucket.pause(seconds)

    def levels(self) -> dict[str, float]:
        """Levels of the buckets present."""
        out: dict[str, float] = {}
        if self.request_bucket is not None:
            out["requests"] = self.request_bucket.level
        if self.token_bucket is not None:
            out["tokens"] = self.token_bucket.level
        return out


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
        _require_count("actual_tokens", actual_tokens)
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

    __slots__ = ("_backend", "_clock", "_queue", "_take_now")

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
        self._queue = _WaitQueue(
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
        """The local request bucket, if any."""
        backend = self._backend
        return backend.request_bucket if isinstance(backend, LocalCapacity) else None

    @property
    def token_bucket(self) -> TokenBucket | None:
        """The local token bucket, if any."""
        backend = self._backend
        return backend.token_bucket if isinstance(backend, LocalCapacity) else None

    @property
    def queue_depth(self) -> int:
        """Callers waiting now."""
        return self._queue.depth

    @property
    def levels(self) -> dict[str, float]:
        """Current bucket levels (``requests``, ``tokens``; only the buckets present)."""
        return self._backend.levels()

    def _check(self, requests: int, tokens: int, priority: float = 0.0) -> None:
        """Validate a request without taking anything.

        Raises:
            ValueError: Negative or non-integer amounts, a non-finite priority, or an amount
                above a bucket's capacity (the message names both numbers).
        """
        # Exact-type checks first: this runs on every call, and plain ints and floats are
        # the norm; anything else gets the full checks (and their messages).
        if type(requests) is not int or requests < 0:
            _require_count("requests", requests)
        if type(tokens) is not int or tokens < 0:
            _require_count("tokens", tokens)
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
        self._check(requests, tokens, priority)
        if timeout is None:
            return await self._reserve(requests, tokens, priority)
        _require_positive("timeout", timeout)
        async with _DeadlineScope(self._clock, timeout, "rate limit not granted"):
            return await self._reserve(requests, tokens, priority)

    async def _reserve(
        self, requests: int, tokens: int, priority: float, group: _WaitGroup | None = None
    ) -> Reservation:
        """Like :meth:`acquire` without validation or timeout (for callers that did both)."""
        reservation = self._grant_now(requests, tokens, group)
        if reservation is not None:
            return reservation
        waited = await self._queue.wait(requests, tokens, priority, group)
        return Reservation(requests, tokens, waited, self._backend)

    def _grant_now(
        self, requests: int, tokens: int, group: _WaitGroup | None = None
    ) -> Reservation | None:
        """Grant at once if nobody waits and capacity (and a slot of ``group``) is there."""
        take_now = self._take_now
        if (
            self._queue.depth == 0
            and take_now is not None
            and (group is None or group.slots != 0)
            and take_now(requests, tokens) == 0
        ):
            if group is not None and group.slots is not None:
                group.slots -= 1
            return Reservation(requests, tokens, 0.0, self._backend)
        return None

    def try_acquire(self, requests: int = 1, tokens: int = 0) -> Reservation | None:
        """Take both amounts if available now and nobody is queued; never waits.

        Raises:
            NotImplementedError: The backend has no synchronous ``try_take``.
        """
        _require_count("requests", requests)
        _require_count("tokens", tokens)
        if self._take_now is None:
            raise NotImplementedError(
                f"{type(self._backend).__name__} cannot grant without waiting"
            )
        return self._grant_now(requests, tokens)

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` (a 429's ``retry_after``): queued callers back off."""
        self._backend.pause(_require_positive("seconds", seconds))

    def release(self, requests: int, tokens: int) -> None:
        """Give back capacity taken earlier."""
        _require_count("requests", requests)
        _require_count("tokens", tokens)
        self._backend.give_back(requests, tokens)

    def adjust_tokens(self, delta: int) -> None:
        """Reconcile tokens: ``delta < 0`` refunds, ``delta > 0`` charges (debt allowed)."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ValueError(f"delta must be an integer, got {delta!r}")
        if delta:
            self._backend.give_back(0, -delta)

    def _fail_waiters(self, group: _WaitGroup, make_error: Callable[[], BaseException]) -> int:
        """Fail the waiters of ``group`` (an executor closing); return how many."""
        return self._queue.fail(group, make_error)

    def _free_slot(self, group: _WaitGroup) -> None:
        """Give back the concurrency slot of ``group`` that a grant took (a call ended)."""
        self._queue.free_slot(group)

    async def _stop_timer(self) -> None:
        """End the timer task if nobody waits."""
        await self._queue.stop_if_idle()

    def _take_queued(self, amount: float, tokens: int) -> float:
        assert self._take_now is not None
        return self._take_now(int(amount), tokens)

    async def _take_queued_async(self, amount: float, tokens: int) -> float:
        return await self._backend.take(int(amount), tokens)

    def _give_back_queued(self, amount: float, tokens: int) -> None:
        self._backend.give_back(int(amount), tokens)
