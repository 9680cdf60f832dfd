"""One clock object for everything that waits: token buckets, the breaker, backoff.

Production code uses :data:`SYSTEM_CLOCK` (the event loop's monotonic time). Tests pass a
:class:`FakeClock` and move it with :meth:`FakeClock.advance`, so nothing sleeps for real.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from typing import Protocol, runtime_checkable

from lionpride import errors

__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Monotonic time in seconds plus a matching sleep."""

    def now(self) -> float:
        """Return monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real monotonic clock and ``asyncio.sleep``."""

    __slots__ = ()

    #: ``time.monotonic`` itself (the clock asyncio's loop uses): read several times per
    #: call, so no Python frame around it.
    now = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        """Sleep for real; non-positive values just yield to the loop."""
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that only moves when told to.

    ``sleep`` parks the caller until :meth:`advance` moves time past its deadline. Sleepers
    wake in deadline order, each given a chance to run before the next one is released, so
    code that re-sleeps after waking sees a consistent time line.

    Example:
        >>> clock = FakeClock()
        >>> clock.now()
        0.0
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        """Return the fake time."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Park until fake time reaches ``now + seconds``."""
        if not math.isfinite(seconds) and seconds > 0:
            raise errors.ValidationError(f"cannot sleep {seconds!r} seconds")
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """Number of callers currently parked in :meth:`sleep`."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper whose deadline passes."""
        if seconds < 0:
            raise errors.ValidationError("cannot move a clock backwards")
        target = self._now + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, when)
            if not fut.done():
                fut.set_result(None)
                await _settle()
        self._now = target
        await _settle()


async def _settle(rounds: int = 20) -> None:
    """Let ready callbacks run so woken tasks reach their next await."""
    for _ in range(rounds):
        await asyncio.sleep(0)
