"""Token buckets and the in-process capacity over two of them.

A :class:`TokenBucket` of capacity L refilling L/T per second is the exact form of a limit of L
per T seconds: it reads an injected clock lazily and waits callers in FIFO order.
:class:`LocalCapacity` takes from a request bucket and a token bucket at once, through the
buckets' private primitives. All three names are public through
:mod:`lionpride.services.utilities.rate_limiter`, which builds the limiter on them.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.utilities._checks import _require_count, _require_positive
from lionpride.services.utilities._waiting import _DeadlineScope, _WaitQueue

__all__ = ["LocalCapacity", "RateLimitConfig", "TokenBucket"]

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
        "_full",
        "_last",
        "_listeners",
        "_paused_until",
        "_queue",
        "_rate",
        "_tokens",
        "_watchers",
    )

    def __init__(self, config: RateLimitConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._config = config
        self._clock = clock
        self._capacity = config.capacity
        self._full = float(config.capacity)
        self._rate = float(config.refill_rate)
        initial = config.initial_tokens
        self._tokens = float(config.capacity if initial is None else initial)
        self._last: float | None = None
        self._paused_until = -math.inf
        self._watchers: list[weakref.ref[_WaitQueue]] = []
        #: (weak reference to a bound method's object, its function), or (None, a callable).
        self._listeners: list[tuple[weakref.ref[Any] | None, Callable[..., None]]] = []
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
        self._tokens = self._full
        self._notify()

    def pause(self, seconds: float) -> None:
        """Grant nothing before ``now + seconds`` (e.g. a provider's ``retry_after``).

        Raises:
            ValueError: ``seconds`` is not finite and > 0.
        """
        until = self._clock.now() + _require_positive("seconds", seconds)
        if until > self._paused_until:
            self._paused_until = until

    def reshape(self, capacity: int, refill_rate: float, level: float | None = None) -> None:
        """Take a new capacity and refill rate (limits learned from a provider).

        ``level`` sets the units available now (it may be negative: a debt); by default the
        level is kept, capped at the new capacity. Waiters are re-examined at once.

        Raises:
            ValueError: A capacity below 1 or a rate that is not finite and > 0.
        """
        _require_count("capacity", capacity, 1)
        rate = _require_positive("refill_rate", refill_rate)
        self._refill(self._clock.now())
        self._config = RateLimitConfig(capacity, rate)
        self._capacity = capacity
        self._full = float(capacity)
        self._rate = rate
        tokens = self._tokens if level is None else level
        self._tokens = tokens if tokens < self._full else self._full
        self._notify()

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
            self._tokens = level if level < self._full else self._full
            self._last = now

    def _delay(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` can be taken (0.0 means now); refills first."""
        # The refill is inlined: this runs on every grant.
        last = self._last
        if last is None:
            self._last = now
        elif now > last:
            level = self._tokens + (now - last) * self._rate
            self._tokens = level if level < self._full else self._full
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
        # No refill first: adding to the level as of the last refill, capped, gives the same
        # level at every later read as refilling first would (min(x + a, cap) + r·dt, capped,
        # equals min(x + r·dt, cap) + a, capped, for a >= 0), one clock read cheaper.
        level = self._tokens + amount
        self._tokens = level if level < self._full else self._full
        self._notify()

    def charge(self, tokens: float = 1) -> None:
        """Take ``tokens`` now even when they are not there (the bucket goes into debt)."""
        self._charge(tokens)

    def _charge(self, amount: float) -> None:
        self._refill(self._clock.now())
        self._tokens -= amount

    def _watch(self, kick: Callable[[], None]) -> None:
        """Call ``kick`` whenever capacity comes back.

        A wait queue's ``kick`` (what a :class:`RateLimiter` subscribes) is held as its queue,
        weakly, and called only while the queue has waiters: idle queues are skipped without
        a call. Another bound method is held as a weak reference to its object plus the
        function; any other callable is held as it is.
        """
        owner = getattr(kick, "__self__", None)
        if isinstance(owner, _WaitQueue) and kick == owner.kick:
            self._watchers = [ref for ref in self._watchers if ref() is not None]
            self._watchers.append(weakref.ref(owner))
            return
        self._listeners = [(r, f) for r, f in self._listeners if r is None or r() is not None]
        if owner is None:
            self._listeners.append((None, kick))  # a plain callable, kept as it is
        else:
            self._listeners.append((weakref.ref(owner), kick.__func__))  # type: ignore[attr-defined]

    def _notify(self) -> None:
        """Wake the queues waiting on this bucket (its own and its limiters') and call the
        other listeners."""
        if self._queue._live:
            self._queue.kick()
        for ref in self._watchers:
            queue = ref()
            if queue is not None and queue._live:
                queue.kick()
        if self._listeners:
            self._tell_listeners()

    def _tell_listeners(self) -> None:
        for ref, function in self._listeners:
            if ref is None:
                function()
            else:
                owner = ref()
                if owner is not None:
                    function(owner)

    def _take_alone(self, amount: float, _tokens: int) -> float:
        delay = self._delay(amount, self._clock.now())
        if delay == 0:
            self._tokens -= amount
        return delay

    def _give_back_alone(self, amount: float, _tokens: int) -> None:
        self._refund(amount)


class LocalCapacity:
    """In-process capacity: an optional request bucket and an optional token bucket."""

    __slots__ = ("_both", "_rb", "_tb")

    def __init__(
        self, request_bucket: TokenBucket | None = None, token_bucket: TokenBucket | None = None
    ) -> None:
        self._rb = request_bucket
        self._tb = token_bucket
        #: Both buckets and their clock's ``now`` when they share one clock (the usual
        #: shape, which try_take serves in one frame), else ``None``.
        self._both: tuple[TokenBucket, TokenBucket, Callable[[], float]] | None = None
        if (
            request_bucket is not None
            and token_bucket is not None
            and request_bucket._clock is token_bucket._clock
        ):
            self._both = (request_bucket, token_bucket, request_bucket._clock.now)

    @property
    def request_bucket(self) -> TokenBucket | None:
        """The request bucket, if any."""
        return self._rb

    @property
    def token_bucket(self) -> TokenBucket | None:
        """The token bucket, if any."""
        return self._tb

    @property
    def token_capacity(self) -> int | None:
        """The token bucket's capacity; ``None`` without one."""
        return self._tb.capacity if self._tb is not None else None

    def check(self, requests: int, tokens: int) -> None:
        """Raise ``ValueError`` naming the amount and capacity a bucket can never hold."""
        rb, tb = self._rb, self._tb
        if rb is not None and requests > rb._capacity:
            raise ValueError(
                f"requests={requests} exceeds the request bucket's capacity {rb.capacity}"
            )
        if tb is not None and tokens > tb._capacity:
            raise ValueError(f"tokens={tokens} exceeds the token bucket's capacity {tb.capacity}")

    def subscribe(self, kick: Callable[[], None]) -> None:
        """Call ``kick`` whenever either bucket gets capacity back.

        A :class:`RateLimiter` subscribes its wait queue's ``kick``: it is held weakly and
        called only while that queue has waiters. Another bound method is held weakly too
        (through its object); any other callable is kept as it is.
        """
        for bucket in (self._rb, self._tb):
            if bucket is not None:
                bucket._watch(kick)

    def try_take(self, requests: int, tokens: int) -> float:
        """Take both amounts now (0.0), or nothing and return the seconds to wait."""
        both = self._both
        if both is not None:
            # Both buckets on one clock, the usual shape: one clock read, both refilled and
            # checked here (this runs on every grant); anything short of an exact grant
            # (a pause, a deficit) goes the general way below, which gives the same result.
            rb, tb, now_of = both
            now = now_of()
            rb._refill(now)
            tb._refill(now)
            if (
                rb._tokens >= requests
                and tb._tokens >= tokens
                and rb._paused_until <= now
                and tb._paused_until <= now
            ):
                rb._tokens -= requests
                tb._tokens -= tokens
                return 0.0
        return self._take_each(requests, tokens)

    def _take_each(self, requests: int, tokens: int) -> float:
        """:meth:`try_take` through each bucket's own wait computation."""
        rb, tb = self._rb, self._tb
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
        """Refund ``requests`` and ``tokens``; a negative amount charges instead."""
        rb = self._rb
        if rb is not None:
            if requests > 0:
                rb._refund(requests)
            elif requests < 0:
                rb._charge(-requests)
        tb = self._tb
        if tb is not None:
            if tokens > 0:
                tb._refund(tokens)
            elif tokens < 0:
                tb._charge(-tokens)

    def pause(self, seconds: float) -> None:
        """Pause both buckets."""
        for bucket in (self._rb, self._tb):
            if bucket is not None:
                bucket.pause(seconds)

    def levels(self) -> dict[str, float]:
        """Levels of the buckets present."""
        out: dict[str, float] = {}
        if self._rb is not None:
            out["requests"] = self._rb.level
        if self._tb is not None:
            out["tokens"] = self._tb.level
        return out
