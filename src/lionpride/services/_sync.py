"""Blocking calls for scripts and notebooks: one private event loop per model, in its thread.

Threads of an async program call on the program's loop instead, once the model was used there
(while that loop runs), so the model's limits keep one queue for both kinds of call.

A model's ``invoke_sync`` runs ``invoke`` on an event loop that belongs to the model and runs
in a daemon thread of its own, made on the first blocking call and kept for the next ones, so
the endpoint's session (one per loop) keeps its pooled connections. Every thread's blocking
calls go to that one loop: the model's limits queue their waiters on one loop, which is what
their FIFO queue and timer need (waiters of several loops in one queue would be woken from the
wrong thread, some never). A caller blocked on its call that is interrupted (Ctrl-C on the
main thread) cancels the call, waits until its capacity is given back, and re-raises, as
``asyncio.run`` does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, Generic, TypeVar

from lionpride import errors

__all__ = ["PrivateThread", "SyncLoop", "refuse_in_loop"]

T = TypeVar("T")

#: Seconds a call sent to the async program's loop may take to start before it goes to the
#: model's private loop instead (that loop may be blocked waiting for this very call).
HOME_START_WAIT = 1.0


def refuse_in_loop(method: str, instead: str) -> None:
    """Raise when an event loop runs in this thread: blocking it would stall every task.

    Raises:
        lionpride.errors.ExecutionError: A loop is running here (not retryable).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise errors.ExecutionError(
        f"model.{method}() blocks, and an event loop is running in this thread "
        f"(async code, or a notebook cell): use {instead} there instead",
        retryable=False,
    )


class PrivateThread(threading.Thread):
    """The thread that runs a model's private loop (its calls are not the model's async use)."""


