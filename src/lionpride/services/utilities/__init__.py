"""Rate limiting, resilience, headers and token estimates."""

from lionpride.services.utilities.rate_limiter import RateLimitConfig, TokenBucket
from lionpride.services.utilities.resilience import (
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
    RetryConfig,
    retry_with_backoff,
)

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "CircuitState",
    "RateLimitConfig",
    "RetryConfig",
    "TokenBucket",
    "retry_with_backoff",
]
