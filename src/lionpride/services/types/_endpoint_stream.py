"""One attempt at a stream, up to its first chunk: the part of :meth:`Endpoint.stream
<lionpride.services.types.endpoint.Endpoint.stream>` that is retried.

Until a chunk has reached the caller nothing is lost by starting over, so an attempt is open
plus read-until-first-chunk, run under the endpoint's retry and breaker like a call. What comes
after the first chunk is read by ``Endpoint.stream`` itself and is never retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import aiohttp

from lionpride import errors
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.streaming.sse import SSEDecoder, SSEEvent
from lionpride.services.types.backend import NormalizedResponse

if TYPE_CHECKING:
    from lionpride.services.types.endpoint import Endpoint

__all__ = [
    "LiveStream",
    "StreamAssembler",
    "closed_during",
    "connection_error",
    "read_error",
    "start_stream",
]


class StreamAssembler:
    """Turns a provider's SSE events into chunks and, at the end, one response.

    Providers subclass it: ``feed`` gets every decoded event in order and returns the chunks
    to yield (usually zero or one); ``finish`` returns the assembled response. An error
    found inside the stream is raised from ``feed``.
    """

    def feed(self, event: SSEEvent) -> list[StreamChunk]:
        """Consume one event."""
        raise NotImplementedError

    def finish(self) -> NormalizedResponse:
        """Return the assembled response once the stream ended."""
        raise NotImplementedError

    @property
    def done(self) -> bool:
        """True once the provider signalled the end of the stream."""
        return False


class LiveStream:
    """A stream past its first chunk (or its end): the response, decoder and assembler,
    the first chunk's chunks and the events read after it, or the assembled response of a
    stream that ended with no content."""

    __slots__ = ("assembler", "decoder", "first", "opened", "pending", "resp", "response")

    def __init__(
        self, resp: aiohttp.ClientResponse, assembler: StreamAssembler, opened: int
    ) -> None:
        self.resp = resp
        self.assembler = assembler
        self.decoder = SSEDecoder()
        #: ``aclose`` calls when the attempt began: a read cut by a later one says so.
        self.opened = opened
        self.first: list[StreamChunk] = []
        self.pending: Iterator[SSEEvent] = iter(())
        self.response: NormalizedResponse | None = None


async def start_stream(
    ep: Endpoint,
    payload: dict[str, Any],
    extra_headers: dict[str, str] | None,
    deadline: float,
    idle: float,
) -> LiveStream:
    """One attempt: open the stream and read it up to its first chunk (or its end).

    Nothing has reached the caller yet, so every failure here may be retried: a reset,
    an error event, a body that ends before any content, or no content (keep-alive
    comments and pings are none) for ``idle`` seconds or until the call's deadline,
    whichever comes first. A failed attempt's response is closed before its error leaves.
    """
    assembler = ep.stream_assembler(payload)  # fresh: a failed attempt fed its own
    rt = ep._rt
    opened = rt.closes
    resp = await ep._open_stream(payload, extra_headers, deadline)
    try:
        live = LiveStream(resp, assembler, opened)
        loop = asyncio.get_running_loop()
        rt.streams[resp] = loop  # aclose cuts it
        wait = max(0.0, min(idle, deadline - float(rt.clock.now())))
        until = loop.time() + wait
        while not assembler.done:
            try:
                async with asyncio.timeout_at(until):
                    data = await resp.content.readany()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise read_error(ep, exc, opened, wait) from exc
            if not data:
                live.decoder.flush()
                break
            # Events after the first chunk's are left for the caller's loop, in order.
            live.pending = iter(live.decoder.feed(data))
            for event in live.pending:
                live.first = ep._shaped(assembler.feed, event)
                if live.first:
                    return live
        # Ended before any content: a stream cut short fails here, where it is retried.
        live.response = ep._shaped(assembler.finish)
    except BaseException:
        rt.streams.pop(resp, None)
        resp.close()
        raise
    return live


def read_error(
    ep: Endpoint, exc: BaseException, opened: int, waited: float
) -> errors.LionprideError:
    """A failed read of a stream's body as a typed error (``opened``: the count of
    ``aclose`` calls when the attempt began)."""
    if isinstance(exc, TimeoutError):
        return errors.TimeoutError(
            f"{ep.name}: stream idle (no content) for more than {waited:.3g}s"
        )
    if ep._rt.closes != opened:
        return closed_during(ep.name, exc)
    return connection_error(ep.name, exc)


def closed_during(name: str, error: BaseException | None) -> errors.ExecutionError:
    """The error of a call cut by its endpoint's ``aclose`` (never retried)."""
    return errors.ExecutionError(
        f"{name} was closed (aclose) during the call", retryable=False, cause=error
    )


def connection_error(name: str, exc: BaseException) -> errors.ConnectionError:
    """A transport failure as the library's (retryable) ``ConnectionError``."""
    return errors.ConnectionError(f"{name}: {type(exc).__name__}: {exc}".rstrip(": "))
