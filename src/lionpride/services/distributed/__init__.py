"""Limits and circuit-breaker state shared across processes and machines, held in Redis.

``make_limiter(redis_url=..., limit_key=..., ...)`` returns a
:class:`~lionpride.services.utilities.rate_limiter.RateLimiter` whose buckets live in Redis;
:class:`RedisCircuitBreaker` is a :class:`~lionpride.services.utilities.resilience.CircuitBreaker`
whose state does. redis-py is imported only when one of them is built (``lionpride[redis]``).
"""

from __future__ import annotations

from lionpride.services.distributed.redis_breaker import RedisCircuitBreaker
from lionpride.services.distributed.redis_capacity import (
    RedisCapacity,
    default_limit_key,
    make_limiter,
)

__all__ = ["RedisCapacity", "RedisCircuitBreaker", "default_limit_key", "make_limiter"]
