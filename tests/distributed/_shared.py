"""Shared limits and breakers on Redis that several distributed tests build alike."""

from __future__ import annotations

from lionpride.core.clock import Clock, FakeClock
from lionpride.services.distributed import RedisCapacity, RedisCircuitBreaker
from lionpride.services.utilities.rate_limiter import RateLimitConfig


def one_strike_breaker(url: str, key: str, clock: Clock) -> RedisCircuitBreaker:
    """A shared breaker under ``key`` that opens on the first failure for 30 s of ``clock``."""
    return RedisCircuitBreaker(
        failure_threshold=1, recovery_time=30.0, redis_url=url, breaker_key=key, clock=clock
    )


def bucket_and_breaker(
    url: str, key: str, limit: int
) -> tuple[FakeClock, RedisCapacity, RedisCircuitBreaker]:
    """A shared bucket of ``limit`` requests that refills in 10 ms and a
    :func:`one_strike_breaker`, both under ``key`` on one fake clock (Redis keeps the time)."""
    clock = FakeClock()
    bucket = RedisCapacity(
        url, key, requests=RateLimitConfig(limit, 0.01), tokens=None, clock=clock
    )
    return clock, bucket, one_strike_breaker(url, key, clock)


def reconnecting_bucket(
    url: str, key: str, limit: int, period: float, retry_every: float
) -> RedisCapacity:
    """A shared bucket under ``key`` of ``limit`` requests per ``period`` seconds (no token
    limit) that tries Redis again every ``retry_every`` seconds while it is unreachable."""
    return RedisCapacity(
        url,
        key,
        requests=RateLimitConfig(limit, period),
        tokens=None,
        reconnect_min=retry_every,
        reconnect_max=retry_every,
    )
