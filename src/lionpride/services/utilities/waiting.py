"""Waiting without polling: the wait queue and the deadline scope the limiters share.

:class:`WaitQueue` owns the waiters of one set of buckets (a :class:`~lionpride.services.
utilities.rate_limiter.RateLimiter`'s, or a :class:`~lionpride.services.utilities.rate_limiter.
TokenBucket` used alone): it queues callers in order of ``(priority, arrival)`` and serves them
strictly head first from one timer task that sleeps exactly until the head can be served. Its
owner gives it two functions at construction (take capacity for a waiter, give it back) and
calls its public methods: ``wait``, ``kick`` (capacity came back), ``free_slot``, ``fail`` and
``stop_if_idle``. A cancelled waiter takes nothing: its entry is dropped, or, if the grant
raced the cancellation, what it was granted is given back.

:class:`WaitGroup` is the state one executor keeps in a queue (its waiter count and free
concurrency slots); the executor reads it, the queue updates it. :class:`DeadlineScope` turns
a deadline on an injected clock into ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lionpride import errors
from lionpride.core.clock import Clock, SystemClock

__all__ = ["DeadlineScope", "Listeners", "WaitGroup", "WaitQueue"]


class Listeners:
    """Whom to tell that capacity came back (a wait queue's ``kick``, a wrapping backend).

    A bound method is held as a weak reference to its object plus its function, so a
    limiter that is gone is not kept alive by the buckets it waited on; any other callable is
    held as it is. Told on every refund, so the telling is kept to a dereference and a call.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: list[tuple[weakref.ref[object] | None, Callable[..., None]]] = []

    def add(self, listener: Callable[[], None]) -> None:
        """Tell ``listener`` from now on (the dead weak ones are dropped here)."""
        held = [(ref, f) for ref, f in self._held if ref is None or ref() is not None]
        owner = getattr(listener, "__self__", None)
        function = getattr(listener, "__func__", None)
        if owner is not None and function is not None:
            held.append((weakref.ref(owner), function))
        else:
            held.append((None, listener))
        self._held = held

    def tell(self) -> None:
        """Call every listener still alive."""
        for ref, function in self._held:
            if ref is None:
                function()
            else:
                owner = ref()
                if owner is not None:
                    function(owner)


class WaitGroup:
    """The waiters one owner (an executor) has in a queue, optionally bounded.

    ``slots`` counts the owner's free concurrency slots (``None``: unlimited). A grant takes
    one, so a call is granted capacity only when it can start at once: capacity granted to
    calls that then wait for a slot would let them start later in a burst above the rate.
    """

    __slots__ = ("limit", "slots", "waiting")

    def __init__(self, limit: int | None = None, slots: int | None = None) -> None:
        self.limit = limit
        self.slots = slots
        self.waiting = 0


@dataclass(slots=True, eq=False)
class _Waiter:
    """One queued caller: what it asks for and the future that wakes it."""

    amount: float
    tokens: int
    group: WaitGroup | None
    future: asyncio.Future[float]
    arrival: float
    active: bool = True


class WaitQueue:
    """Callers waiting for capacity, served strictly head first by one timer task.

    The timer ("waker") asks the capacity source how long the head must wait, sleeps exactly
    that long on the clock, and grants the head. It exists only while someone waits. Anything
    that may serve the head sooner (capacity returned, a new head, the head cancelled)
    ``kick()``s it: a sleeping waker is replaced, a busy one re-checks before sleeping.

    Attributes:
        depth: Callers still waiting (others read it; only the queue changes it).
        queued_amount: The sum of their first amounts (requests, or a lone bucket's tokens).
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_give_back",
        "_heap",
        "_kicked",
        "_seq",
        "_sleeping",
        "_take",
        "_take_now",
        "_waker",
        "depth",
        "queued_amount",
    )

    def __init__(
        self,
        clock: Clock,
        give_back: Callable[[float, int], None],
        *,
        take_now: Callable[[float, int], float] | None = None,
        take: Callable[[float, int], Awaitable[float]] | None = None,
    ) -> None:
        if take_now is None and take is None:
            raise TypeError("a wait queue needs take_now or take")
        self._clock = clock
        self._give_back = give_back
        self._take_now = take_now
        self._take = take
        self._heap: list[tuple[float, int, _Waiter]] = []
        self._seq = itertools.count()
        self.depth = 0
        self._waker: asyncio.Task[None] | None = None
        self._sleeping: asyncio.Task[None] | None = None
        self._kicked = False
        self.queued_amount = 0.0

    async def wait(
        self, amount: float, tokens: int, priority: float, group: WaitGroup | None
    ) -> float:
        """Queue until granted; return the seconds spent waiting.

        Raises:
            QueueFullError: ``group`` is at its limit; nothing was queued.
        """
        if group is not None:
            if group.limit is not None and group.waiting >= group.limit:
                raise errors.QueueFullError(f"queue is full ({group.limit} callers waiting)")
            group.waiting += 1
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(amount, tokens, group, future, self._clock.now())
        heapq.heappush(self._heap, (priority, next(self._seq), waiter))
        self.depth += 1
        self.queued_amount += amount
        if self._heap[0][2] is waiter or self._waker is None:
            self.kick()
        try:
            granted_at = await future
        except asyncio.CancelledError:
            if waiter.active:
                heap = self._heap
                was_head = bool(heap) and heap[0][2] is waiter
                self._finish(waiter)
                if was_head:
                    self.kick()
            elif not future.cancelled() and future.exception() is None:
                # Granted, but the caller was cancelled before it could resume.
                self._give_back(amount, tokens)
                if group is not None:
                    self.free_slot(group)
            raise
        return granted_at - waiter.arrival

    def kick(self) -> None:
        """Make the waker re-examine the head now."""
        waker = self._waker
        if waker is None:
            if self.depth:
                self._waker = asyncio.get_running_loop().create_task(self._run())
        elif self._sleeping is waker:
            waker.cancel()
            self._sleeping = None
            self._waker = asyncio.get_running_loop().create_task(self._run())
        else:
            self._kicked = True

    def free_slot(self, group: WaitGroup) -> None:
        """Give back the concurrency slot a grant took from ``group``."""
        if group.slots is not None:
            group.slots += 1
            if group.slots == 1:  # a head of this group may be held back for want of a slot
                self.kick()

    def fail(self, group: WaitGroup, make_error: Callable[[], BaseException]) -> int:
        """Fail every waiter of ``group`` with a fresh ``make_error()``; return how many."""
        failed = 0
        for _, _, waiter in list(self._heap):
            if waiter.group is group and waiter.active and not waiter.future.done():
                self._finish(waiter)
                waiter.future.set_exception(make_error())
                failed += 1
        if failed:
            self.kick()
        return failed

    async def stop_if_idle(self) -> None:
        """End the waker task when nobody waits (a busy backend call is let finish)."""
        waker = self._waker
        if self.depth == 0 and waker is not None:
            if self._sleeping is waker:
                waker.cancel()
            await asyncio.wait((waker,))

    def _finish(self, waiter: _Waiter) -> None:
        """Take ``waiter`` out of the counts (its heap entry is dropped lazily)."""
        waiter.active = False
        self.depth -= 1
        self.queued_amount -= waiter.amount
        if waiter.group is not None:
            waiter.group.waiting -= 1
        heap = self._heap
        if len(heap) > 2 * self.depth + 64:
            # Cancelled entries far from the head would otherwise pile up.
            heap[:] = [entry for entry in heap if entry[2].active]
            heapq.heapify(heap)

    async def _run(self) -> None:
        """Serve the head whenever it can be served; exit when nobody can be."""
        me = asyncio.current_task()
        heap = self._heap
        try:
            while True:
                while heap and not (heap[0][2].active and not heap[0][2].future.done()):
                    heapq.heappop(heap)
                if not heap:
                    return
                waiter = heap[0][2]
                group = waiter.group
                if group is not None and group.slots == 0:
                    return  # strictly head first: wait for free_slot() to kick
                self._kicked = False
                try:
                    if self._take_now is not None:
                        delay = self._take_now(waiter.amount, waiter.tokens)
                    else:
                        assert self._take is not None
                        delay = await self._take(waiter.amount, waiter.tokens)
                except Exception as exc:  # a backend failure belongs to the waiter it was for
                    if waiter.active and not waiter.future.done():
                        self._finish(waiter)
                        waiter.future.set_exception(exc)
                    continue
                if delay <= 0:
                    if waiter.active and not waiter.future.done():
                        self._finish(waiter)
                        if group is not None and group.slots is not None:
                            group.slots -= 1
                        waiter.future.set_result(self._clock.now())
                    else:
                        self._give_back(waiter.amount, waiter.tokens)
                    continue
                if self._kicked:
                    continue
                if delay == math.inf:
                    return  # only returned capacity can help, and that kicks
                self._sleeping = me
                try:
                    await self._clock.sleep(delay)
                finally:
                    if self._sleeping is me:
                        self._sleeping = None
        finally:
            if self._waker is me:
                self._waker = None


class DeadlineScope:
    """Cancel the enclosed block when ``clock`` reaches ``deadline`` and raise TimeoutError.

    On the system clock this is one loop timer; on any other clock a watchdog task sleeps on
    that clock, so fake time is honoured exactly. Only the scope's own cancellation becomes a
    TimeoutError (the ``asyncio.timeout`` protocol: ``uncancel`` tells ours from others');
    other errors, and cancellation from outside, pass through unchanged.
    """

    __slots__ = (
        "_cancelling",
        "_clock",
        "_deadline",
        "_expiring",
        "_handle",
        "_task",
        "_timeout",
        "_watchdog",
        "_what",
        "fired",
    )

    def __init__(self, clock: Clock, timeout: float, what: str) -> None:
        self._clock = clock
        self._timeout = timeout
        self._deadline = clock.now() + timeout
        self._what = what
        self._handle: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._expiring = False
        self.fired = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = asyncio.get_running_loop()
        remaining = self._deadline - self._clock.now()
        if isinstance(self._clock, SystemClock):
            self._handle = loop.call_at(loop.time() + remaining, self._expire)
        else:
            self._watchdog = loop.create_task(self._watch(remaining))

    def _expire(self) -> None:
        self._expiring = True
        self._task.cancel()

    async def _watch(self, remaining: float) -> None:
        await self._clock.sleep(remaining)
        self._expire()

    async def __aexit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if (
            self._expiring
            and self._task.uncancel() <= self._cancelling
            and kind is asyncio.CancelledError
        ):
            self.fired = True
            raise errors.TimeoutError(f"{self._what} within {self._timeout} s") from exc
