"""Limits learned from the provider: buckets shaped by its headers, or by its 429s.

:class:`AdaptiveCapacity` is a :class:`~lionpride.services.utilities.rate_limiter.CapacityBackend`
over a request bucket and a token bucket whose shapes follow what the provider says:

* **Headers** (OpenAI-compatible ``x-ratelimit-*``, Anthropic ``anthropic-ratelimit-*``): each
  answer gives a family's limit (the capacity), what was left when the provider admitted the
  request, and when the bucket is full again, from which the refill rate follows
  (``(limit - remaining - 1) / reset``, one unit less for the rounding of ``remaining``, from
  the most precise readings: those with the largest deficits). What was left is less what this
  model sent since the request went out (the provider had not counted those yet), so the same
  capacity is never credited twice. A reading only ever lowers the level, except when the
  capacity itself changes.
* **No headers** (Gemini, many OpenAI-compatible servers): the request rate adapts to 429s,
  as the AWS SDKs' adaptive retry mode does. A retryable 429 cuts the rate to 0.7 times the
  rate the provider let calls through at since the last cut (once per round of calls: the
  429s of calls sent before the cut do not cut again); every success then raises it by a
  constant amount per second (it is back at the old rate after ``4`` seconds, and keeps
  probing above it). A 429 no wait cures (a spent quota) teaches nothing.
* **Configured limits** are upper bounds: learned capacities and rates never exceed them.

Before the first answer, a model with no configured request limit sends one call, then one
more per second, until an answer says how to go on.

Who owns what: a :class:`LimitLearner` owns its two buckets, what it learned and its ledger
of what was sent; it shapes the buckets only through their public methods (``reshape``,
``level``). Others call: the endpoint, ``sent``/``answered`` (:class:`LimitWatch`); the model,
``serves_here``, ``check``, ``mode``, ``token_capacity``, ``learned``, ``configured``; the
:class:`~lionpride.services.utilities.rate_limiter.RateLimiter` over it, the capacity
methods (``try_take``/``take``, ``give_back``, ``pause``, ``levels``, ``subscribe``). A
subclass that keeps its capacity elsewhere (Redis) overrides ``_reshape`` and the capacity
methods.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.utilities._limit_headers import (
    LimitReading,
    parse_duration,
    read_limit_headers,
)
from lionpride.services.utilities._token_bucket import LocalCapacity, RateLimitConfig, TokenBucket
from lionpride.services.utilities.checks import require_count, require_positive
from lionpride.services.utilities.loops import runs_here

__all__ = [
    "NO_MARK",
    "AdaptiveCapacity",
    "LearnedLimit",
    "LimitLearner",
    "LimitReading",
    "LimitWatch",
    "Mark",
    "parse_duration",
    "read_limit_headers",
]

Source = Literal["configured", "first answer", "headers", "429s", "unlimited"]

_log = logging.getLogger("lionpride.services.limits")

#: Capacity and rate of a dimension nothing limits (yet).
_OPEN = 2**50
#: Before the first answer: calls let through at once, then one per second.
_FIRST_WAVE = 1
_GATE_RATE = 1.0
#: AIMD: the multiplicative cut, the seconds the additive increase takes to win it back, the
#: shortest time a success rate is measured over, and the seconds of rate a burst may take.
_BETA = 0.7
_RECOVER = 4.0
_SAMPLE = 1.0
_BURST = 0.1
#: Rate changes smaller than this fraction are not applied (each reshape wakes the queue).
_STEP = 0.02


#: What :meth:`LimitWatch.sent` returns: requests and tokens taken so far, and the wall time.
Mark = tuple[int, int, float]

#: The mark of an attempt nobody watches.
NO_MARK: Mark = (0, 0, 0.0)


class LimitWatch(Protocol):
    """What an endpoint tells about each HTTP attempt (:class:`AdaptiveCapacity` listens)."""

    def sent(self) -> Mark:
        """Mark an attempt going out now."""
        ...

    def answered(self, headers: Mapping[str, str], mark: Mark, throttled: bool | None) -> None:
        """Learn from the answer to the attempt marked ``mark``."""
        ...


@dataclass(frozen=True, slots=True)
class LearnedLimit:
    """One limit as the model applies it now.

    Attributes:
        limit: The bucket's capacity (the burst).
        per_second: Its refill rate.
        source: ``headers``, ``429s``, ``configured``, ``first answer`` or ``unlimited``.
        updated_at: Wall-clock time (``time.time()``) of the last change, ``None`` if never.
    """

    limit: int
    per_second: float
    source: Source
    updated_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """The limit as plain values, for ``metrics()``."""
        return {
            "limit": self.limit,
            "per_minute": round(self.per_second * 60, 1),
            "source": self.source,
            "updated_at": self.updated_at,
        }


class _Estimate:
    """The refill rate of one header family, from its most precise readings.

    ``remaining`` is rounded down to a unit and ``reset`` up (to the millisecond or, for
    Anthropic, the second), so ``(deficit - 1) / reset`` is never above the true rate. A
    reading with twice the deficit of the one behind the estimate replaces it; one about as
    precise raises it, so that over many readings the rounding of ``reset`` falls away.
    """

    __slots__ = ("deficit", "limit", "rate")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.deficit = 0  # of the reading behind the estimate
        self.rate: float | None = None

    def update(self, reading: LimitReading) -> None:
        deficit = reading.limit - reading.remaining
        if not reading.reset or deficit < 2:
            return
        rate = (deficit - 1) / reading.reset
        if self.rate is None or deficit >= 2 * self.deficit:
            self.deficit, self.rate = deficit, rate
        elif 2 * deficit >= self.deficit and rate > self.rate:
            self.deficit, self.rate = min(deficit, self.deficit), rate


class LimitLearner(ABC):
    """The shapes of a request and a token bucket, learned from the provider's answers (see
    the module docstring): what :class:`AdaptiveCapacity` (local buckets) and the Redis-shared
    variant have in common.

    An endpoint calls two methods around each HTTP attempt: :meth:`sent` (before sending)
    and :meth:`answered` (once the status and headers are in). The learned shapes are held
    by two :class:`TokenBucket` objects; a subclass that keeps its capacity elsewhere
    extends :meth:`_reshape` to pass them on.

    Args:
        limit_requests: Configured requests per ``capacity_refresh_time``: an upper bound.
        limit_tokens: Configured tokens per ``capacity_refresh_time``: an upper bound.
        capacity_refresh_time: The window of the configured limits, in seconds.
        clock: Time source of the buckets.

    Raises:
        ValueError: A limit below 1 or a window that is not > 0.
    """

    def __init__(
        self,
        *,
        limit_requests: int | None = None,
        limit_tokens: int | None = None,
        capacity_refresh_time: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        period = require_positive("capacity_refresh_time", capacity_refresh_time)
        self._clock = clock
        self._bounds: dict[str, tuple[int, float] | None] = {}
        self._learned: dict[str, LearnedLimit] = {}
        for family, limit in (("requests", limit_requests), ("tokens", limit_tokens)):
            if limit is None:
                self._bounds[family] = None
            else:
                require_count(f"limit_{family}", limit, 1)
                self._bounds[family] = (limit, limit / period)
                self._learned[family] = LearnedLimit(limit, limit / period, "configured", None)
        #: (family, limit) of each configured limit: what ``check`` runs through per call.
        self._caps = tuple((f, bound[0]) for f, bound in self._bounds.items() if bound is not None)
        requests = self._bounds["requests"]
        first = requests or (_FIRST_WAVE, _GATE_RATE)
        self._rb = TokenBucket(RateLimitConfig(first[0], first[1]), clock=clock)
        tokens = self._bounds["tokens"] or (_OPEN, float(_OPEN))
        self._tb = TokenBucket(RateLimitConfig(tokens[0], tokens[1]), clock=clock)
        #: The two buckets taken from together (where the capacity is local).
        self._local = LocalCapacity(self._rb, self._tb)
        self._mode: Literal["first", "headers", "aimd"] = "first"
        self._estimates: dict[str, _Estimate] = {}
        #: Tokens one request may reserve: the configured limit; with none, no bound once
        #: the provider named a token limit (a request above it waits for a full bucket), and
        #: ``None`` (tokens not metered) before. Read on every call, so kept as a value
        #: (set here and by :meth:`_estimate`), not computed. Read only.
        token_bound = self._bounds["tokens"]
        self.token_capacity: int | None = None if token_bound is None else token_bound[0]
        # Requests and tokens taken so far, less what came back: the ledger that says what
        # was sent after a given attempt went out.
        self._sent_requests = 0
        self._sent_tokens = 0
        # AIMD state: the rate (None: unbounded), the rate before the last cut, when it was
        # cut (or learning began), the ledger and the successes counted then.
        self._rate: float | None = None
        self._before_cut = 0.0
        self._cut_at = 0.0
        self._cut_ledger = -1
        self._successes = 0
        self._cut_successes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned = False  # of calls from a second loop that go without the limits

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self._mode!r}, learned={self.learned()})"

    # -- what the model shows ---------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``first`` (no answer yet), ``headers`` or ``aimd`` (no headers: 429s teach)."""
        return self._mode

    @property
    def request_bucket(self) -> TokenBucket:
        """The request bucket."""
        return self._rb

    @property
    def token_bucket(self) -> TokenBucket:
        """The token bucket (unbounded until a limit is configured or learned)."""
        return self._tb

    def configured(self) -> dict[str, dict[str, float] | None]:
        """The configured limits as bucket shapes (``request_bucket``, ``token_bucket``;
        ``None`` where nothing is configured), as ``RateLimitedExecutor.to_dict`` gives them."""
        shapes: dict[str, dict[str, float] | None] = {}
        for family, name in (("requests", "request_bucket"), ("tokens", "token_bucket")):
            bound = self._bounds[family]
            shapes[name] = (
                None if bound is None else {"capacity": bound[0], "refill_rate": bound[1]}
            )
        return shapes

    def learned(self) -> dict[str, dict[str, Any]]:
        """The limits applied now, by family, with their source and last update."""
        return {family: limit.to_dict() for family, limit in self._learned.items()}

    def serves_here(self) -> bool:
        """Whether these limits serve the running event loop.

        They serve one loop at a time: the first to use them, until it stops running (an
        ``asyncio.run`` that ended, another thread's ``invoke_sync`` between calls), when the
        next loop takes them over. A loop another thread runs at the same time does not touch
        them: its calls go without the limits, and the first of them warns.
        """
        home = self._loop
        if runs_here(home):  # the common case, told without a system call
            return True
        loop = asyncio.get_running_loop()
        if home is loop:  # a loop that does not record its thread (uvloop)
            return True
        if home is None or not home.is_running():
            self._loop = loop
            return True
        if not self._warned:
            self._warned = True
            message = (
                "a model with limits is called from two event loops running at once (two "
                "threads): the calls of the second loop go without the model's limits; give "
                "each thread its own model, or call from one loop"
            )
            _log.warning(message)
            warnings.warn(message, stacklevel=3)
        return False

    def check(self, requests: int, tokens: int) -> None:
        """Raise ``ValueError`` for amounts above a configured limit (learned ones wait)."""
        for family, cap in self._caps:
            amount = requests if family == "requests" else tokens
            if amount > cap:
                raise ValueError(f"{family}={amount} exceeds the configured limit_{family} {cap}")

    # -- what the endpoint reports ----------------------------------------------------------

    def sent(self) -> Mark:
        """Mark an attempt going out now; pass the mark back to :meth:`answered`."""
        return self._sent_requests, self._sent_tokens, time.time()

    def answered(self, headers: Mapping[str, str], mark: Mark, throttled: bool | None) -> None:
        """Learn from an answer to the attempt marked ``mark``.

        Args:
            headers: The answer's headers (looked up case-insensitively, or lower-case).
            mark: What :meth:`sent` returned before the attempt went out.
            throttled: ``True`` for a 429 that a wait cures, ``False`` for a success,
                ``None`` for anything else (which teaches the 429 rate nothing).
        """
        if not self.serves_here():
            return  # another thread's loop: its calls go without these limits
        # Anthropic's resets are times: counted from when the attempt went out (before the
        # provider admitted it), the wait is never too short, nor the rate too high.
        readings = read_limit_headers(headers, wall_now=mark[2])
        if readings:
            self._from_headers(readings, mark)
        elif self._mode != "headers":
            self._from_outcome(throttled, mark)

    def _fitted(self, requests: int, tokens: int) -> tuple[int, int]:
        """The amounts to wait for: at most each bucket's learned capacity (a learned
        capacity may shrink below requests already accepted; the rest is taken as debt)."""
        request_cap, token_cap = self._rb.capacity, self._tb.capacity
        # Conditionals, not min(): a builtin call costs more, and this runs on every grant.
        return (
            requests if requests <= request_cap else request_cap,
            tokens if tokens <= token_cap else token_cap,
        )

    def _granted(self, requests: int, tokens: int, now_requests: int, now_tokens: int) -> None:
        """Book a grant of the fitted amounts: the rest as debt, all of it in the ledger."""
        self._count(now_requests, now_tokens)
        if now_requests != requests or now_tokens != tokens:
            self.give_back(now_requests - requests, now_tokens - tokens)

    @abstractmethod
    def give_back(self, requests: int, tokens: int) -> None:
        """Refund ``requests`` and ``tokens``; a negative amount charges instead (and the
        ledger :meth:`sent` reads follows)."""

    @staticmethod
    def _limiting(bucket: TokenBucket) -> RateLimitConfig | None:
        """The bucket's shape, ``None`` while it limits nothing."""
        return bucket.config if bucket.capacity < _OPEN else None

    def _count(self, requests: int, tokens: int) -> None:
        """Book capacity taken (negative: given back) in the ledger :meth:`sent` reads."""
        self._sent_requests += requests
        self._sent_tokens += tokens

    def _reshape(
        self, bucket: TokenBucket, capacity: int, rate: float, level: float | None = None
    ) -> None:
        """Give ``bucket`` a learned shape (and, with ``level``, a level: never raised above
        what it holds unless the capacity changes)."""
        bucket.reshape(capacity, rate, level)

    def _from_headers(self, readings: dict[str, LimitReading], mark: Mark) -> None:
        wall = time.time()
        if self._mode != "headers" and "requests" not in readings:
            self._open_requests(wall)
        self._mode = "headers"
        since = (self._sent_requests - mark[0], self._sent_tokens - mark[1])
        tokens = readings.get("tokens") or readings.get("input_tokens")
        for family, bucket, reading, after in (
            ("requests", self._rb, readings.get("requests"), since[0]),
            ("tokens", self._tb, tokens, since[1]),
        ):
            if reading is not None:
                self._apply(family, bucket, reading, after, wall)
        for family in ("input_tokens", "output_tokens"):
            reading = readings.get(family)
            if reading is not None:  # shown; the combined (or input) family paces
                self._estimate(family, reading)
                rate = self._estimates[family].rate or reading.limit / 60.0
                self._learned[family] = LearnedLimit(reading.limit, rate, "headers", wall)

    def _estimate(self, family: str, reading: LimitReading) -> None:
        """Update the family's rate estimate (a new limit starts a new one)."""
        estimate = self._estimates.get(family)
        if estimate is None or estimate.limit != reading.limit:
            estimate = self._estimates[family] = _Estimate(reading.limit)
            if self.token_capacity is None and family in ("tokens", "input_tokens"):
                self.token_capacity = _OPEN  # the provider meters tokens: reserve them
        estimate.update(reading)

    def _apply(
        self, family: str, bucket: TokenBucket, reading: LimitReading, since: int, wall: float
    ) -> None:
        """Shape ``bucket`` after one family's reading, within the configured bound."""
        self._estimate(family, reading)
        # Until a reading shows a deficit and its reset, assume the per-minute window the
        # providers document.
        rate = self._estimates[family].rate or reading.limit / 60.0
        capacity = reading.limit
        bound = self._bounds[family]
        if bound is not None:
            capacity, rate = min(capacity, bound[0]), min(rate, bound[1])
        level = reading.remaining - since
        reshaped = capacity != bucket.capacity or _differs(rate, bucket.refill_rate)
        # A new capacity takes the provider's level; the same one is only ever lowered (a
        # reading may be older than what the bucket knows, or be of a larger bucket than
        # the configured bound).
        if capacity != bucket.capacity or level < bucket.level:
            self._reshape(bucket, capacity, rate, level)
        elif reshaped:
            self._reshape(bucket, capacity, rate)
        else:
            return
        source: Source = "headers" if bound is None or capacity < bound[0] else "configured"
        self._learned[family] = LearnedLimit(capacity, rate, source, wall)

    def _from_outcome(self, throttled: bool | None, mark: Mark) -> None:
        """AIMD on the request rate, for a provider that sends no rate-limit headers."""
        now = self._clock.now()
        if self._mode == "first":
            self._mode = "aimd"
            self._cut_at = now
            self._open_requests(time.time())
        if throttled is False:
            self._successes += 1
            if self._rate is not None:
                grown = self._before_cut * (_BETA + (1 - _BETA) * (now - self._cut_at) / _RECOVER)
                self._set_rate(grown)
        elif throttled and mark[0] > self._cut_ledger:
            # Sent after the last cut: the rate it went out at was too fast. What the
            # provider let through since then is what it allows (or less).
            since = self._successes - self._cut_successes
            measured = max(1.0, since / max(_SAMPLE, now - self._cut_at))
            base = measured if self._rate is None else min(measured, self._rate)
            self._before_cut, self._cut_at = base, now
            self._cut_ledger, self._cut_successes = self._sent_requests, self._successes
            self._set_rate(base * _BETA, empty=True)

    def _open_requests(self, wall: float) -> None:
        """Lift the first-answer gate: no request limit but the configured one, if any."""
        if self._bounds["requests"] is None:
            self._reshape(self._rb, _OPEN, float(_OPEN), _OPEN)
            self._learned["requests"] = LearnedLimit(_OPEN, _OPEN, "unlimited", wall)

    def _set_rate(self, rate: float, *, empty: bool = False) -> None:
        """Pace requests at ``rate`` (within the configured bound); ``empty`` drains the
        bucket too (a 429 says the provider's is empty)."""
        bound = self._bounds["requests"]
        if bound is not None and rate >= bound[1]:
            rate = bound[1]
        self._rate = rate = max(rate, 1.0 / 60)
        if not (empty or _differs(rate, self._rb.refill_rate)):
            return
        if bound is not None and rate == bound[1]:
            capacity = bound[0]
        else:
            capacity = max(1, int(rate * _BURST))
        level = min(0.0, self._rb.level) if empty else None
        self._reshape(self._rb, capacity, rate, level)
        source: Source = "configured" if bound is not None and rate == bound[1] else "429s"
        self._learned["requests"] = LearnedLimit(capacity, rate, source, time.time())


