"""One connection to Redis with a fallback policy: run scripts, or say "use local state".

Shared limits and shared breaker state both talk to Redis through a :class:`RedisLink`. The
link owns the client (made lazily on the running loop, re-made if the loop changed), runs Lua
scripts through ``EVALSHA`` (reloaded by redis-py after ``NOSCRIPT``), and turns an unreachable
Redis (or one a failover demoted to a read-only replica) into either an error
(``on_redis_error="raise"``) or ``None`` (``"fallback"``): the caller then uses its local
state. A fallback is logged once; after it the link leaves Redis alone until a backoff (1 s
doubling to 5 s by default) has passed on the clock, then tries it again at the next call, and
logs once more when Redis answers again.

Sockets time out after ``socket_timeout`` (0.5 s by default), and a refused connection is
retried once at once (a restarted Redis leaves stale pooled connections behind), so no call
waits on a dead Redis for longer than about one socket timeout.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
import warnings
from collections.abc import Sequence
from typing import Any, Literal

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock

__all__ = ["OnRedisError", "RedisLink", "redact_url"]

logger = logging.getLogger("lionpride.distributed")

OnRedisError = Literal["fallback", "raise"]


def redact_url(url: str) -> str:
    """Return ``url`` without its password (safe for logs and error text)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + host))


class RedisLink:
    """A Redis client that runs Lua scripts and applies the unreachable-Redis policy.

    Args:
        redis_url: ``redis://[[user]:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        what: What the link serves, for log lines (e.g. ``"limit 'gpt-4o:ab12cd34'"``).
        on_redis_error: ``"fallback"`` to use local state while Redis is unreachable,
            ``"raise"`` to raise :class:`lionpride.errors.ConnectionError` instead.
        clock: Time source for the reconnect backoff.
        socket_timeout: Seconds a connect or a reply may take.
        reconnect_min: First pause after a failure before Redis is tried again.
        reconnect_max: Largest such pause (it doubles from ``reconnect_min``).

    Raises:
        ValueError: ``on_redis_error`` or a duration is invalid.
        ImportError: redis-py is not installed (``pip install 'lionpride[redis]'``).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        what: str,
        on_redis_error: OnRedisError = "fallback",
        clock: Clock = SYSTEM_CLOCK,
        socket_timeout: float = 0.5,
        reconnect_min: float = 1.0,
        reconnect_max: float = 5.0,
    ) -> None:
        if on_redis_error not in ("fallback", "raise"):
            raise ValueError(
                f"on_redis_error must be 'fallback' or 'raise', got {on_redis_error!r}"
            )
        for name, value in (
            ("socket_timeout", socket_timeout),
            ("reconnect_min", reconnect_min),
            ("reconnect_max", reconnect_max),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if reconnect_max < reconnect_min:
            raise ValueError("reconnect_max must be >= reconnect_min")
        try:
            import redis.asyncio  # noqa: F401  (fail at construction, not at first call)
        except ImportError as exc:
            raise ImportError(
                "shared limits need redis-py: pip install 'lionpride[redis]'"
            ) from exc
        self.redis_url = redis_url
        self.what = what
        self.on_redis_error: OnRedisError = on_redis_error
        self._clock = clock
        self._socket_timeout = socket_timeout
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}
        self._degraded = False
        self._fallbacks = 0
        self._retry_at = 0.0
        self._backoff = reconnect_min

    def __repr__(self) -> str:
        mode = "local fallback" if self._degraded else "shared"
        return f"RedisLink({redact_url(self.redis_url)!r}, {self.what}, {mode})"

    @property
    def shared(self) -> bool:
        """False while Redis is unreachable and local state stands in for it."""
        return not self._degraded

    @property
    def fallbacks(self) -> int:
        """How many times the link has switched from Redis to local state."""
        return self._fallbacks

    def _connection(self) -> Any:
        """Return the client for the running loop, making it on first use there."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio as aioredis
            from redis import exceptions as rexc
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = aioredis.Redis.from_url(
                self.redis_url,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._socket_timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(rexc.ConnectionError,)),
            )
            self._loop = loop
            self._scripts.clear()
        return self._client

    async def run(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any | None:
        """Run the Lua ``source`` on Redis; ``None`` means "Redis is away, use local state".

        While in fallback this returns ``None`` without touching the network until the
        reconnect backoff has passed.

        Raises:
            lionpride.errors.ConnectionError: Redis is unreachable, or a replica that cannot
                write (``READONLY``, ``MASTERDOWN``: a failover demoted it), and the policy is
                "raise".
            redis.exceptions.ResponseError: The script failed (a bug, never a fallback).
        """
        if self._degraded and self._clock.now() < self._retry_at:
            return None
        from redis import exceptions as rexc

        try:
            client = self._connection()
            script = self._scripts.get(source)
            if script is None:
                script = self._scripts[source] = client.register_script(source)
            reply = await script(keys=list(keys), args=list(args))
        except (
            rexc.ConnectionError,
            rexc.TimeoutError,
            OSError,
            # A primary demoted by a failover answers READONLY (or MASTERDOWN once it lost
            # its own primary): it cannot hold the state, just as an unreachable one cannot.
            rexc.ReadOnlyError,
            rexc.ClusterDownError,
        ) as exc:
            self._failed(exc)
            return None
        if self._degraded:
            self._degraded = False
            self._backoff = self._reconnect_min
            logger.warning(
                "Redis at %s answers again: %s is shared again", self._safe_url, self.what
            )
        return reply

    @property
    def _safe_url(self) -> str:
        return redact_url(self.redis_url)

    def _failed(self, exc: BaseException) -> None:
        """Apply the policy to a connection failure."""
        if self.on_redis_error == "raise":
            raise errors.ConnectionError(
                f"Redis at {self._safe_url} is unreachable ({type(exc).__name__}: {exc})",
                cause=exc,
            ) from exc
        if self._degraded:
            # Still away: wait longer before the next try; the warning was logged already.
            self._backoff = min(self._backoff * 2, self._reconnect_max)
            logger.debug("Redis at %s still unreachable: %r", self._safe_url, exc)
        else:
            self._degraded = True
            self._fallbacks += 1
            self._backoff = self._reconnect_min
            logger.warning(
                "Redis at %s is unreachable (%s: %s); %s falls back to local state "
                "until it answers again",
                self._safe_url,
                type(exc).__name__,
                exc,
                self.what,
            )
            # Shown with no logging configured: the limits are per process from here on.
            warnings.warn(
                f"Redis at {self._safe_url} is unreachable: {self.what} is kept in this "
                "process only until Redis answers again",
                stacklevel=2,
            )
        self._retry_at = self._clock.now() + self._backoff

    async def aclose(self) -> None:
        """Close the client's connections (a later call opens new ones)."""
        client, self._client = self._client, None
        self._scripts.clear()
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
