"""Limits learned from the provider, shared by every process through Redis.

:class:`SharedAdaptiveCapacity` learns as :class:`~lionpride.services.utilities.adaptive.
AdaptiveCapacity` does, and keeps the buckets in Redis (a :class:`RedisCapacity` built with
``learned=True``): each lesson writes the learned shapes to the key's ``:shape`` hash, which
the take and give-back scripts read in every process, and lowers the shared buckets to what the
provider said was left (never raises them: another process may have taken since). So what one
process learns reaches the others at their next take; before any process has an answer, they
share the first-answer gate (one call between them, then one more a second).

Without rate-limit headers, the 429 rate (AIMD) is not shared: a process sees only its own
successes, and a rate cut from them would pace all processes at one process's share. With
Redis, such a provider is met as before learning: a 429 pauses every process for its
``retry_after``.
"""

from __future__ import annotations

from collections.abc import Callable

from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.distributed._link import OnRedisError
from lionpride.services.distributed.redis_capacity import RedisCapacity
from lionpride.services.utilities.adaptive import LimitLearner, Mark
from lionpride.services.utilities.rate_limiter import TokenBucket

__all__ = ["SharedAdaptiveCapacity"]


class SharedAdaptiveCapacity(LimitLearner):
    """A :class:`CapacityBackend` in Redis whose shapes the provider's answers teach.

    Args:
        redis_url: Where Redis runs.
        limit_key: Name of the shared limit; every process using it shares what is learned.
        limit_requests: Configured requests per ``capacity_refresh_time``: an upper bound.
        limit_tokens: Configured tokens per ``capacity_refresh_time``: an upper bound.
        capacity_refresh_time: The window of the configured limits, in seconds.
        on_redis_error: ``"fallback"`` (local buckets of the learned shapes, one warning) or
            ``"raise"``.
        clock: Time source of the fallback buckets and the reconnect backoff.

    Raises:
        ValueError: A limit below 1, a window that is not > 0, or an empty ``limit_key``.
    """

    def __init__(
        self,
        redis_url: str,
        limit_key: str,
        *,
        limit_requests: int | None = None,
        limit_tokens: int | None = None,
        capacity_refresh_time: float = 60.0,
        on_redis_error: OnRedisError = "fallback",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(
            limit_requests=limit_requests,
            limit_tokens=limit_tokens,
            capacity_refresh_time=capacity_refresh_time,
            clock=clock,
        )
        self._shared = RedisCapacity(
            redis_url,
            limit_key,
            requests=self._rb.config,
            tokens=self._tb.config if limit_tokens is not None else None,
            on_redis_error=on_redis_error,
            clock=clock,
            learned=True,
        )

    @property
    def shared(self) -> RedisCapacity:
        """The Redis buckets."""
        return self._shared

    # -- the capacity backend ---------------------------------------------------------------

    async def take(self, requests: int, tokens: int) -> float:
        """Take both amounts from the shared buckets (0.0), or nothing and return the wait.

        A request above a learned capacity waits for a full bucket and takes the rest as
        debt, as in :class:`AdaptiveCapacity`.
        """
        now_requests, now_tokens = self._fitted(requests, tokens)
        wait = await self._shared.take(now_requests, now_tokens)
        if wait:
            return wait
        self._granted(requests, tokens, now_requests, now_tokens)
        return 0.0

    def give_back(self, requests: int, tokens: int) -> None:
        """Refund (negative: charge) in Redis, by a task the Redis backend owns."""
        self._shared.give_back(requests, tokens)
        self._count(-requests, -tokens)

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds``, in every process sharing the key."""
        self._shared.pause(seconds)

    def levels(self) -> dict[str, float]:
        """Levels the last Redis answer reported."""
        return self._shared.levels()

    def subscribe(self, kick: Callable[[], None]) -> None:
        """Call ``kick`` once a refund has reached the shared buckets."""
        self._shared.subscribe(kick)

    async def flush(self) -> None:
        """Wait until every lesson, refund and pause sent so far has reached Redis."""
        await self._shared.flush()

    async def aclose(self) -> None:
        """Flush, then close the Redis connections."""
        await self._shared.aclose()

    # -- learning ---------------------------------------------------------------------------

    def _reshape(
        self, bucket: TokenBucket, capacity: int, rate: float, level: float | None = None
    ) -> None:
        """Keep the shape here and pass it, with the level to lower to, to every process."""
        super()._reshape(bucket, capacity, rate, level)
        levels = (level, None) if bucket is self._rb else (None, level)
        self._shared.reshape(self._limiting(self._rb), self._limiting(self._tb), levels)

    def _from_outcome(self, throttled: bool | None, mark: Mark) -> None:
        """Without headers, only the first-answer gate opens (see the module docstring)."""
        if self._mode == "first":
            super()._from_outcome(None, mark)
