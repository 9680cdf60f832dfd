"""A circuit breaker whose state lives in Redis, shared by every process naming the same key.

:class:`RedisCircuitBreaker` counts consecutive failures, opens, waits ``recovery_time`` and
admits at most ``half_open_max_calls`` probes across all processes, exactly as
:class:`~lionpride.services.utilities.resilience.CircuitBreaker` does in one process. Every
transition happens inside a Lua script timed by Redis ``TIME``: :data:`ADMIT_SCRIPT` lets an
attempt in (turning OPEN into HALF_OPEN when the recovery time has passed, and leasing a probe
slot in a sorted set whose entries expire after ``probe_ttl``, so a crashed prober frees its
slot), and :data:`RECORD_SCRIPT` records the outcome and frees the slot. An outcome from an
attempt admitted in an older epoch (before another process moved the state) changes nothing.

Runs once per attempt, with two Redis round trips (admit, record). Cancellation counts as
neither success nor failure; the record that frees a probe slot is shielded from it. If Redis
is unreachable the breaker falls back to the in-process breaker it inherits (one warning;
``on_redis_error="raise"`` raises :class:`lionpride.errors.ConnectionError` instead) and goes
back to the shared state when Redis answers again. The failure-rate rule is not shared.
Keys: ``lionpride:breaker:{<breaker_key>}:state`` (a hash) and ``...:probes`` (a sorted set).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import ParamSpec, TypeVar

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.distributed._link import OnRedisError, RedisLink
from lionpride.services.utilities.resilience import (
    HALF_OPEN_RETRY_AFTER,
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
)

__all__ = ["ADMIT_SCRIPT", "RECORD_SCRIPT", "RedisCircuitBreaker"]

logger = logging.getLogger("lionpride.distributed")

P = ParamSpec("P")
T = TypeVar("T")

#: How long shared breaker state outlives its last change (beyond ``recovery_time``).
_STATE_TTL = 86_400.0

_NOW_MS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS: state hash, probe leases. ARGV: recovery ms, probe slots, probe lease ms, probe id,
#: state TTL ms. Returns ``{state, epoch, wait_ms, probe}``: probe "1" is a leased probe slot;
#: state open or half_open without a probe means rejected.
ADMIT_SCRIPT = (
    _NOW_MS_LUA
    + """
local v = redis.call('HMGET', KEYS[1], 'state', 'epoch', 'opened_at')
local state = v[1] or 'closed'
local epoch = tonumber(v[2]) or 0
if state == 'open' then
  local left = tonumber(v[3]) + tonumber(ARGV[1]) - now
  if left > 0 then return {state, tostring(epoch), tostring(left), '0'} end
  state = 'half_open'
  epoch = epoch + 1
  redis.call('HSET', KEYS[1], 'state', state, 'epoch', epoch)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('DEL', KEYS[2])
end
if state == 'closed' then return {state, tostring(epoch), '0', '0'} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then
  return {state, tostring(epoch), '0', '0'}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {state, tostring(epoch), '0', '1'}
