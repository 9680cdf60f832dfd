"""Which event loop runs this code, told without a system call.

``asyncio.get_running_loop()`` makes a ``getpid()`` system call on Python 3.11 each time; the
learned limits and the HTTP session cache ask on every call, so they ask :func:`runs_here`.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["runs_here"]


def runs_here(loop: asyncio.AbstractEventLoop | None) -> bool:
    """Whether ``loop`` is the event loop running this code.

    A running loop records the thread that runs it, and a thread runs one loop at a time. A
    forked child's copy of a running loop does not run; a caller that may be forked tells
    that case by the pid it recorded itself.
    """
    return loop is not None and getattr(loop, "_thread_id", None) == threading.get_ident()