def _differs(new: float, old: float) -> bool:
    return abs(new - old) > _STEP * old


class AdaptiveCapacity(LimitLearner):
    """A :class:`CapacityBackend` over local buckets whose shapes the provider's answers
    teach (see the module docstring; the arguments are :class:`LimitLearner`'s)."""

    # -- the capacity backend ---------------------------------------------------------------

    def try_take(self, requests: int, tokens: int) -> float:
        """Take both amounts now (0.0), or nothing and return the seconds to wait.

        A request above a bucket's learned capacity waits for a full bucket and takes the
        rest as debt: a learned capacity may shrink below requests already accepted.
        """
        now_requests, now_tokens = self._fitted(requests, tokens)
        wait = self._local.try_take(now_requests, now_tokens)
        if wait:
            return wait
        self._granted(requests, tokens, now_requests, now_tokens)
        return 0.0

    async def take(self, requests: int, tokens: int) -> float:
        """Same as :meth:`try_take` (local buckets never block)."""
        return self.try_take(requests, tokens)

    def give_back(self, requests: int, tokens: int) -> None:
        """Refund ``requests`` and ``tokens``; a negative amount charges instead."""
        self._local.give_back(requests, tokens)
        self._count(-requests, -tokens)

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds``."""
        self._local.pause(seconds)

    def levels(self) -> dict[str, float]:
        """Levels of the buckets that limit something now."""
        levels = self._local.levels()
        if self._tb.capacity == _OPEN:
            del levels["tokens"]
        if self._rb.capacity == _OPEN:
            del levels["requests"]
        return levels

    def subscribe(self, kick: Callable[[], None]) -> None:
        """Call ``kick`` whenever a bucket gets capacity back (a refund, a new shape)."""
        self._local.subscribe(kick)