"""
)

#: KEYS: state hash, probe leases. ARGV: outcome (success, failure or release), epoch,
#: failure threshold, probe id ("" for none), state TTL ms, recovery ms. Returns
#: ``{state, previous, wait_ms}`` where previous is "" unless this outcome made a transition
#: and wait_ms is what is left of the recovery time while the state is open ("0" otherwise).
RECORD_SCRIPT = (
    _NOW_MS_LUA
    + """
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[2], ARGV[4]) end
local v = redis.call('HMGET', KEYS[1], 'state', 'epoch', 'failures', 'opened_at')
local state = v[1] or 'closed'
local epoch = tonumber(v[2]) or 0
local opened_at = tonumber(v[4]) or now
local new = state
if ARGV[1] ~= 'release' and tonumber(ARGV[2]) == epoch then
  if ARGV[1] == 'success' then
    if state == 'half_open' then
      new = 'closed'
    elseif (tonumber(v[3]) or 0) > 0 then
      redis.call('HSET', KEYS[1], 'failures', 0)
    end
  elseif state == 'half_open' then
    new = 'open'
  elseif state == 'closed' then
    if redis.call('HINCRBY', KEYS[1], 'failures', 1) >= tonumber(ARGV[3]) then new = 'open' end
  end
  if new ~= state then
    redis.call('HSET', KEYS[1], 'state', new, 'epoch', epoch + 1, 'failures', 0, 'opened_at', now)
    redis.call('DEL', KEYS[2])
    opened_at = now
  end
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
end
local left = 0
if new == 'open' then left = math.max(opened_at + tonumber(ARGV[6]) - now, 0) end
local previous = ''
if new ~= state then previous = state end
return {new, previous, tostring(left)}
"""
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisCircuitBreaker(CircuitBreaker):
    """A :class:`CircuitBreaker` whose state is shared in Redis under ``breaker_key``.

    Args:
        failure_threshold: Consecutive failures (across all processes) that open it.
        recovery_time: Seconds (Redis time) it stays OPEN before probing.
        half_open_max_calls: Probes in flight at once across all processes.
        excluded_exceptions: Exception classes that pass through uncounted.
        name: Label for logs and errors.
        redis_url: Where Redis runs.
        breaker_key: Name of the shared state.
        on_redis_error: ``"fallback"`` (this process's own breaker, one warning) or ``"raise"``.
        probe_ttl: Seconds after which a probe slot of a vanished prober is freed.
        clock: Time source of the local fallback breaker, the reconnect backoff and the
            OPEN-to-HALF_OPEN reading of :attr:`state`.
        socket_timeout: Seconds a Redis connect or reply may take.

    Raises:
        ValueError: As :class:`CircuitBreaker`, an empty ``breaker_key`` or a bad policy.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_time: float = 30.0,
        half_open_max_calls: int = 1,
        excluded_exceptions: Iterable[type[BaseException]] | None = None,
        name: str = "default",
        *,
        redis_url: str,
        breaker_key: str,
        on_redis_error: OnRedisError = "fallback",
        probe_ttl: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
        socket_timeout: float = 0.5,
    ) -> None:
        super().__init__(
            failure_threshold=failure_threshold,
            recovery_time=recovery_time,
            half_open_max_calls=half_open_max_calls,
            excluded_exceptions=excluded_exceptions,
            name=name,
            clock=clock,
        )
        if not breaker_key:
            raise ValueError("breaker_key must not be empty")
        if not (math.isfinite(probe_ttl) and probe_ttl > 0):
            raise ValueError(f"probe_ttl must be finite and > 0, got {probe_ttl!r}")
        self.breaker_key = breaker_key
        self._link = RedisLink(
            redis_url,
            what=f"circuit breaker {breaker_key!r}",
            on_redis_error=on_redis_error,
            clock=clock,
            socket_timeout=socket_timeout,
        )
        prefix = f"lionpride:breaker:{{{breaker_key}}}"
        self._keys = (f"{prefix}:state", f"{prefix}:probes")
        self._recovery_ms = math.ceil(self.recovery_time * 1000)
        self._probe_ms = math.ceil(probe_ttl * 1000)
        self._state_ttl_ms = math.ceil((self.recovery_time + _STATE_TTL) * 1000)
        self._shared_state = CircuitState.CLOSED
        # When (on ``clock``) the shared OPEN state Redis last reported ends its recovery time.
        self._shared_open_until = 0.0
        self._records: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"RedisCircuitBreaker(name={self.name!r}, key={self.breaker_key!r})"

    @property
    def link(self) -> RedisLink:
        """The Redis connection and its fallback state."""
        return self._link

    @property
    def state(self) -> CircuitState:
        """The state Redis last reported (the local breaker's while in fallback).

        As with :class:`CircuitBreaker`, an OPEN breaker whose recovery time passed reads
        HALF_OPEN: the recovery time left that Redis reported with the OPEN state is counted
        down on ``clock``, and the next attempt's admission makes the move in Redis.
        """
        if not self._link.shared:
            return super().state
        if self._shared_state is CircuitState.OPEN and self._clock.now() >= self._shared_open_until:
            return CircuitState.HALF_OPEN
        return self._shared_state

    def _observe(self, state: str, wait_ms: str) -> None:
        """Remember a state Redis reported, with the recovery time it has left when OPEN."""
        self._shared_state = CircuitState(state)
        if self._shared_state is CircuitState.OPEN:
            self._shared_open_until = self._clock.now() + float(wait_ms) / 1000

    async def execute(
        self, func: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``func(*args, **kwargs)`` through the shared breaker.

        Raises:
            CircuitBreakerOpenError: The shared breaker is OPEN, or HALF_OPEN with every probe
                slot (across processes) busy; ``func`` was not called.
            lionpride.errors.ConnectionError: Redis is unreachable and the policy is "raise".
        """
        probe_id = uuid.uuid4().hex
        reply = await self._link.run(
            ADMIT_SCRIPT,
            self._keys,
            (
                self._recovery_ms,
                self.half_open_max_calls,
                self._probe_ms,
                probe_id,
                self._state_ttl_ms,
            ),
        )
        if reply is None:
            return await super().execute(func, *args, **kwargs)
        state, epoch, wait_ms, probe = (_text(v) for v in reply)
        self._observe(state, wait_ms)
        is_probe = probe == "1"
        if self._shared_state is not CircuitState.CLOSED and not is_probe:
            self._reject(float(wait_ms) / 1000)
        outcome = "release"
        try:
            result = await func(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, self.excluded_exceptions):
                outcome = "failure"
                self._failure_total += 1
            raise
        else:
            outcome = "success"
            self._success_total += 1
            return result
        finally:
            if outcome != "release" or is_probe:
                await self._record(outcome, epoch, probe_id if is_probe else "")

    def _reject(self, wait: float) -> None:
        """Count and raise a fast failure."""
        state = self._shared_state
        retry_after = (
            wait if state is CircuitState.OPEN else min(self.recovery_time, HALF_OPEN_RETRY_AFTER)
        )
        self._rejected_total += 1
        raise CircuitBreakerOpenError(
            f"Circuit breaker {self.name!r} is {state.value}; retry in {retry_after:.3g}s",
            retry_after=retry_after,
            details={"breaker": self.name, "state": state.value, "shared": True},
        )

    async def _record(self, outcome: str, epoch: str, probe_id: str) -> None:
        """Send the outcome; shielded, so cancellation cannot leak a probe slot."""
        task = asyncio.get_running_loop().create_task(self._send(outcome, epoch, probe_id))
        self._records.add(task)
        task.add_done_callback(self._records.discard)
        await asyncio.shield(task)

    async def _send(self, outcome: str, epoch: str, probe_id: str) -> None:
        args = (
            outcome,
            epoch,
            self.failure_threshold,
            probe_id,
            self._state_ttl_ms,
            self._recovery_ms,
        )
        try:
            reply = await self._link.run(RECORD_SCRIPT, self._keys, args)
        except errors.ConnectionError as exc:
            # The call itself is over; its result must not be lost to a record that could not
            # be sent. A leased probe slot frees itself after probe_ttl.
            logger.debug("circuit breaker %r could not record %s: %r", self.name, outcome, exc)
            return
        if reply is None:
            return
        new, old, wait_ms = (_text(v) for v in reply)
        self._observe(new, wait_ms)
        if old:
            now = self._clock.now()
            self._state_changes.append({"time": now, "from": old, "to": new, "shared": True})
            logger.info("circuit breaker %r (shared): %s -> %s", self.name, old, new)

    async def aclose(self) -> None:
        """Wait for outcomes still being recorded, then close the Redis connections."""
        while self._records:
            await asyncio.gather(*self._records, return_exceptions=True)
        await self._link.aclose()
