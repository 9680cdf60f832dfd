"""Stream chunks and the channel that fans one stream out to many consumers (DESIGN D4).

A :class:`StreamChunk` is what ``invoke_stream`` yields: decoded text, never raw SSE, with
reasoning and tool-call deltas in fields of their own; the last chunk has ``is_final=True``
and carries the assembled :class:`~lionpride.services.types.response.NormalizedResponse`.

A :class:`StreamChannel` wraps such a stream. Iterating it (or calling :meth:`drain`) pulls
each chunk from the source, records it, hands it to every consumer in registration order,
and then yields it::

    async with StreamChannel(model.invoke_stream(**request)) as channel:
        channel.add_consumer(lambda chunk: print(chunk, end=""))
        response = await channel.drain()
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lionpride.core.resource import AsyncResource

if TYPE_CHECKING:
    # Only for annotations: importing ``services.types`` at run time would be circular, since
    # the endpoint module there imports this one (streaming stands below the providers).
    from lionpride.services.types.response import NormalizedResponse

__all__ = ["StreamChannel", "StreamChunk"]

logger = logging.getLogger("lionpride.streaming")

Consumer = Callable[["StreamChunk"], Any]


@dataclass(slots=True)
class StreamChunk:
    """One piece of a streamed response, already decoded from the provider's wire format.

    Attributes:
        content: The text delta of this chunk (``""`` when it carries none).
        index: Position of the chunk in its stream, from 0.
        is_final: True on the last chunk, the one that carries ``response``.
        metadata: Provider details, e.g. ``{"event": "content_block_delta"}``.
        reasoning: The reasoning or thinking text delta of this chunk.
        tool_call_delta: A fragment of a tool call, e.g. ``{"index": 0, "id": ...,
            "name": ..., "arguments": "<json fragment>"}``.
        response: The assembled response; set on the final chunk only.
    """

    content: str = ""
    index: int = 0
    is_final: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    reasoning: str = ""
    tool_call_delta: dict[str, Any] | None = None
    response: NormalizedResponse | None = None

    def __str__(self) -> str:
        """Return the text delta, so ``print(chunk, end="")`` prints the stream as it comes."""
        return self.content


class StreamChannel(AsyncResource):
    """Fan a stream of :class:`StreamChunk` objects out to consumers while recording it.

    Consumers are sync or async callables taking a chunk. They run in registration order
    before the chunk is yielded; async ones are awaited one after another. A consumer that
    raises is logged on the ``lionpride.streaming`` logger and skipped for that chunk, and the
    other consumers and the stream go on; with ``strict=True`` the exception propagates
    instead and the stream stops. Errors raised by the source itself always propagate.

    A channel is single-use: the source is read once, and iterating the channel again (or
    after :meth:`drain`) yields nothing new; the recorded chunks stay available through
    :meth:`get_buffer`.

    Leaving early closes the source (and with it the HTTP response): leaving ``async with
    channel`` and :meth:`aclose` do it at once; a bare ``break`` out of ``async for`` does it
    when the event loop finalizes the abandoned iterator, which asyncio schedules right away.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_completed",
        "_consumers",
        "_parts",
        "_response",
        "_source",
        "_started",
        "_strict",
    )

    def __init__(self, source: AsyncIterator[StreamChunk], *, strict: bool = False) -> None:
        """Wrap ``source``; nothing is read until the channel is iterated or drained.

        Args:
            source: The chunk stream, usually ``iModel.invoke_stream(...)``.
            strict: Let a consumer's exception propagate instead of logging it.
        """
        self._source = source
        self._strict = strict
        self._consumers: list[Consumer] = []
        self._buffer: list[StreamChunk] = []
        self._parts: list[str] = []
        self._response: NormalizedResponse | None = None
        self._started = False
        self._completed = False
        self._closed = False

    def add_consumer(self, consumer: Consumer) -> None:
        """Register a sync or async callable to receive every following chunk."""
        self._consumers.append(consumer)

    def remove_consumer(self, consumer: Consumer) -> bool:
        """Unregister ``consumer``; return False when it was not registered."""
        try:
            self._consumers.remove(consumer)
        except ValueError:
            return False
        return True

    @property
    def is_completed(self) -> bool:
        """True once the source ended normally (not when it failed or was closed early)."""
        return self._completed

    @property
    def response(self) -> NormalizedResponse | None:
        """The assembled response from the final chunk, ``None`` until it arrives."""
        return self._response

    def get_accumulated(self) -> str:
        """Return the text of every chunk seen so far, joined."""
        return "".join(self._parts)

    def get_buffer(self) -> list[StreamChunk]:
        """Return a copy of the list of chunks seen so far."""
        return list(self._buffer)

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        """Return an iterator over the chunks; the second and later ones yield nothing."""
        return self._iterate()

    async def drain(self) -> NormalizedResponse | None:
        """Run the stream to its end for the consumers alone and return its response.

        Returns:
            The final chunk's response, or ``None`` if the stream had none.
        """
        async with aclosing(self._iterate()) as chunks:
            async for _ in chunks:
                pass
        return self._response

    async def aclose(self) -> None:
        """Close the source if it can be closed (async generators can); idempotent."""
        if self._closed:
            return
        self._closed = True
        close = getattr(self._source, "aclose", None)
        if close is not None:
            await close()

    async def _iterate(self) -> AsyncGenerator[StreamChunk, None]:
        """Pull, record, fan out and yield each chunk; close the source however it ends."""
        if self._started or self._closed:
            return
        self._started = True
        try:
            async for chunk in self._source:
                self._buffer.append(chunk)
                if chunk.content:
                    self._parts.append(chunk.content)
                if chunk.response is not None:
                    self._response = chunk.response
                if self._consumers:
                    await self._notify(chunk)
                yield chunk
            # A source closed under us by aclose() also just stops; that is no completion.
            self._completed = not self._closed
        finally:
            await self.aclose()

    async def _notify(self, chunk: StreamChunk) -> None:
        """Call every consumer in order, isolating each from the others' failures."""
        # A snapshot, so a consumer may add or remove consumers while being called.
        for consumer in tuple(self._consumers):
            try:
                result = consumer(chunk)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                if self._strict:
                    raise
                logger.exception("stream consumer %r failed on chunk %d", consumer, chunk.index)
