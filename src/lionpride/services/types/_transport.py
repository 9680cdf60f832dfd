"""The HTTP transport an :class:`~lionpride.services.types.endpoint.Endpoint` holds.

How bytes move, apart from what they mean: pooled sessions, one attempt at a call
(:meth:`HTTPTransport.send`), opening a stream (:meth:`HTTPTransport.open`) and the one loop
that reads a stream's body (:meth:`LiveStream.next_chunks`). Each runs once per attempt (the
read loop also after a stream's first chunk, for the rest of the body); the endpoint's retry
loop runs them. Transport failures are translated here, once, into the tree of
:mod:`lionpride.errors`; an error status is typed by the endpoint (``status_error``) and
reported here to the limit watch.

Sessions: an endpoint may be used from several event loops, one after another
(``asyncio.run`` twice) or at once (a model shared by threads). Each loop gets its own
``aiohttp.ClientSession``, made there on first use. A session is closed when its loop has gone
(on that loop if it still runs, directly if it has closed) and never while its loop is running
calls in another thread. The session used last is kept apart from the others, with its loop
and the process it was made in, so that the common case (the same loop again) is answered
without ``asyncio.get_running_loop()``, which on Python 3.11 makes a ``getpid()`` system call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.services.streaming.sse import SSEDecoder
from lionpride.services.types._json_wire import json_loads
from lionpride.services.utilities.adaptive import NO_MARK, LimitWatch, Mark
from lionpride.services.utilities.loops import runs_here

if TYPE_CHECKING:
    from lionpride.services.streaming.channel import StreamChunk
    from lionpride.services.types.endpoint import Endpoint, StreamAssembler
    from lionpride.services.types.response import NormalizedResponse

__all__ = [
    "Current",
    "HTTPTransport",
    "LiveStream",
    "closed_during",
    "connection_error",
]


class Current(NamedTuple):
    """The session used last, its loop and the process it was made in: one object, so a
    thread never reads one session with another's loop."""

    session: aiohttp.ClientSession
    loop: asyncio.AbstractEventLoop
    pid: int


