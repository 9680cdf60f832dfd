"""Request and token buckets held in Redis, shared by every process that names the same key.

:class:`RedisCapacity` is a :class:`~lionpride.services.utilities.rate_limiter.CapacityBackend`:
a :class:`~lionpride.services.utilities.rate_limiter.RateLimiter` over it keeps its own queue
and single timer, and asks Redis once per wake-up. One Lua script (:data:`TAKE_SCRIPT`) reads
Redis ``TIME`` (the only clock; client clocks may disagree), refills both buckets, and either
takes requests and tokens together or takes nothing and answers how long to wait until both
would suffice (a pause included). The limiter sleeps exactly that long and asks again, so
nothing polls.

Guarantees and limits of the guarantee:

* Admission: in any interval of length t, all processes together are granted at most
  L + L·t/T of each limit (the server's clock decides).
* Fairness: each process serves its own callers FIFO (by priority); across processes the
  order is only approximate, since whichever process asks first after a refill wins.
* ``give_back`` (refunds, token reconciliation) and ``pause`` (a 429's ``retry_after``) are
  synchronous in the backend protocol, so they are sent to Redis by a task this backend owns;
  :meth:`RedisCapacity.flush` awaits them and :meth:`RedisCapacity.aclose` does too. Once a
  refund has landed, the backend kicks the queue of the limiter over it (the optional
  ``subscribe`` hook), which asks Redis again at once instead of sleeping out a wait computed
  before the refund.
* Redis unreachable: with ``on_redis_error="fallback"`` the backend logs one warning and uses
  local buckets with the same limits, starting from the last levels Redis reported; it tries
  Redis again after a backoff and returns to the shared buckets when it answers. Capacity taken
  on one side and given back on the other is not carried over.

Keys are ``lionpride:limit:{<limit_key>}:requests`` / ``:tokens`` / ``:pause`` (one hash tag,
so a Redis Cluster keeps them in one slot). Bucket hashes expire once they would be full
anyway, so abandoned keys disappear. Processes sharing a key must configure the same limits.

Who owns what: a :class:`RedisCapacity` owns its :class:`~lionpride.services.distributed.
_link.RedisLink`, the levels Redis last reported, its local fallback
:class:`~lionpride.services.utilities.rate_limiter.LocalCapacity` and the tasks that carry
give-backs and pauses to Redis. The limiter over it calls the capacity methods (``check``,
``take``, ``give_back``, ``pause``, ``levels``, ``subscribe``); the learned variant also calls
``reshape``; whoever closes it calls ``flush`` and ``aclose``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable, Coroutine
from typing import Any

from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.distributed._link import OnRedisError, RedisLink
from lionpride.services.utilities.rate_limiter import (
    LocalCapacity,
    RateLimitConfig,
    RateLimiter,
    TokenBucket,
)
from lionpride.services.utilities.waiting import Listeners

__all__ = [
    "GIVE_BACK_SCRIPT",
    "LEARN_SCRIPT",
    "PAUSE_SCRIPT",
    "TAKE_SCRIPT",
    "RedisCapacity",
    "default_limit_key",
    "make_limiter",
]

# Shared by the two bucket scripts: read a bucket refilled to Redis TIME ``now``, and store it
# with a TTL equal to the time it needs to be full again (an expired bucket reads as full).
_BUCKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local function read(key, cap, rate)
  local v = redis.call('HMGET', key, 'level', 'ts')
  local level, ts = tonumber(v[1]), tonumber(v[2])
  if level == nil or ts == nil then return cap, now end
  if now > ts then
    level = math.min(cap, level + (now - ts) * rate)
    ts = now
  end
  -- after a failover Redis TIME may run behind the stored stamp: never move it backwards
  return level, ts
end

local function store(key, cap, rate, level, ts)
  redis.call('HSET', key, 'level', string.format('%.17g', level), 'ts', string.format('%.17g', ts))
  redis.call('PEXPIRE', key, math.ceil((cap - level) / rate * 1000) + 1000)
end
"""

