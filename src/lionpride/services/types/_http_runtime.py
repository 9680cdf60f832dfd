"""An endpoint's live state: one pooled session per event loop, and per-call caches.

An :class:`~lionpride.services.types.endpoint.Endpoint` may be used from several event loops:
one after another (``asyncio.run`` twice) or at once (a model shared by threads). Each loop
gets its own ``aiohttp.ClientSession``, made there on first use. A session is closed when
its loop has gone (on that loop if it still runs, directly if it has closed) and never
while its loop is running calls in another thread.

The session the endpoint used last is kept apart from the others, with its loop and the
process it was made in, so that the common case (the same loop again) is answered without
``asyncio.get_running_loop()``, which on Python 3.11 makes a ``getpid()`` system call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp

from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.utilities.adaptive import LimitWatch
from lionpride.services.utilities.loops import runs_here

if TYPE_CHECKING:
    from lionpride.services.types._endpoint_config import EndpointConfig

__all__ = ["UNRESOLVED", "Current", "Runtime"]

#: ``Runtime.count_text`` before the token counter was looked for.
UNRESOLVED: Any = object()


class Current(NamedTuple):
    """The session used last, its loop and the process it was made in: one object, so a
    thread never reads one session with another's loop."""

    session: aiohttp.ClientSession
    loop: asyncio.AbstractEventLoop
    pid: int


class Runtime:
    """An endpoint's live state, never serialized.

    Attributes:
        current: The session used last, with its loop and process (``None`` before use).
        others: Sessions of other loops that were still running when the endpoint moved on.
        headers: Auth and default headers, and ``headers_of`` the config they were made from.
        url: ``config.full_url``, and ``url_of`` the config it was read from.
        timeout: The last attempt's ``ClientTimeout``, shared by attempts with as much time
            left.
        clock: The time source of deadlines and backoff (tests put a fake clock here).
        count_text: The text token counter (tiktoken when available offline), once resolved.
        closes: How many times ``aclose`` ran: a call that began before a close is not
            retried.
        watch: Told of every HTTP attempt and its answer, to learn the provider's limits.
    """

    __slots__ = (
        "clock",
        "closes",
        "count_text",
        "current",
        "headers",
        "headers_of",
        "lock",
        "others",
        "streams",
        "timeout",
        "url",
        "url_of",
        "watch",
    )

    def __init__(self, clock: Clock = SYSTEM_CLOCK, count_text: Any = UNRESOLVED) -> None:
        self.current: Current | None = None
        self.others: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        #: Held while the sessions change hands (threads may switch loops at once).
        self.lock = threading.Lock()
        #: Streaming responses being read, and their loops: ``aclose`` cuts them.
        self.streams: dict[aiohttp.ClientResponse, asyncio.AbstractEventLoop] = {}
        self.headers: dict[str, str] | None = None
        self.headers_of: EndpointConfig | None = None
        self.url: str | None = None
        self.url_of: EndpointConfig | None = None
        self.timeout: aiohttp.ClientTimeout | None = None
        self.clock = clock
        self.count_text = count_text
        self.closes = 0
        self.watch: LimitWatch | None = None

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session used last, if any."""
        current = self.current
        return current.session if current is not None else None

    def fresh(self) -> Runtime:
        """The state for a copy of the endpoint: its own sessions and caches, same clock."""
        return Runtime(self.clock, self.count_text)

    def switch(self, client_kwargs: Mapping[str, Any]) -> aiohttp.ClientSession:
        """Make the running loop's session current (creating it on first use) and return it.

        Sessions of loops that ended are closed on the way; those of loops still running
        (in other threads) are kept for when the endpoint is used there again.
        """
        loop = asyncio.get_running_loop()
        with self.lock:
            current = self.current
            if current is not None and current.pid != Process.pid:
                # A forked child: the parent's sessions and sockets are the parent's to close.
                # Kept from the garbage collector too: closing them here (their finalizers
                # do) would take the parent's sockets out of the epoll the two processes
                # share, and the parent would wait for their answers for ever.
                _FORKED_AWAY.append((current.session, self.others))
                current, self.others = None, {}
            session = None
            if current is not None:
                if current.loop is loop:
                    session = current.session
                else:
                    self.others[current.loop] = current.session
            if session is None:
                session = self.others.pop(loop, None)
            for other_loop, other in list(self.others.items()):
                if other.closed or not other_loop.is_running():
                    del self.others[other_loop]
                    abandon(other, other_loop)
            if session is None or session.closed:
                kw = dict(client_kwargs)
                limit = int(kw.pop("limit", 1000))
                connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300)
                session = aiohttp.ClientSession(connector=connector, **kw)
            self.current = Current(session, loop, Process.pid)
        return session

    async def aclose(self) -> None:
        """Close every session: this loop's here, the others on (or without) their loops."""
        with self.lock:
            self.closes += 1
            current, sessions = self.current, dict(self.others)
            self.current, self.others = None, {}
            streams, self.streams = self.streams, {}
        for resp, loop in streams.items():
            _cut(resp, loop)
        if current is not None:
            if current.pid != Process.pid:
                return  # a forked child's copies belong to the parent
            sessions[current.loop] = current.session
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, session in sessions.items():
            if session.closed:
                continue
            if loop is here:
                await session.close()
            else:
                abandon(session, loop)


#: In a forked child, the parent's sessions, never to be closed or collected here.
_FORKED_AWAY: list[Any] = []


class Process:
    """This process's id, kept current across ``fork()`` without a system call per read."""

    pid = os.getpid()

    @classmethod
    def forked(cls) -> None:
        cls.pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=Process.forked)


def abandon(session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop | None) -> None:
    """Close a session of another event loop.

    A loop still running (in another thread) closes it itself. A loop that is not running
    closes its transports when it next runs; one that has closed never will, so their
    sockets are closed here. Either way the connector ends up closed, with nothing left open
    or left to warn about.
    """
    if loop is not None and loop.is_running():
        asyncio.run_coroutine_threadsafe(session.close(), loop)
        return
    connector = session.connector
    session.detach()
    if connector is None:
        return
    if loop is None or loop.is_closed():
        for pooled in list(getattr(connector, "_conns", {}).values()):
            for protocol, _ in pooled:
                _close_socket(getattr(protocol, "transport", None))
    with contextlib.suppress(RuntimeError):  # its loop is closed: nothing to schedule
        connector._close()


def _cut(resp: aiohttp.ClientResponse, loop: asyncio.AbstractEventLoop) -> None:
    """End a streaming response being read: its reader fails at once (closing the connection
    alone would leave it waiting for the idle timeout), on the response's own loop."""

    def cut() -> None:
        resp.content.set_exception(aiohttp.ClientConnectionError("closed by aclose"))
        resp.close()

    if runs_here(loop):
        cut()
    elif loop.is_running():
        loop.call_soon_threadsafe(cut)


def _close_socket(transport: Any) -> None:
    """Close an asyncio socket transport's socket without its (closed) event loop.

    The transport's own ``close`` schedules the socket's close on the loop, which is gone;
    its socket is closed directly instead, and dropped, as the transport itself would.
    """
    sock = getattr(transport, "_sock", None)
    if sock is not None:
        sock.close()
        transport._sock = None
