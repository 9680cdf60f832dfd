"""Token buckets and the in-process capacity over two of them.

A :class:`TokenBucket` of capacity L refilling L/T per second is the exact form of a limit of L
per T seconds. It owns its level, its last refill time, its pause and its listeners; others
change them only through its public methods:

* ``take(amount, now)``, ``untake(amount)``, ``delay(amount, now)``, ``refill(now)``: take if
  there (else say how long until), undo a take of the same instant, look without taking, bring
  the level up to date; a set of buckets (:class:`LocalCapacity`) grants from both with them;
* ``refund(amount)``, ``charge(amount)``, ``pause(seconds)``, ``reset()``, ``reshape(...)``:
  give back, take into debt, hold, refill, reshape (the executor, the learned limits, the
  Redis fallback);
* ``subscribe(listener)``: hear whenever capacity comes back (the wait queue of the set the
  bucket is in; bound methods are held weakly);
* ``acquire``/``try_acquire``/``release``: the bucket used alone, waiting in its own
  :class:`~lionpride.services.utilities.waiting.WaitQueue`, made at the first wait.

:class:`LocalCapacity` is the set of a request bucket and a token bucket that a
:class:`~lionpride.services.utilities.rate_limiter.RateLimiter` takes from together; it holds
no state of its own besides the two buckets. All three names are public through
:mod:`lionpride.services.utilities.rate_limiter`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.utilities.checks import require_count, require_positive
from lionpride.services.utilities.waiting import DeadlineScope, Listeners, WaitQueue

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
        require_count("capacity", self.capacity, 1)
        rate = self.refill_rate
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or rate < 0
        ):
            raise ValueError(f"refill_rate must be a finite number >= 0, got {rate!r}")
        if self.initial_tokens is not None:
            require_count("initial_tokens", self.initial_tokens)
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

    Attributes:
        config: The shape the bucket has now (``reshape`` replaces it). Read only.
        capacity: Most tokens the bucket holds. Read only.
        refill_rate: Tokens added per second. Read only.
        clock: The clock the bucket reads. Read only.
    """

    __slots__ = (
        "_full",
        "_last",
        "_listeners",
        "_paused_until",
        "_queue",
        "_tokens",
        "capacity",
        "clock",
        "config",
        "refill_rate",
    )

    def __init__(self, config: RateLimitConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        self.capacity = config.capacity
        self._full = float(config.capacity)
        self.refill_rate = float(config.refill_rate)
        initial = config.initial_tokens
        self._tokens = float(config.capacity if initial is None else initial)
        self._last: float | None = None
        self._paused_until = -math.inf
        self._listeners = Listeners()
        #: The queue of callers of :meth:`acquire`, made at the first wait.
        self._queue: WaitQueue | None = None

    @property
    def level(self) -> float:
        """Tokens available now (negative while in debt after a charge)."""
        return self.refill()

    # -- the primitives a set of buckets grants with ----------------------------------------

    def take(self, amount: float, now: float | None = None) -> float:
        """Take ``amount`` if it is there at ``now`` (the clock's, by default) and return 0.0;
        else take nothing and return the seconds until it is (``inf``: only a refund can serve
        it). Refills first; a pause counts."""
        if now is None:
            now = self.clock.now()
        # The refill is written out here, not called: this runs on every grant.
        last = self._last
        if last is None:
            self._last = now
        elif now > last:
            level = self._tokens + (now - last) * self.refill_rate
            self._tokens = level if level < self._full else self._full
            self._last = now
        wait = self._paused_until - now
        if amount and amount > self._tokens:
            rate = self.refill_rate
            deficit_wait = (amount - self._tokens) / rate if rate else math.inf
            if deficit_wait > wait:
                wait = deficit_wait
        if wait > _MIN_WAIT:
            return wait
        self._tokens -= amount
        return 0.0

    def untake(self, amount: float) -> None:
        """Put back what :meth:`take` took at this same instant, telling nobody (a set of
        buckets takes from each and undoes it when another falls short)."""
        self._tokens += amount

    def delay(self, amount: float, now: float | None = None) -> float:
        """Seconds from ``now`` until ``amount`` can be taken (0.0: now); takes nothing."""
        wait = self.take(amount, now)
        if not wait:
            self.untake(amount)
        return wait

    def refill(self, now: float | None = None) -> float:
        """Add what refilled up to ``now`` (the clock's, by default); return the level."""
        self.take(0.0, now)
        return self._tokens

    def refund(self, amount: float) -> None:
        """Give back ``amount`` (capped at capacity) and tell the listeners."""
        # No refill first: adding to the level as of the last refill, capped, gives the same
        # level at every later read as refilling first would (min(x + a, cap) + r·dt, capped,
        # equals min(x + r·dt, cap) + a, capped, for a >= 0), one clock read cheaper.
        level = self._tokens + amount
        self._tokens = level if level < self._full else self._full
        self._notify()

    def charge(self, amount: float) -> None:
        """Take ``amount`` spent without a grant, even into debt: later grants wait for it."""
        self.refill()
        self._tokens -= amount

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever capacity comes back (a refund, a reset, a reshape).

        A bound method is held weakly (a limiter gone is not kept alive by its buckets); any
        other callable is kept as it is.
        """
        self._listeners.add(listener)

    # -- the bucket used alone --------------------------------------------------------------

    async def acquire(self, tokens: float = 1, *, timeout: float | None = None) -> bool:
        """Take ``tokens``, waiting in FIFO order; ``False`` if ``timeout`` would pass first.

        With a refill rate and a timeout, the wait is computed up front: if the tokens cannot
        arrive within ``timeout`` this returns ``False`` at once, without waiting. With
        ``refill_rate=0`` only ``reset()``/``release()`` can serve a waiter, so it waits for
        them until ``timeout``.

        Raises:
            ValueError: ``tokens`` is not > 0 or exceeds ``capacity``; ``timeout`` not > 0.
        """
        amount = require_positive("tokens", tokens)
        if amount > self.capacity:
            raise ValueError(
                f"Cannot acquire {tokens} tokens: exceeds bucket capacity {self.capacity}"
            )
        if timeout is not None:
            require_positive("timeout", timeout)
        queue = self._queue
        now = self.clock.now()
        if (queue is None or queue.depth == 0) and self.take(amount, now) == 0:
            return True
        if queue is None:
            queue = self._queue = WaitQueue(self.clock, self._give_back, take_now=self._take)
        if timeout is None:
            await queue.wait(amount, 0, 0.0, None)
            return True
        if self.refill_rate > 0:
            self.refill(now)  # skipped above when someone waits; the level may be stale
            earliest = max(
                self._paused_until - now,
                (queue.queued_amount + amount - self._tokens) / self.refill_rate,
            )
            if earliest > timeout + _MIN_WAIT:
                return False
        try:
            async with DeadlineScope(self.clock, timeout, "tokens not granted"):
                await queue.wait(amount, 0, 0.0, None)
        except errors.TimeoutError:
            return False
        return True

    def try_acquire(self, tokens: float = 1) -> bool:
        """Take ``tokens`` if they are available now and nobody is queued; never waits.

        Raises:
            ValueError: ``tokens`` is not > 0.
        """
        amount = require_positive("tokens", tokens)
        queue = self._queue
        return (queue is None or queue.depth == 0) and self.take(amount) == 0

    def release(self, tokens: float = 1) -> None:
        """:meth:`refund` with the amount checked (and waiters that can now be served woken).

        Raises:
            ValueError: ``tokens`` is not > 0.
        """
        self.refund(require_positive("tokens", tokens))

    def reset(self) -> None:
        """Fill the bucket to capacity (a pause, if any, still holds)."""
        self._last = self.clock.now()
        self._tokens = self._full
        self._notify()

    def pause(self, seconds: float) -> None:
        """Grant nothing before ``now + seconds`` (e.g. a provider's ``retry_after``).

        Raises:
            ValueError: ``seconds`` is not finite and > 0.
        """
        until = self.clock.now() + require_positive("seconds", seconds)
        if until > self._paused_until:
            self._paused_until = until

    def reshape(self, capacity: int, refill_rate: float, level: float | None = None) -> None:
        """Take a new capacity and refill rate (limits learned from a provider).

        ``level`` sets the units available now (it may be negative: a debt); by default the
        level is kept, capped at the new capacity. Waiters are re-examined at once.

        Raises:
            ValueError: A capacity below 1 or a rate that is not finite and > 0.
        """
        require_count("capacity", capacity, 1)
        rate = require_positive("refill_rate", refill_rate)
        self.refill()
        self.config = RateLimitConfig(capacity, rate)
        self.capacity = capacity
        self._full = float(capacity)
        self.refill_rate = rate
        tokens = self._tokens if level is None else level
        self._tokens = tokens if tokens < self._full else self._full
        self._notify()

    def to_dict(self) -> dict[str, float]:
        """Return the configuration (never the current level)."""
        return {"capacity": self.capacity, "refill_rate": self.refill_rate}

    def __repr__(self) -> str:
        return f"TokenBucket(capacity={self.capacity}, refill_rate={self.refill_rate})"

    def _notify(self) -> None:
        """Capacity came back: wake this bucket's own waiters and tell the listeners."""
        queue = self._queue
        if queue is not None and queue.depth:
            queue.kick()
        self._listeners.tell()

    def _take(self, amount: float, _tokens: int) -> float:
        """Take for the head of this bucket's own queue, or say how long it must wait."""
        return self.take(amount)

    def _give_back(self, amount: float, _tokens: int) -> None:
        """Take back a grant its waiter, cancelled, could not use."""
        self.refund(amount)


class LocalCapacity:
    """In-process capacity: an optional request bucket and an optional token bucket, taken
    from together or not at all (the set a :class:`RateLimiter`'s one queue waits on)."""

    __slots__ = ("_rb", "_same_clock", "_tb")

    def __init__(
        self, request_bucket: TokenBucket | None = None, token_bucket: TokenBucket | None = None
    ) -> None:
        self._rb = request_bucket
        self._tb = token_bucket
        #: Both buckets read one clock (the usual shape): one clock read serves both.
        self._same_clock = (
            request_bucket is not None
            and token_bucket is not None
            and request_bucket.clock is token_bucket.clock
        )

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
        if rb is not None and requests > rb.capacity:
            raise ValueError(
                f"requests={requests} exceeds the request bucket's capacity {rb.capacity}"
            )
        if tb is not None and tokens > tb.capacity:
            raise ValueError(f"tokens={tokens} exceeds the token bucket's capacity {tb.capacity}")

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever either bucket gets capacity back (a bound method is
        held weakly; any other callable as it is)."""
        for bucket in (self._rb, self._tb):
            if bucket is not None:
                bucket.subscribe(listener)

    def try_take(self, requests: int, tokens: int) -> float:
        """Take both amounts now (0.0), or nothing and return the seconds to wait."""
        rb, tb = self._rb, self._tb
        if rb is None:
            return tb.take(tokens) if tb is not None else 0.0
        now = rb.clock.now() if self._same_clock else None
        wait = rb.take(requests, now)
        if tb is None:
            return wait
        if wait:
            tb_wait = tb.delay(tokens, now)
            return tb_wait if tb_wait > wait else wait
        wait = tb.take(tokens, now)
        if wait:
            rb.untake(requests)
        return wait

    async def take(self, requests: int, tokens: int) -> float:
        """Same as :meth:`try_take` (local buckets never block)."""
        return self.try_take(requests, tokens)

    def give_back(self, requests: int, tokens: int) -> None:
        """Refund ``requests`` and ``tokens``; a negative amount charges instead."""
        rb, tb = self._rb, self._tb
        if requests and rb is not None:
            rb.refund(requests) if requests > 0 else rb.charge(-requests)
        if tokens and tb is not None:
            tb.refund(tokens) if tokens > 0 else tb.charge(-tokens)

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
