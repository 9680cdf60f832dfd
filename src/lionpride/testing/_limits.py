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
from datetime import UTC, datetime, timedelta
from typing import Literal

__all__ = ["Admission", "ProviderLimits", "TokenBucket", "format_duration"]

LimitKind = Literal["requests", "tokens"]

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
    """The request and token buckets of one fake provider; either may be absent."""

    __slots__ = ("_requests", "_tokens", "jitter", "limit_requests", "limit_tokens", "window")

    def __init__(
        self,
        *,
        requests: int | None,
        tokens: int | None,
        window: float,
        now: float,
        jitter: float = 0.0,
    ) -> None:
        for name, value in (("limit_requests", requests), ("limit_tokens", tokens)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not window > 0:
            raise ValueError(f"window must be positive, got {window!r}")
        self.limit_requests = requests
        self.limit_tokens = tokens
        self.window = window
        # A client that waited exactly until its request fits still reaches us a little
        # early or late (loopback scheduling jitter): admit requests that fit within it.
        self.jitter = jitter
        self._requests: TokenBucket | None = None
        self._tokens: TokenBucket | None = None
        self.reset(now)

    @property
    def active(self) -> bool:
        """Whether any limit is configured."""
        return self._requests is not None or self._tokens is not None

    def reset(self, now: float) -> None:
        """Refill every bucket to capacity."""
        if self.limit_requests is not None:
            self._requests = TokenBucket(self.limit_requests, self.window, now)
        if self.limit_tokens is not None:
            self._tokens = TokenBucket(self.limit_tokens, self.window, now)

    def admit(self, tokens: int, now: float) -> Admission:
        """Take one request and ``tokens`` tokens at ``now``, or nothing and say why."""
        waits: list[tuple[float, LimitKind]] = []
        if self._requests is not None:
            self._requests.refill(now)
            waits.append((self._requests.wait_for(1), "requests"))
        if self._tokens is not None:
            self._tokens.refill(now)
            waits.append((self._tokens.wait_for(tokens), "tokens"))
        wait, kind = max(waits, default=(0.0, "requests"))
        if wait > self.jitter:
            return Admission(admitted=False, kind=kind, wait=wait)
        if self._requests is not None:
            self._requests.level -= 1
        if self._tokens is not None:
            self._tokens.level -= tokens
        return _ADMITTED

    def headers(self, fmt: str) -> dict[str, str]:
        """The rate-limit headers the service behind ``fmt`` sends (Gemini sends none)."""
        if fmt == "anthropic":
            return self.anthropic_headers()
        return self.openai_headers() if fmt == "openai" else {}

    def openai_headers(self) -> dict[str, str]:
        """``x-ratelimit-*`` headers as OpenAI-compatible services send them."""
        headers: dict[str, str] = {}
        for kind, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            if bucket is not None:
                headers[f"x-ratelimit-limit-{kind}"] = str(int(bucket.capacity))
                headers[f"x-ratelimit-remaining-{kind}"] = str(bucket.remaining)
                headers[f"x-ratelimit-reset-{kind}"] = format_duration(bucket.reset_in())
        return headers

    def anthropic_headers(self) -> dict[str, str]:
        """``anthropic-ratelimit-*`` headers, resets as RFC 3339 wall-clock times."""
        headers: dict[str, str] = {}
        wall = time.time()
        for kind, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            if bucket is not None:
                reset_at = datetime.fromtimestamp(wall, UTC) + timedelta(seconds=bucket.reset_in())
                headers[f"anthropic-ratelimit-{kind}-limit"] = str(int(bucket.capacity))
                headers[f"anthropic-ratelimit-{kind}-remaining"] = str(bucket.remaining)
                headers[f"anthropic-ratelimit-{kind}-reset"] = reset_at.strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
        return headers

    def retry_after(self, admission: Admission) -> int:
        """Whole seconds a refused client should wait (at least 1, a window if never)."""
        wait = admission.wait if math.isfinite(admission.wait) else self.window
        return max(1, math.ceil(wait))


def format_duration(seconds: float) -> str:
    """Format seconds the way OpenAI's reset headers do: ``12ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{round(rest, 3):g}s"
    return f"{int(minutes)}m{text}" if minutes else text