class HTTPTransport:
    """An endpoint's HTTP transport: its sessions, attempts and stream reads; never serialized.

    Attributes:
        current: The session used last, with its loop and process (``None`` before use).
        others: Sessions of other loops that were still running when the endpoint moved on.
        streams: Streaming responses being read, and their loops: ``aclose`` cuts them.
        timeout: The last attempt's ``ClientTimeout``, shared by attempts with as much time
            left.
        clock: The time source of deadlines and backoff (tests put a fake clock here).
        closes: How many times ``aclose`` ran: a call that began before a close is not
            retried.
        watch: Told of every HTTP attempt and its answer, to learn the provider's limits.
    """

    __slots__ = ("clock", "closes", "current", "lock", "others", "streams", "timeout", "watch")

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.current: Current | None = None
        self.others: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        #: Held while the sessions change hands (threads may switch loops at once).
        self.lock = threading.Lock()
        self.streams: dict[aiohttp.ClientResponse, asyncio.AbstractEventLoop] = {}
        self.timeout: aiohttp.ClientTimeout | None = None
        self.clock = clock
        self.closes = 0
        self.watch: LimitWatch | None = None

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session used last, if any."""
        current = self.current
        return current.session if current is not None else None

    def fresh(self) -> HTTPTransport:
        """The transport of a copy of the endpoint: its own sessions, the same clock."""
        return HTTPTransport(self.clock)

    # -- one attempt -----------------------------------------------------------------------

    async def send(
        self,
        ep: Endpoint,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        deadline: float,
        opened: int,
    ) -> Any:
        """One HTTP attempt of a call: send ``body``, read the whole answer as JSON. Once per
        attempt.

        ``opened`` is the count of ``aclose`` calls when the call began: a call whose
        endpoint was closed under it is not retried (a retry would open a new session that
        nothing closes) and fails with ``ExecutionError``.

        Raises:
            lionpride.errors.APIStatusError: An error status, typed by ``ep.status_error``.
            lionpride.errors.InvalidResponseError: A success whose body is empty or not JSON.
            lionpride.errors.TimeoutError: No complete answer by ``deadline``.
            lionpride.errors.ConnectionError: The request or its answer failed on the way.
            lionpride.errors.ExecutionError: The endpoint was closed during the call.
        """
        if self.closes != opened:
            raise closed_during(ep.name, None)
        cfg = ep.config
        timeout = self._timeout(ep, deadline)
        watch = self.watch
        mark = watch.sent() if watch is not None else NO_MARK
        try:
            async with self._session(cfg.client_kwargs).request(
                cfg.method, url, data=body, headers=headers, timeout=timeout
            ) as resp:
                ok = 200 <= resp.status < 300
                if ok and watch is not None:
                    watch.answered(resp.headers, mark, False)
                data = await resp.read()
                if not ok:
                    raise self._error_answer(ep, resp, data, mark)
        except Exception as exc:
            error = self._failure(ep.name, exc, mark, opened, timeout)
            if error is exc:
                raise
            raise error from exc
        return self._json(ep, data)

    @staticmethod
    def _json(ep: Endpoint, data: bytes) -> Any:
        """A success's body decoded; an empty body or one that is not JSON is an error."""
        if not data:
            raise errors.InvalidResponseError(
                f"{ep.name}: empty response body", status_code=200, provider=ep.provider
            )
        try:
            return json_loads(data)
        except ValueError as exc:
            raise errors.InvalidResponseError(
                f"{ep.name}: response body is not JSON: {data[:200]!r}",
                status_code=200,
                body=data[:_SHOWN_BODY].decode("utf-8", "replace"),
                provider=ep.provider,
            ) from exc

    async def open(
        self,
        ep: Endpoint,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        deadline: float,
        opened: int,
    ) -> aiohttp.ClientResponse:
        """Connect a stream and check its status and content type. Once per attempt.

        An error status, or a body that is not an event stream, is read (within the same
        deadline: a server may send the headers and stall) and raised as a typed error.
        ``opened``: as for :meth:`send`.
        """
        if self.closes != opened:
            raise closed_during(ep.name, None)
        cfg = ep.config
        remaining = self._timeout(ep, deadline)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=remaining.connect, sock_connect=remaining.connect
        )
        watch = self.watch
        mark = watch.sent() if watch is not None else NO_MARK
        try:
            # asyncio.timeout, not wait_for: no extra task, and (on 3.11) no lost cancellation
            # when the response lands as the caller is cancelled.
            async with asyncio.timeout(remaining.total) as scope:
                resp = await self._session(cfg.client_kwargs).request(
                    cfg.method, url, data=body, headers=headers, timeout=timeout
                )
        except Exception as exc:
            error = self._failure(ep.name, exc, mark, opened, None)
            if error is exc:
                raise
            raise error from exc
        ok = 200 <= resp.status < 300
        if ok and resp.content_type not in _NOT_EVENT_STREAMS:
            if watch is not None:
                watch.answered(resp.headers, mark, False)
            return resp
        try:
            async with asyncio.timeout_at(scope.when()):
                data = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            data = b""  # the status (or the content type) alone still says what went wrong
        finally:
            resp.release()
        if not ok:
            raise self._error_answer(ep, resp, data, mark)
        # A page or a whole JSON body where events were asked for (a proxy's login page, a
        # server that ignores ``stream``): read as events, it would end empty and pass for a
        # stream cut short.
        raise errors.InvalidResponseError(
            f"{ep.name}: expected an event stream, got {resp.content_type}: {data[:200]!r}",
            status_code=resp.status,
            body=data[:_SHOWN_BODY].decode("utf-8", "replace"),
            provider=ep.provider,
        )

    def _error_answer(
        self, ep: Endpoint, resp: aiohttp.ClientResponse, data: bytes, mark: Mark
    ) -> errors.APIStatusError:
        """The endpoint's typed error of an error status, reported to the limit watch (with
        the attempt's ``mark``) as a 429 that a wait cures or as an answer that says nothing
        of the rate."""
        error = ep.status_error(resp.status, resp.headers, data)
        watch = self.watch
        if watch is not None:
            throttled = isinstance(error, errors.RateLimitError) and error.retryable
            watch.answered(resp.headers, mark, True if throttled else None)
        return error

    def _failure(
        self,
        name: str,
        exc: Exception,
        mark: Mark,
        opened: int,
        timeout: aiohttp.ClientTimeout | None,
    ) -> Exception:
        """A failed attempt's error: a transport failure translated (and reported to the
        limit watch as an attempt with no answer), an ``aclose`` during the call said so;
        any other error unchanged. ``timeout`` is a call's (``None`` for a stream's start).
        """
        # A typed error (an error status) was translated and reported already.
        known = not isinstance(exc, errors.LionprideError) and isinstance(
            exc, TimeoutError | aiohttp.ClientError | OSError
        )
        if known and self.watch is not None:
            self.watch.answered(_NO_HEADERS, mark, None)  # the first call may not hold the rest
        if self.closes != opened:
            return closed_during(name, exc)
        if not known:
            return exc
        if not isinstance(exc, TimeoutError):
            return connection_error(name, exc)
        if timeout is None:
            return errors.TimeoutError(f"{name}: stream did not start in time")
        return errors.TimeoutError(f"{name}: no complete response within {timeout.total:.3g}s")

    def _timeout(self, ep: Endpoint, deadline: float) -> aiohttp.ClientTimeout:
        """The attempt's ``ClientTimeout``: what is left of the call's deadline.

        Raises:
            lionpride.errors.TimeoutError: The deadline has passed.
        """
        remaining = deadline - float(self.clock.now())
        if remaining <= 0:
            raise errors.TimeoutError(f"{ep.name}: deadline passed before the request was sent")
        last = self.timeout
        if last is not None and 0.0 <= remaining - last.total < _SAME_TIMEOUT:  # type: ignore[operator]
            # Calls with as much time left share one object (first attempts, mostly); a
            # shared total is never more than the time left, at most 1 ms less.
            return last
        self.timeout = aiohttp.ClientTimeout(
            total=remaining, connect=min(ep.config.connect_timeout, remaining)
        )
        return self.timeout

    # -- sessions --------------------------------------------------------------------------

    def _session(self, client_kwargs: Mapping[str, Any]) -> aiohttp.ClientSession:
        current = self.current  # one read: session, loop and pid belong together
        if (
            current is not None
            and current.pid == Process.pid
            and runs_here(current.loop)
            and not current.session.closed
        ):
            return current.session  # the loop running here is the one used last (usual)
        return self.switch(client_kwargs)

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