class _LoopThread:
    """One event loop running forever in a daemon thread, until :meth:`stop`."""

    __slots__ = ("closed", "loop", "pid", "thread")

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        #: Done once the loop has stopped and closed.
        self.closed: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.thread = PrivateThread(target=self._serve, name="lionpride-invoke-sync", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            self.closed.set_result(None)

    def stop(self) -> concurrent.futures.Future[None]:
        """Let every task on the loop end, then stop and close it; return :attr:`closed`."""
        asyncio.run_coroutine_threadsafe(self._drain(), self.loop)
        return self.closed

    async def _drain(self) -> None:
        me = asyncio.current_task()
        while others := [task for task in asyncio.all_tasks() if task is not me]:
            await asyncio.wait(others)
        asyncio.get_running_loop().stop()


class SyncLoop:
    """A model's private event loop for blocking calls, shared by every calling thread."""

    __slots__ = ("_current", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: _LoopThread | None = None

    def run(
        self,
        work: Callable[[], Coroutine[Any, Any, T]],
        home: asyncio.AbstractEventLoop | None = None,
    ) -> T:
        """Run ``work()`` and wait for its result: on ``home``, the loop of the model's async
        use, while it runs (in another thread), so that the model's limits keep one queue;
        else on the model's private loop (started on first use).

        A call sent to ``home`` that has not started within :data:`HOME_START_WAIT` goes to
        the private loop instead: ``home`` may be blocked by the very code that waits for
        this call (a notebook cell waiting for its worker threads), which would never end.

        The caller has checked that no loop runs in this thread (:func:`refuse_in_loop`).
        """
        call = _at_home(work, home)
        if call is None:
            with self._lock:
                call = _Call(work, self._started().loop)
        return call.result()

    def _started(self) -> _LoopThread:
        current = self._current
        if current is None or current.pid != os.getpid():
            # First use, or a forked child: the parent's loop thread does not exist here.
            current = self._current = _LoopThread()
        return current

    def _detach(self) -> _LoopThread | None:
        with self._lock:
            current, self._current = self._current, None
        if current is None or current.pid != os.getpid():
            return None
        return current

    def runs_here(self) -> bool:
        """Whether this code runs on the model's private loop."""
        current = self._current
        return current is not None and current.thread is threading.current_thread()

    def close(
        self,
        closing: Callable[[], Coroutine[Any, Any, None]],
        home: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Run ``closing()`` on the loop, stop the loop once the calls on it have ended, and
        wait until it has closed (blocking: from sync code only).

        With no private loop, ``closing()`` runs on ``home`` while it runs, else on a loop
        of its own. The next blocking call starts a new loop.
        """
        current = self._detach()
        if current is None:
            at_home = _at_home(closing, home)
            if at_home is not None:
                at_home.result()
            else:
                asyncio.run(closing())
            return
        asyncio.run_coroutine_threadsafe(closing(), current.loop).result()
        current.stop().result()

    async def aclose(self, closing: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """:meth:`close` for async code on another loop: awaits, blocks nothing."""
        current = self._detach()
        if current is None:
            await closing()
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(closing(), current.loop))
        await asyncio.wrap_future(current.stop())


class _Call(Generic[T]):
    """One blocking call handed to an event loop, for the thread that waits for it."""

    __slots__ = (
        "_lock",
        "_loop",
        "_revoked",
        "_started",
        "_submitted",
        "_task",
        "_work",
        "outcome",
    )

    def __init__(
        self, work: Callable[[], Coroutine[Any, Any, T]], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._work = work
        self._loop = loop
        self._lock = threading.Lock()
        self._revoked = False
        self._started = threading.Event()
        self._task: asyncio.Task[T] | None = None
        self.outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._submitted = False

    def _submit(self) -> None:
        """Hand the call to its loop, once. Called inside the waits' ``try``: an interrupt
        that lands just after the hand-over (the loop may start the call at once) still ends
        the call before it is raised."""
        if not self._submitted:
            self._submitted = True
            self._loop.call_soon_threadsafe(self.start)

    def start(self) -> None:
        """On the loop: start the call, unless the waiting thread gave up on this loop."""
        with self._lock:
            if self._revoked:
                return
            task = self._task = asyncio.get_running_loop().create_task(self._work())
        task.add_done_callback(partial(_settle, self.outcome))
        self._started.set()

    def starts_within(self, seconds: float) -> bool:
        """Whether the call started within ``seconds``; if not, it never will."""
        try:
            self._submit()
            if self._started.wait(seconds):
                return True
        except BaseException:  # interrupted (KeyboardInterrupt): end the call either way
            self._end()
            raise
        return not self._revoke()

    def _revoke(self) -> bool:
        """Keep the call from starting; ``False`` when it has started already."""
        with self._lock:
            self._revoked = self._task is None
            return self._revoked

    def result(self) -> T:
        """Wait for the call's outcome; interrupted, cancel the call first."""
        try:
            self._submit()
            return self.outcome.result()
        except BaseException:
            if not self.outcome.done():  # interrupted while waiting (KeyboardInterrupt)
                self._end()
            raise

    def _end(self) -> None:
        """Keep the call from starting, or cancel it if it has (and wait for it)."""
        if not self._revoke():
            self._cancel()

    def _cancel(self) -> None:
        """Cancel the started call and wait until it has given its capacity back."""
        task = self._task
        if task is not None:
            self._loop.call_soon_threadsafe(task.cancel)
            # Not ``concurrent.futures.wait``: it never sees a future cancelled by ``cancel()``
            # (only executors' ``set_running_or_notify_cancel`` wakes it), so it waited forever
            # for the call this very interrupt cancelled.
            with contextlib.suppress(concurrent.futures.CancelledError):
                self.outcome.exception()


def _at_home(
    work: Callable[[], Coroutine[Any, Any, T]], home: asyncio.AbstractEventLoop | None
) -> _Call[T] | None:
    """``work`` started on ``home``; ``None`` when ``home`` is not running or did not start
    it within :data:`HOME_START_WAIT` (and never will)."""
    if home is None or not home.is_running():
        return None
    call = _Call(work, home)
    return call if call.starts_within(HOME_START_WAIT) else None


def _settle(outcome: concurrent.futures.Future[T], task: asyncio.Task[T]) -> None:
    """Hand a finished task's outcome to the thread waiting for it."""
    if task.cancelled():
        outcome.cancel()
    elif (exc := task.exception()) is not None:
        outcome.set_exception(exc)
    else:
        outcome.set_result(task.result())