# The bucket shapes: ARGV[1..4] (request capacity and rate, token capacity and rate; capacity
# 0 = no such bucket), unless KEYS[4] names a hash of shapes learned from the provider (written
# by LEARN_SCRIPT), which then wins.
_SHAPE_LUA = """
local rcap, rrate = tonumber(ARGV[1]), tonumber(ARGV[2])
local tcap, trate = tonumber(ARGV[3]), tonumber(ARGV[4])
if KEYS[4] then
  local s = redis.call('HMGET', KEYS[4], 'rcap', 'rrate', 'tcap', 'trate')
  if s[1] then
    rcap, rrate, tcap, trate = tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
  end
end
"""

#: KEYS: request bucket, token bucket, pause marker, optionally the learned shapes. ARGV: the
#: shapes (see ``_SHAPE_LUA``), requests, tokens. Returns ``{wait_seconds, request_level,
#: token_level}`` as strings; wait "0" means taken.
TAKE_SCRIPT = (
    _BUCKET_LUA
    + _SHAPE_LUA
    + """
local req, tok = tonumber(ARGV[5]), tonumber(ARGV[6])
local wait = 0
local paused = redis.call('PTTL', KEYS[3])
if paused > 0 then wait = paused / 1000 end
local rl, rts, tl, tts = 0, now, 0, now
if rcap > 0 then
  rl, rts = read(KEYS[1], rcap, rrate)
  if req > 0 and req > rl then wait = math.max(wait, (req - rl) / rrate) end
end
if tcap > 0 then
  tl, tts = read(KEYS[2], tcap, trate)
  if tok > 0 and tok > tl then wait = math.max(wait, (tok - tl) / trate) end
end
if wait <= 0.000001 then
  wait = 0
  if rcap > 0 and req > 0 then
    rl = rl - req
    store(KEYS[1], rcap, rrate, rl, rts)
  end
  if tcap > 0 and tok > 0 then
    tl = tl - tok
    store(KEYS[2], tcap, trate, tl, tts)
  end
end
return {string.format('%.17g', wait), string.format('%.17g', rl), string.format('%.17g', tl)}
"""
)

#: KEYS: as for the take script. ARGV: the shapes, then requests and tokens to add (negative
#: amounts charge: the bucket may go into debt).
GIVE_BACK_SCRIPT = (
    _BUCKET_LUA
    + _SHAPE_LUA
    + """
local specs = {{KEYS[1], rcap, rrate, ARGV[5]}, {KEYS[2], tcap, trate, ARGV[6]}}
for _, s in ipairs(specs) do
  local cap, rate, amount = s[2], s[3], tonumber(s[4])
  if cap > 0 and amount ~= 0 then
    local level, ts = read(s[1], cap, rate)
    store(s[1], cap, rate, math.min(cap, level + amount), ts)
  end
end
return 0
"""
)

#: KEYS: as for the take script, the learned shapes' hash required. ARGV: the shapes learned,
#: then a level for each bucket ("" = none), then how long the shapes are kept (ms). A bucket
#: this process has not learned (capacity 0) keeps the shape another process learned. A
#: bucket whose capacity stays is lowered to its level, never raised (another process may
#: have taken since the provider answered); a bucket of a new capacity takes the level.
LEARN_SCRIPT = (
    _BUCKET_LUA
    + """
local old = redis.call('HMGET', KEYS[4], 'rcap', 'rrate', 'tcap', 'trate')
local shape = {ARGV[1], ARGV[2], ARGV[3], ARGV[4]}
for i = 1, 3, 2 do
  if tonumber(shape[i]) == 0 and old[i] then shape[i], shape[i + 1] = old[i], old[i + 1] end
end
redis.call('HSET', KEYS[4], 'rcap', shape[1], 'rrate', shape[2], 'tcap', shape[3],
  'trate', shape[4])
redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[7]))
local specs = {{KEYS[1], shape[1], shape[2], ARGV[5], old[1]},
  {KEYS[2], shape[3], shape[4], ARGV[6], old[3]}}
for _, s in ipairs(specs) do
  local cap, rate, wanted = tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
  if cap > 0 and wanted then
    local level, ts = read(s[1], cap, rate)
    if tonumber(s[5]) ~= cap then level = cap end
    store(s[1], cap, rate, math.min(cap, level, wanted), ts)
  end
end
return 0
"""
)

