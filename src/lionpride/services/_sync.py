"""Blocking calls for scripts and notebooks: one private event loop per thread, reused.

A model's ``invoke_sync`` runs ``invoke`` on an :class:`asyncio.Runner` that belongs to the
model and to the calling thread. The runner (and its loop) stays for the thread's next sync
call, so the endpoint's session, which is per loop, keeps its pooled connections from one
call to the next; limits, retries and the breaker are the model's own, as for ``invoke``.
On the main thread, Ctrl-C cancels the running call (its capacity is given back) and raises
``KeyboardInterrupt``, as ``asyncio.run`` does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from lionpride import errors

__all__ = ["SyncLoops", "refuse_in_loop"]

T = TypeVar("T")


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


class SyncLoops:
    """A model's private event loops, one per thread that made a blocking call."""

    __slots__ = ("_lock", "_runners")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: thread id → its runner; a closed one is replaced on the thread's next call.
        self._runners: dict[int, asyncio.Runner] = {}

    def run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``work()`` to completion on this thread's loop (made on first use).

        The caller has checked that no loop runs in this thread (:func:`refuse_in_loop`).
        """
        thread = threading.get_ident()
        with self._lock:
            runner = self._runners.get(thread)
            if runner is None:
                runner = self._runners[thread] = asyncio.Runner()
        return runner.run(work())

    def close(self) -> None:
        """Close every loop not running a call now (blocking: from sync code only).

        A loop running a call in another thread is left to that thread's next ``close``.
        """
        with self._lock:
            idle = {t: r for t, r in self._runners.items() if not r.get_loop().is_running()}
            for thread in idle:
                del self._runners[thread]
        for runner in idle.values():
            runner.close()

    def close_quiet(self) -> None:
        """Close the loops with nothing left on them, from async code (``aclose``).

        A running loop cannot run another, so ``Runner.close`` (which runs the loop to end
        its tasks) is out of reach here; a loop that is idle and holds no task is closed
        directly, which is all ``Runner.close`` would do. The others wait for
        :meth:`close`.
        """
        with self._lock:
            quiet = {}
            for thread, runner in self._runners.items():
                loop = runner.get_loop()
                if not loop.is_running() and not asyncio.all_tasks(loop):
                    quiet[thread] = loop
            for thread in quiet:
                del self._runners[thread]
        for loop in quiet.values():
            loop.close()
