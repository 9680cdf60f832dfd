"""What iModel needs besides its methods: runtime state, learned and shared limits."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

from lionpride import errors
from lionpride.services._sync import PrivateThread, SyncLoop
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.observability.observer import ModelObserver
from lionpride.services.types.backend import ServiceBackend
from lionpride.services.utilities.adaptive import LimitLearner

__all__ = [
    "ModelRuntime",
    "learned_limits",
    "shared_limits",
]


class ModelRuntime:
    """An iModel's live state: its observer, what ``aclose`` must close besides, and the
    settings of limits shared through Redis (kept by ``to_dict``)."""

    __slots__ = (
        "capacity",
        "closers",
        "home",
        "keeps_session",
        "observer",
        "own_prices",
        "owns_executor",
        "reopens",
        "shared",
        "splits",
        "sync",
    )

    def __init__(
        self,
        observer: ModelObserver,
        closers: list[Any],
        keeps_session: bool,
        shared: dict[str, Any] | None = None,
    ) -> None:
        self.observer = observer
        self.closers = closers
        #: Whether the backend is a CLI whose session id the next call resumes.
        self.keeps_session = keeps_session
        self.shared = shared
        #: Whether ``aclose`` closes the executor (one the model built, not one passed in).
        self.owns_executor = False
        #: Whether the price table was the caller's (kept by ``to_dict``), not the shipped one.
        self.own_prices = False
        #: The limits learned from the provider, when the model learns them.
        self.capacity: LimitLearner | None = None
        #: Whether ``aclose`` leaves the executor taking calls (limits only learned).
        self.reopens = False
        #: Whether the backend splits requests over its per-request cap (embeddings).
        self.splits = False
        #: The private event loop of ``invoke_sync``, made on its first use.
        self.sync: SyncLoop | None = None
        #: The event loop of the model's last async call (``invoke_sync``'s own excepted).
        self.home: asyncio.AbstractEventLoop | None = None

    def note_home(self) -> None:
        """Remember the loop running this call as the model's async home, unless it is the
        private loop of ``invoke_sync`` (blocking calls from other threads go to the home).

        Runs once per call: the usual case (the home again) costs a thread-id comparison.
        """
        home = self.home
        if getattr(home, "_thread_id", None) == threading.get_ident():
            return
        if not isinstance(threading.current_thread(), PrivateThread):
            self.home = asyncio.get_running_loop()

    def loop(self) -> SyncLoop:
        """The private event loop of ``invoke_sync`` (made on first use)."""
        if self.sync is None:
            self.sync = SyncLoop()
        return self.sync


def learns_limits(backend: ServiceBackend) -> bool:
    """Whether ``backend`` is a built-in HTTP provider, whose answers carry its limits."""
    from lionpride.services.providers._cli_endpoint import CLIEndpoint
    from lionpride.services.types.endpoint import Endpoint

    return (
        isinstance(backend, Endpoint)
        and not isinstance(backend, CLIEndpoint)
        and type(backend).__module__.startswith("lionpride.services.providers.")
    )


def learned_limits(
    backend: ServiceBackend,
    *,
    limit_requests: int | None,
    limit_tokens: int | None,
    capacity_refresh_time: float,
    queue_capacity: int,
    concurrency_limit: int,
) -> RateLimitedExecutor:
    """Build the executor over limits learned from the provider's answers; the backend
    reports every answer to them."""
    from lionpride.services.types.endpoint import Endpoint
    from lionpride.services.utilities.adaptive import AdaptiveCapacity
    from lionpride.services.utilities.rate_limiter import RateLimiter

    assert isinstance(backend, Endpoint)
    capacity = AdaptiveCapacity(
        limit_requests=limit_requests,
        limit_tokens=limit_tokens,
        capacity_refresh_time=capacity_refresh_time,
    )
    backend.watch_limits(capacity)
    return RateLimitedExecutor(
        limiter=RateLimiter(backend=capacity),
        queue_capacity=queue_capacity,
        concurrency_limit=concurrency_limit,
    )


def shared_limits(
    backend: ServiceBackend,
    executor: RateLimitedExecutor | None,
    *,
    adaptive: bool,
    redis_url: str,
    limit_key: str | None,
    on_redis_error: Literal["fallback", "raise"],
    breaker_key: str | None,
    limit_requests: int | None,
    limit_tokens: int | None,
    capacity_refresh_time: float,
    queue_capacity: int,
    concurrency_limit: int,
) -> tuple[RateLimitedExecutor | None, list[Any], dict[str, Any]]:
    """Build the Redis-backed executor (and shared breaker): over limits learned from the
    provider when ``adaptive`` and the backend is a built-in HTTP provider, else over the
    configured limits, if any.

    Returns the executor, what ``aclose`` must close, and the settings ``to_dict`` keeps
    (everything but the Redis URL, which may hold a password: it is given again on load).
    """
    from lionpride.services.distributed import (
        RedisCircuitBreaker,
        default_limit_key,
        make_limiter,
    )
    from lionpride.services.types.endpoint import Endpoint

    closers: list[Any] = []
    settings: dict[str, Any] = {"on_redis_error": on_redis_error, "breaker_key": breaker_key}
    learns = adaptive and learns_limits(backend)
    if executor is None and (learns or limit_requests is not None or limit_tokens is not None):
        secret = backend.config.secret() if isinstance(backend, Endpoint) else None
        key = limit_key or default_limit_key(
            backend.name, secret.get_secret_value() if secret is not None else None
        )
        settings.update(
            limit_key=key,
            limit_requests=limit_requests,
            limit_tokens=limit_tokens,
            capacity_refresh_time=capacity_refresh_time,
            queue_capacity=queue_capacity,
            concurrency_limit=concurrency_limit,
        )
        if learns:
            from lionpride.services.distributed.redis_learned import SharedAdaptiveCapacity
            from lionpride.services.utilities.rate_limiter import RateLimiter

            learned = SharedAdaptiveCapacity(
                redis_url,
                key,
                limit_requests=limit_requests,
                limit_tokens=limit_tokens,
                capacity_refresh_time=capacity_refresh_time,
                on_redis_error=on_redis_error,
            )
            backend.watch_limits(learned)  # type: ignore[attr-defined]
            limiter = RateLimiter(backend=learned)
        else:
            limiter = make_limiter(
                redis_url=redis_url,
                limit_key=key,
                limit_requests=limit_requests,
                limit_tokens=limit_tokens,
                capacity_refresh_time=capacity_refresh_time,
                on_redis_error=on_redis_error,
            )
        executor = RateLimitedExecutor(
            limiter=limiter, queue_capacity=queue_capacity, concurrency_limit=concurrency_limit
        )
        closers.append(limiter.backend.aclose)  # type: ignore[attr-defined]
    if breaker_key is not None:
        breaker = getattr(backend, "circuit_breaker", None)
        if breaker is None:
            raise errors.ValidationError("breaker_key needs an endpoint with a circuit_breaker")
        shared = RedisCircuitBreaker(
            breaker.failure_threshold,
            breaker.recovery_time,
            breaker.half_open_max_calls,
            breaker.excluded_exceptions,
            breaker.name,
            redis_url=redis_url,
            breaker_key=breaker_key,
            on_redis_error=on_redis_error,
        )
        backend.circuit_breaker = shared  # type: ignore[attr-defined]
        closers.append(shared.aclose)
    return executor, closers, settings
