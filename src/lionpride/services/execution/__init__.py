"""Rate-limited execution of calls in the caller's own task."""

from lionpride.services.execution.executor import RateLimitedExecutor

__all__ = ["RateLimitedExecutor"]