#: KEYS: pause marker. ARGV: milliseconds. The marker's TTL is the pause left (server time);
#: it is only ever extended.
PAUSE_SCRIPT = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 0
"""


#: How long learned shapes stay in Redis after the last lesson.
_SHAPE_TTL_MS = 600_000


def default_limit_key(name: str, api_key: str | None) -> str:
    """Return ``name`` plus a short hash of ``api_key``, so two keys never share by accident.

    The key itself never appears: only the first 16 hex digits of its SHA-256.

    Example:
        >>> default_limit_key("gpt-4o-mini", None)
        'gpt-4o-mini'
    """
    if not api_key:
        return name
    digest = hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:16]
    return f"{name}:{digest}"


def _float(value: Any) -> float:
    return float(value.decode() if isinstance(value, bytes) else value)


class RedisCapacity:
    """A request bucket and a token bucket in Redis (see the module docstring).

    Args:
        redis_url: Where Redis runs.
        limit_key: Name of the shared limit; every process using it shares both buckets.
        requests: Shape of the request bucket (``refill_rate`` > 0), or ``None`` for no limit.
        tokens: Shape of the token bucket (``refill_rate`` > 0), or ``None`` for no limit.
        on_redis_error: ``"fallback"`` (local buckets, one warning) or ``"raise"``.
        clock: Time source of the local fallback buckets and the reconnect backoff.
        socket_timeout: Seconds a Redis connect or reply may take.
        reconnect_min: First wait, after Redis failed, before trying it again.
        reconnect_max: Longest such wait.

    Raises:
        ValueError: A bucket without refill, an empty ``limit_key``, or a bad policy.
    """

    def __init__(
        self,
        redis_url: str,
        limit_key: str,
        *,
        requests: RateLimitConfig | None,
        tokens: RateLimitConfig | None,
        on_redis_error: OnRedisError = "fallback",
        clock: Clock = SYSTEM_CLOCK,
        socket_timeout: float = 0.5,
        reconnect_min: float = 1.0,
        reconnect_max: float = 5.0,
        learned: bool = False,
    ) -> None:
        if not limit_key:
            raise ValueError("limit_key must not be empty")
        for name, config in (("requests", requests), ("tokens", tokens)):
            if config is not None and config.refill_rate <= 0:
                raise ValueError(f"the shared {name} bucket needs refill_rate > 0")
        self.limit_key = limit_key
        self._requests = requests
        self._tokens = tokens
        self._clock = clock
        self._link = RedisLink(
            redis_url,
            what=f"limit {limit_key!r}",
            on_redis_error=on_redis_error,
            clock=clock,
            socket_timeout=socket_timeout,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
        )
        prefix = f"lionpride:limit:{{{limit_key}}}"
        self._keys: tuple[str, ...] = (f"{prefix}:requests", f"{prefix}:tokens", f"{prefix}:pause")
        if learned:
            self._keys += (f"{prefix}:shape",)
        self._shape = (
            requests.capacity if requests else 0,
            requests.refill_rate if requests else 0,
            tokens.capacity if tokens else 0,
            tokens.refill_rate if tokens else 0,
        )
        self._levels: dict[str, float] = {}
        if requests is not None:
            self._levels["requests"] = float(requests.capacity)
        if tokens is not None:
            self._levels["tokens"] = float(tokens.capacity)
        self._paused_until = -math.inf
        self._local = self._fresh_local()
        self._local_for = 0  # the link's fallback count when _local was made
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._kicks = Listeners()

    def __repr__(self) -> str:
        return f"RedisCapacity({self.limit_key!r}, shared={self.shared})"

    @property
    def token_capacity(self) -> int | None:
        """The shared token bucket's capacity; ``None`` when tokens are not limited."""
        return self._tokens.capacity if self._tokens is not None else None

    @property
    def shared(self) -> bool:
        """False while Redis is unreachable and local buckets stand in."""
        return self._link.shared

    @property
    def link(self) -> RedisLink:
        """The Redis connection and its fallback state."""
        return self._link

    @property
    def keys(self) -> tuple[str, ...]:
        """The Redis keys of the request bucket, the token bucket and the pause marker (and,
        with ``learned``, of the shapes learned from the provider)."""
        return self._keys

    def _fresh_local(self) -> LocalCapacity:
        """Local buckets starting at the last shared levels, with the pause still running."""

        def bucket(config: RateLimitConfig | None, name: str) -> TokenBucket | None:
            if config is None:
                return None
            level = min(config.capacity, max(0, math.floor(self._levels[name])))
            return TokenBucket(
                RateLimitConfig(config.capacity, config.refill_rate, level), clock=self._clock
            )

        local = LocalCapacity(bucket(self._requests, "requests"), bucket(self._tokens, "tokens"))
        left = self._paused_until - self._clock.now()
        if left > 0:
            local.pause(left)
        return local

    async def _run(self, source: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any | None:
        """Run a script; on the switch to fallback, start local buckets from the last levels.

        Only the switch itself resets them: another script that was in flight and fails later
        must not refill buckets the fallback has already granted from.
        """
        link = self._link
        reply = await link.run(source, keys, args)
        if reply is None and self._local_for != link.fallbacks:
            self._local_for = link.fallbacks
            self._local = self._fresh_local()
        return reply

    def check(self, requests: int, tokens: int) -> None:
        """Raise ``ValueError`` naming the amount and capacity a bucket can never hold."""
        self._local.check(requests, tokens)

    async def take(self, requests: int, tokens: int) -> float:
        """Take both amounts from the shared buckets (0.0), or nothing and return the wait.

        Raises:
            lionpride.errors.ConnectionError: Redis is unreachable and the policy is "raise".
        """
        self._closed = False  # in use again after an aclose: the connection stays open
        reply = await self._run(TAKE_SCRIPT, self._keys, (*self._shape, requests, tokens))
        if reply is None:
            return await self._local.take(requests, tokens)
        wait, request_level, token_level = (_float(v) for v in reply)
        if self._requests is not None:
            self._levels["requests"] = request_level
        if self._tokens is not None:
            self._levels["tokens"] = token_level
        return wait

    def give_back(self, requests: int, tokens: int) -> None:
        """Return capacity (negative ``tokens`` charges); sent to Redis by an owned task."""
        if not (requests or tokens):
            return
        self._spawn(self._give_back_shared(requests, tokens))

    def subscribe(self, kick: Callable[[], None]) -> None:
        """Call ``kick`` (a bound method is held weakly) once a refund has reached the buckets."""
        self._kicks.add(kick)

    async def _give_back_shared(self, requests: int, tokens: int) -> None:
        keys = self._keys
        if await self._run(GIVE_BACK_SCRIPT, keys, (*self._shape, requests, tokens)) is None:
            self._local.give_back(requests, tokens)
        if requests > 0 or tokens > 0:
            # Only now can the limiter's next ask see the refund; a charge frees nothing.
            self._kicks.tell()

    def reshape(
        self,
        requests: RateLimitConfig | None,
        tokens: RateLimitConfig | None,
        levels: tuple[float | None, float | None] = (None, None),
    ) -> None:
        """Take shapes learned from the provider, in every process sharing the key (built
        with ``learned=True``), and lower the buckets to ``levels`` (``None``: as they are).

        The shapes are kept in Redis for ten minutes after the last lesson; local fallback
        buckets take them too.
        """
        self._requests, self._tokens = requests, tokens
        self._shape = (
            requests.capacity if requests else 0,
            requests.refill_rate if requests else 0,
            tokens.capacity if tokens else 0,
            tokens.refill_rate if tokens else 0,
        )
        for name, config in (("requests", requests), ("tokens", tokens)):
            if config is None:
                self._levels.pop(name, None)
            else:
                self._levels[name] = min(self._levels.get(name, config.capacity), config.capacity)
        self._relearn_local(levels)
        wanted = tuple("" if level is None else repr(level) for level in levels)
        self._spawn(self._learn((*self._shape, *wanted, _SHAPE_TTL_MS)))

    def _relearn_local(self, levels: tuple[float | None, float | None]) -> None:
        """Give the local fallback buckets the new shapes and lower them to ``levels``.

        A bucket whose capacity stays keeps what it holds, if less than Redis last reported:
        while Redis is down the local buckets have granted since that report.
        """
        old = self._local
        self._local = self._fresh_local()
        for before, after, wanted in (
            (old.request_bucket, self._local.request_bucket, levels[0]),
            (old.token_bucket, self._local.token_bucket, levels[1]),
        ):
            if after is None:
                continue
            level = after.level
            if before is not None and before.capacity == after.capacity:
                level = min(level, before.level)
            if wanted is not None:
                level = min(level, wanted)
            after.reshape(after.capacity, after.refill_rate, level)

    async def _learn(self, args: tuple[Any, ...]) -> None:
        await self._run(LEARN_SCRIPT, self._keys, args)
        # A new shape may serve the queue's head sooner than the wait it was last told (a
        # learned limit grew): let it ask again, as after a refund.
        self._kicks.tell()

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds``, in every process sharing the key."""
        self._paused_until = max(self._paused_until, self._clock.now() + seconds)
        self._local.pause(seconds)
        ms = max(1, math.ceil(seconds * 1000))
        self._spawn(self._pause_shared(ms))

    async def _pause_shared(self, ms: int) -> None:
        await self._run(PAUSE_SCRIPT, self._keys[2:3], (ms,))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in a task this backend owns (awaited by :meth:`flush`)."""
        if self._closed:
            coro = self._then_close(coro)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def levels(self) -> dict[str, float]:
        """Levels the last Redis answer reported (the local ones while in fallback)."""
        if not self._link.shared:
            return self._local.levels()
        return dict(self._levels)

    async def flush(self) -> None:
        """Wait until every give-back and pause sent so far has reached Redis (or fallback)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Flush, then close the Redis connections.

        A call that outlives the close still gives back its capacity (other processes count
        on it): the connection that reopens for it is closed again afterwards.
        """
        self._closed = True
        await self.flush()
        await self._link.aclose()

    async def _then_close(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        finally:
            await self._link.aclose()


def make_limiter(
    *,
    redis_url: str,
    limit_key: str,
    limit_requests: int | None,
    limit_tokens: int | None,
    capacity_refresh_time: float,
    on_redis_error: OnRedisError = "fallback",
    clock: Clock = SYSTEM_CLOCK,
) -> RateLimiter:
    """Build a :class:`RateLimiter` over buckets shared in Redis under ``limit_key``.

    Each limit L becomes a bucket of capacity L refilling L/``capacity_refresh_time`` per
    second; ``None`` leaves that dimension unlimited (a 429's pause is shared either way).
    Close it with ``await limiter.backend.aclose()``.

    Raises:
        ValueError: A limit below 1, a non-positive ``capacity_refresh_time``, an empty key.
    """
    if not (isinstance(capacity_refresh_time, int | float) and capacity_refresh_time > 0):
        raise ValueError(f"capacity_refresh_time must be > 0, got {capacity_refresh_time!r}")
    if not math.isfinite(capacity_refresh_time):
        raise ValueError(f"capacity_refresh_time must be finite, got {capacity_refresh_time!r}")

    def shape(limit: int | None) -> RateLimitConfig | None:
        if limit is None:
            return None
        return RateLimitConfig(limit, limit / capacity_refresh_time)

    backend = RedisCapacity(
        redis_url,
        limit_key,
        requests=shape(limit_requests),
        tokens=shape(limit_tokens),
        on_redis_error=on_redis_error,
        clock=clock,
    )
    return RateLimiter(clock=clock, backend=backend)