@dataclass(slots=True, eq=False)
class LiveStream:
    """One streaming response being read, and the one loop that reads its body.

    :meth:`next_chunks` reads for the first chunk inside an attempt (where a failure is still
    retried) and for every later chunk after it, the same way: the bytes of each read go
    through the SSE decoder and the provider's assembler. Registered with the transport while
    it is read, so that ``aclose`` cuts it; :meth:`close` ends it.

    Attributes:
        transport: The transport that opened it.
        resp: The response.
        assembler: The provider's assembler, fresh for this attempt.
        shaped: Runs a parser of provider data, typing data of the wrong shape (the
            endpoint's ``_shaped``).
        name: The endpoint's name, for errors.
        opened: ``aclose`` calls when the call began: a read cut by a later one says so.
        idle: Seconds the stream may go without content once a chunk went out.
        waited: Seconds the current read may wait: first ``wait`` (the idle time or what is
            left of the call's deadline), then ``idle``.
    """

    transport: HTTPTransport
    resp: aiohttp.ClientResponse
    assembler: StreamAssembler
    shaped: Callable[..., Any]
    name: str
    opened: int
    idle: float
    waited: float
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    until: float = 0.0
    restart: bool = False
    ended: bool = False
    #: An error that followed chunks of the same read: raised by the next read.
    error: BaseException | None = None
    #: The first chunks, and the response of a stream that ended without any.
    first: list[StreamChunk] = field(default_factory=list)
    response: NormalizedResponse | None = None

    def __post_init__(self) -> None:
        self.transport.streams[self.resp] = self.loop  # aclose cuts it
        self.until = self.loop.time() + self.waited

    async def next_chunks(self) -> list[StreamChunk]:
        """The chunks of the next read that brings any; ``[]`` once the stream has ended.

        Keep-alive comments and pings bring none, so they do not count against the idle
        time; the caller's own time between reads is not counted either. A failure that
        follows chunks of the same read is raised by the next call, after those chunks went
        out, as it would have been had they come in reads of their own.

        Raises:
            lionpride.errors.TimeoutError: No content within the idle time.
            lionpride.errors.ConnectionError: The body's read failed.
            lionpride.errors.ExecutionError: The endpoint was closed (``aclose``) meanwhile.
        """
        error = self.error
        if error is not None:
            self.error = None
            raise error
        if self.restart:  # content went out: the silence starts again from here
            self.until, self.waited = self.loop.time() + self.idle, self.idle
        chunks: list[StreamChunk] = []
        assembler, decoder, shaped = self.assembler, self.decoder, self.shaped
        while not chunks and not self.ended and not assembler.done:
            try:
                async with asyncio.timeout_at(self.until):
                    data = await self.resp.content.readany()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise self._read_error(exc) from exc
            if not data:
                decoder.flush()
                self.ended = True
                break
            for event in decoder.feed(data):
                try:
                    chunks += shaped(assembler.feed, event)
                except Exception as exc:
                    if not chunks:
                        raise
                    self.error = exc
                    break
        self.restart = bool(chunks)
        return chunks

    def close(self) -> None:
        """Stop reading: the response is closed and no longer cut by ``aclose``."""
        self.transport.streams.pop(self.resp, None)
        self.resp.close()

    def _read_error(self, exc: BaseException) -> errors.LionprideError:
        if isinstance(exc, TimeoutError):
            return errors.TimeoutError(
                f"{self.name}: stream idle (no content) for more than {self.waited:.3g}s"
            )
        if self.transport.closes != self.opened:
            return closed_during(self.name, exc)
        return connection_error(self.name, exc)


def closed_during(name: str, error: BaseException | None) -> errors.ExecutionError:
    """The error of a call cut by its endpoint's ``aclose`` (never retried)."""
    return errors.ExecutionError(
        f"{name} was closed (aclose) during the call", retryable=False, cause=error
    )


def connection_error(name: str, exc: BaseException) -> errors.ConnectionError:
    """A transport failure as the library's (retryable) ``ConnectionError``."""
    return errors.ConnectionError(f"{name}: {type(exc).__name__}: {exc}".rstrip(": "))


#: Seconds by which an attempt's time left may exceed a shared ``ClientTimeout``'s total.
_SAME_TIMEOUT = 1e-3

#: Content types that are surely not an event stream. Others (missing, ``text/plain``...) are
#: read as events: servers label their streams loosely.
_NOT_EVENT_STREAMS = frozenset({"application/json", "text/html"})

#: The headers of an attempt that got no answer.
_NO_HEADERS: Mapping[str, str] = {}

#: Bytes of a body that could not be read as a response (not JSON, not events) kept on the error.
_SHOWN_BODY = 2000


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
