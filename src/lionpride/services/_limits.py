"""Limits: how much a model may spend per window, how its calls wait, and where it learns
and keeps the limits; and how a model builds its executor from them.

A :class:`Limits` value is the one home of these settings. ``iModel(limits=Limits(...))``
takes it; the same names given to ``iModel`` as keywords (``iModel(limit_requests=50)``)
are a shorthand that :meth:`Limits.of` turns into the value. :func:`build_limits` runs once
per model, at construction; nothing here runs per call.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from lionpride import errors
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.types.backend import ServiceBackend
from lionpride.services.utilities.adaptive import LimitLearner
from lionpride.services.utilities.rate_limiter import RateLimiter

__all__ = ["LIMIT_FIELDS", "BuiltLimits", "Limits", "build_limits", "learns_limits"]

_REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """A model's rate limits, queue and concurrency, and where they are learned and kept.

    Each limit L allows L per ``capacity_refresh_time`` seconds: a bucket of L refilling
    L/``capacity_refresh_time`` per second. The fields are also ``iModel``'s keywords.

    Args:
        limit_requests: At most this many requests per window; ``None``: not limited.
        limit_tokens: At most this many tokens per window, reserved before a call and
            reconciled with its real usage after; ``None``: not limited.
        capacity_refresh_time: The window, in seconds.
        concurrency_limit: Most calls in flight at once.
        queue_capacity: Most calls that may wait for capacity at once.
        adaptive_limits: Learn the limits from the provider's answers (rate-limit headers,
            or 429s where it sends none), with ``limit_requests``/``limit_tokens`` as upper
            bounds; used by the built-in HTTP providers, ``False`` turns it off.
        redis_url: Keep the limits in Redis, shared by every process using the same
            ``limit_key`` (``lionpride[redis]``); never written by ``to_dict`` (it may hold
            a password).
        limit_key: The shared limits' name; by default the model's name plus a hash of its
            API key, so two keys never share by accident.
        on_redis_error: ``"fallback"`` (local limits, one warning, back to Redis when it
            returns) or ``"raise"``.

    Raises:
        lionpride.errors.ConfigurationError: A value out of range or of the wrong type (the
            message names the field and the value), or ``limit_key`` without ``redis_url``.

    Example:
        >>> Limits(limit_requests=50, limit_tokens=100_000).limit_requests
        50
    """

    limit_requests: int | None = None
    limit_tokens: int | None = None
    capacity_refresh_time: float = 60.0
    concurrency_limit: int = 100
    queue_capacity: int = 10_000
    adaptive_limits: bool = True
    redis_url: str | None = field(default=None, repr=False)
    limit_key: str | None = None
    on_redis_error: Literal["fallback", "raise"] = "fallback"

    def __post_init__(self) -> None:
        for name in ("limit_requests", "limit_tokens"):
            if getattr(self, name) is not None:
                _count(name, getattr(self, name))
        _count("concurrency_limit", self.concurrency_limit)
        _count("queue_capacity", self.queue_capacity)
        window = self.capacity_refresh_time
        if (
            isinstance(window, bool)
            or not isinstance(window, int | float)
            or not (math.isfinite(window) and window > 0)
        ):
            _bad("capacity_refresh_time", window, "a finite number of seconds > 0")
        if not isinstance(self.adaptive_limits, bool):
            _bad("adaptive_limits", self.adaptive_limits, "True or False")
        if self.on_redis_error not in ("fallback", "raise"):
            _bad("on_redis_error", self.on_redis_error, '"fallback" or "raise"')
        if self.limit_key is not None and (
            not isinstance(self.limit_key, str) or not self.limit_key
        ):
            _bad("limit_key", self.limit_key, "a non-empty string")
        url = self.redis_url
        if url is not None:
            scheme = url.partition("://")[0].lower() if isinstance(url, str) else ""
            if scheme not in _REDIS_SCHEMES:
                # Caught here, not by every call failing with the same connection error.
                _bad("redis_url", url, "a redis://, rediss:// or unix:// URL")
        elif self.limit_key is not None:
            raise errors.ConfigurationError(
                f"Limits: limit_key={self.limit_key!r} names limits shared in Redis: give "
                "redis_url=... too"
            )

    @classmethod
    def of(cls, limits: Limits | None, keywords: dict[str, Any]) -> Limits:
        """The limits a model is built with: ``limits``, or the value its flat keywords
        (the fields' names, removed from ``keywords``) build.

        Raises:
            lionpride.errors.ConfigurationError: Both ``limits`` and flat keywords, or a
                ``limits`` that is not a :class:`Limits`.
        """
        given = {name: keywords.pop(name) for name in LIMIT_FIELDS if name in keywords}
        if limits is None:
            return cls(**given)
        if not isinstance(limits, Limits):
            raise errors.ConfigurationError(
                f"limits must be a Limits value, got {type(limits).__name__}"
            )
        if given:
            raise errors.ConfigurationError(
                f"give limits=Limits(...) or {', '.join(sorted(given))}, not both"
            )
        return limits

    @property
    def bounded(self) -> bool:
        """Whether requests or tokens are limited by configuration."""
        return self.limit_requests is not None or self.limit_tokens is not None

    @property
    def request_rate(self) -> float | None:
        """Requests per second allowed in the long run; ``None`` when not limited."""
        return _per_second(self.limit_requests, self.capacity_refresh_time)

    @property
    def token_rate(self) -> float | None:
        """Tokens per second allowed in the long run; ``None`` when not limited."""
        return _per_second(self.limit_tokens, self.capacity_refresh_time)

    def to_dict(self) -> dict[str, Any]:
        """The settings, JSON-safe, without ``redis_url`` (it may hold a password)."""
        data = asdict(self)
        del data["redis_url"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **given: Any) -> Limits:
        """Rebuild from :meth:`to_dict` output; ``given`` (``redis_url=``, say) adds fields.

        Raises:
            lionpride.errors.ConfigurationError: Not a dict, an unknown key (named: a
                misspelt limit must not silently vanish), or a bad value.
        """
        if not isinstance(data, Mapping):
            raise errors.ConfigurationError(f"Limits.from_dict needs a dict, got {data!r}")
        unknown = sorted(set(data) - set(LIMIT_FIELDS))
        if unknown:
            raise errors.ConfigurationError(
                f"Limits: unknown setting(s) {unknown}; known: {sorted(LIMIT_FIELDS)}"
            )
        return cls(**{**data, **given})


#: The fields of :class:`Limits`, which are also ``iModel``'s keywords for them.
LIMIT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Limits))


def _per_second(limit: int | None, window: float) -> float | None:
    return None if limit is None else limit / window


def _bad(name: str, value: object, expected: str) -> None:
    raise errors.ConfigurationError(f"Limits: {name} must be {expected}, got {value!r}")


def _count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _bad(name, value, "an integer >= 1")


@dataclass(slots=True)
class BuiltLimits:
    """What :func:`build_limits` made for one model.

    Attributes:
        limits: The limits in force (``limit_key`` filled in when they are shared).
        executor: The executor calls wait on, or ``None``.
        owns_executor: Whether the model made ``executor`` (and so closes it).
        capacity: The limits the model learns from the provider, when it learns them.
        closers: What the model's ``aclose`` closes besides (Redis connections).
    """

    limits: Limits
    executor: RateLimitedExecutor | None
    owns_executor: bool = False
    capacity: LimitLearner | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def learns_limits(backend: ServiceBackend) -> bool:
    """Whether ``backend`` is a built-in HTTP provider, whose answers carry its limits (the
    CLI backends are not HTTP endpoints)."""
    # Loaded here, not at import: the endpoint module loads aiohttp (D9).
    from lionpride.services.types.endpoint import Endpoint

    return isinstance(backend, Endpoint) and type(backend).__module__.startswith(
        "lionpride.services.providers."
    )


def build_limits(
    limits: Limits,
    backend: ServiceBackend,
    *,
    executor: RateLimitedExecutor | None,
    simple: bool,
    breaker_key: str | None,
) -> BuiltLimits:
    """Build a model's executor from its ``limits``: over limits learned from the provider
    (a built-in HTTP provider, with ``adaptive_limits`` and no ``simple`` request bucket),
    else over the configured ones; in Redis with ``redis_url``, else local. An
    ``executor`` passed in wins over the limits. With ``breaker_key``, the backend's
    circuit breaker is replaced by one whose state is shared in Redis.

    Raises:
        lionpride.errors.ConfigurationError: ``breaker_key`` without ``redis_url``, or
            ``limit_key`` with an ``executor`` passed in (whose limits apply instead).
        lionpride.errors.ValidationError: ``breaker_key`` for a backend without a breaker.
    """
    built = BuiltLimits(limits, executor)
    learns = limits.adaptive_limits and not simple and learns_limits(backend)
    if executor is not None:
        if limits.limit_key is not None:
            raise errors.ConfigurationError(
                f"limit_key={limits.limit_key!r} names limits shared in Redis, but "
                "executor= is given and its limits apply: drop one of them"
            )
    elif limits.redis_url is not None and (learns or limits.bounded):
        _share_limits(built, backend, learns)
    elif learns:
        _learn_limits(built, backend)
    elif limits.bounded:
        built.executor = RateLimitedExecutor.from_limits(
            limit_requests=limits.limit_requests,
            limit_tokens=limits.limit_tokens,
            capacity_refresh_time=limits.capacity_refresh_time,
            queue_capacity=limits.queue_capacity,
            concurrency_limit=limits.concurrency_limit,
        )
        built.owns_executor = True
    if breaker_key is not None:
        _share_breaker(built, backend, breaker_key)
    return built


def _learn_limits(built: BuiltLimits, backend: ServiceBackend) -> None:
    """Local limits learned from the provider's answers; the backend reports every answer."""
    from lionpride.services.types.endpoint import Endpoint
    from lionpride.services.utilities.adaptive import AdaptiveCapacity

    assert isinstance(backend, Endpoint)
    limits = built.limits
    capacity = AdaptiveCapacity(
        limit_requests=limits.limit_requests,
        limit_tokens=limits.limit_tokens,
        capacity_refresh_time=limits.capacity_refresh_time,
    )
    backend.watch_limits(capacity)
    _own(built, RateLimiter(backend=capacity))
    built.capacity = capacity


def _share_limits(built: BuiltLimits, backend: ServiceBackend, learns: bool) -> None:
    """Limits kept in Redis under the limit key (learned from the provider when
    ``learns``); the key defaults to the backend's name plus a hash of its API key."""
    from lionpride.services.distributed import default_limit_key, make_limiter
    from lionpride.services.types.endpoint import Endpoint

    limits = built.limits
    url = limits.redis_url
    assert url is not None
    key = limits.limit_key
    if key is None:
        secret = backend.config.secret() if isinstance(backend, Endpoint) else None
        key = default_limit_key(
            backend.name, secret.get_secret_value() if secret is not None else None
        )
        limits = built.limits = replace(limits, limit_key=key)
    if learns:
        from lionpride.services.distributed.redis_learned import SharedAdaptiveCapacity

        assert isinstance(backend, Endpoint)
        learned = SharedAdaptiveCapacity(
            url,
            key,
            limit_requests=limits.limit_requests,
            limit_tokens=limits.limit_tokens,
            capacity_refresh_time=limits.capacity_refresh_time,
            on_redis_error=limits.on_redis_error,
        )
        backend.watch_limits(learned)
        built.capacity = learned
        built.closers.append(learned.aclose)
        _own(built, RateLimiter(backend=learned))
        return
    limiter = make_limiter(
        redis_url=url,
        limit_key=key,
        limit_requests=limits.limit_requests,
        limit_tokens=limits.limit_tokens,
        capacity_refresh_time=limits.capacity_refresh_time,
        on_redis_error=limits.on_redis_error,
    )
    built.closers.append(limiter.backend.aclose)  # type: ignore[attr-defined]
    _own(built, limiter)


def _own(built: BuiltLimits, limiter: RateLimiter) -> None:
    """Give the model an executor of its own over ``limiter``."""
    limits = built.limits
    built.executor = RateLimitedExecutor(
        limiter=limiter,
        queue_capacity=limits.queue_capacity,
        concurrency_limit=limits.concurrency_limit,
    )
    built.owns_executor = True


def _share_breaker(built: BuiltLimits, backend: ServiceBackend, breaker_key: str) -> None:
    """Replace the backend's circuit breaker by one whose state is shared in Redis."""
    from lionpride.services.distributed import RedisCircuitBreaker

    limits = built.limits
    if limits.redis_url is None:
        raise errors.ConfigurationError(f"breaker_key={breaker_key!r} needs redis_url=...")
    breaker = getattr(backend, "circuit_breaker", None)
    if breaker is None:
        raise errors.ValidationError("breaker_key needs an endpoint with a circuit_breaker")
    shared = RedisCircuitBreaker(
        breaker.failure_threshold,
        breaker.recovery_time,
        breaker.half_open_max_calls,
        breaker.excluded_exceptions,
        breaker.name,
        redis_url=limits.redis_url,
        breaker_key=breaker_key,
        on_redis_error=limits.on_redis_error,
    )
    backend.circuit_breaker = shared  # type: ignore[attr-defined]
    built.closers.append(shared.aclose)
