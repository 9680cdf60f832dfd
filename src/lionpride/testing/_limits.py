"""Provider-side limits for the FakeProvider: token buckets on requests and tokens.

A limit of ``L`` per ``window`` seconds is a bucket of capacity ``L`` refilling ``L / window``
per second, which is how OpenAI and Anthropic meter. So in any interval of length ``t`` at most
``L + L * t / window`` units are admitted. A request takes one unit of the request bucket and its
token charge from the token bucket, both or neither.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

__all__ = ["Admission", "ProviderLimits", "TokenBucket", "format_duration"]

LimitKind = Literal["requests", "tokens", "input_tokens", "output_tokens"]

# Float refill arithmetic can land a hair under a whole unit at the exact moment a client
# computed as "now there is room"; a client that waited exactly long enough must be admitted.
_EPSILON = 1e-9


class TokenBucket:
    """A bucket of ``capacity`` units refilling ``capacity / window`` units per second."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, capacity: int, window: float, now: float) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / window
        self.level = float(capacity)
        self.stamp = now

    def refill(self, now: float) -> None:
        """Add what flowed in since the last refill, up to the capacity."""
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` units are available (``inf`` if it never fits)."""
        if amount > self.capacity:
            return math.inf
        missing = amount - self.level
        return 0.0 if missing <= _EPSILON else missing / self.rate

    def reset_in(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level) / self.rate)

    @property
    def remaining(self) -> int:
        """Whole units available now (as of the last refill)."""
        return max(0, math.floor(self.level + _EPSILON))


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of one admission check.

    Attributes:
        admitted: Whether the request was let through (and its units taken).
        kind: For a refusal, the limit that refused (the one with the longer wait).
        wait: For a refusal, seconds until both limits have room (``inf`` if never).
    """

    admitted: bool
    kind: LimitKind | None = None
    wait: float = 0.0


_ADMITTED = Admission(admitted=True)


class ProviderLimits:
    """The buckets of one fake provider: requests, tokens, and Anthropic's separate input and
    output token families; any may be absent."""

    __slots__ = ("_buckets", "jitter", "limits", "window")

    def __init__(
        self,
        *,
        requests: int | None,
        tokens: int | None,
        window: float,
        now: float,
        jitter: float = 0.0,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        limits = {
            "requests": requests,
            "tokens": tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }
        for name, value in limits.items():
            if value is not None and value <= 0:
                raise ValueError(f"limit_{name} must be positive, got {value!r}")
        if not window > 0:
            raise ValueError(f"window must be positive, got {window!r}")
        #: The configured limit of each family (``None``: not limited).
        self.limits: dict[LimitKind, int | None] = limits  # type: ignore[assignment]
        self.window = window
        # A client that waited exactly until its request fits still reaches us a little
        # early or late (loopback scheduling jitter): admit requests that fit within it.
        self.jitter = jitter
        self._buckets: dict[LimitKind, TokenBucket] = {}
        self.reset(now)

    @property
    def limit_requests(self) -> int | None:
        """Requests per window, if limited."""
        return self.limits["requests"]

    @property
    def limit_tokens(self) -> int | None:
        """Tokens per window, if limited."""
        return self.limits["tokens"]

    @property
    def active(self) -> bool:
        """Whether any limit is configured."""
        return bool(self._buckets)

    def reset(self, now: float) -> None:
        """Refill every bucket to capacity."""
        self._buckets = {
            kind: TokenBucket(limit, self.window, now)
            for kind, limit in self.limits.items()
            if limit is not None
        }

    def admit(self, tokens: int, now: float, *, output: int = 0) -> Admission:
        """Take one request and ``tokens`` tokens (of which ``output`` are output) at ``now``,
        or nothing and say why."""
        amounts: dict[LimitKind, float] = {
            "requests": 1,
            "tokens": tokens,
            "input_tokens": tokens - output,
            "output_tokens": output,
        }
        wait, refusing = 0.0, None
        for kind, bucket in self._buckets.items():
            bucket.refill(now)
            kind_wait = bucket.wait_for(amounts[kind])
            if refusing is None or kind_wait > wait:
                wait, refusing = kind_wait, kind
        if wait > self.jitter:
            return Admission(admitted=False, kind=refusing, wait=wait)
        for kind, bucket in self._buckets.items():
            bucket.level -= amounts[kind]
        return _ADMITTED

    def headers(self, fmt: str, *, wall: float | None = None) -> dict[str, str]:
        """The rate-limit headers the service behind ``fmt`` sends (Gemini sends none)."""
        if fmt == "anthropic":
            return self.anthropic_headers(wall)
        return self.openai_headers() if fmt == "openai" else {}

    def openai_headers(self) -> dict[str, str]:
        """``x-ratelimit-*`` headers as OpenAI-compatible services send them."""
        headers: dict[str, str] = {}
        for kind in ("requests", "tokens"):
            bucket = self._buckets.get(kind)
            if bucket is not None:
                headers[f"x-ratelimit-limit-{kind}"] = str(int(bucket.capacity))
                headers[f"x-ratelimit-remaining-{kind}"] = str(bucket.remaining)
                headers[f"x-ratelimit-reset-{kind}"] = format_duration(bucket.reset_in())
        return headers

    def anthropic_headers(self, wall: float | None = None) -> dict[str, str]:
        """``anthropic-ratelimit-*`` headers: resets as RFC 3339 times in whole seconds,
        rounded up (never before the bucket is full), one set per family."""
        headers: dict[str, str] = {}
        now = time.time() if wall is None else wall
        for kind, bucket in self._buckets.items():
            full_at = math.ceil(now + bucket.reset_in())
            name = f"anthropic-ratelimit-{kind.replace('_', '-')}"
            headers[f"{name}-limit"] = str(int(bucket.capacity))
            headers[f"{name}-remaining"] = str(bucket.remaining)
            headers[f"{name}-reset"] = datetime.fromtimestamp(full_at, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        return headers

    def retry_after(self, admission: Admission) -> int:
        """Whole seconds a refused client should wait (at least 1, a window if never)."""
        wait = admission.wait if math.isfinite(admission.wait) else self.window
        return max(1, math.ceil(wait))


def format_duration(seconds: float) -> str:
    """Format seconds as OpenAI's reset headers do, rounded up (never early): ``59.9ms``,
    ``1.5s``, ``1m30.5s``, ``6m0s``, ``2h0m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 10_000) / 10:g}ms"
    millis = math.ceil(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    text = f"{millis / 1000:g}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text
