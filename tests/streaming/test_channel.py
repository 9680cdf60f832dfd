"""Tests for StreamChunk and the fan-out StreamChannel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from lionpride.services.streaming import StreamChannel, StreamChunk
from lionpride.services.types.response import NormalizedResponse

FINAL = NormalizedResponse(data="Hello world", finish_reason="stop")


class Source:
    """A chunk source built as an async generator that records whether its cleanup ran."""

    def __init__(self, texts: list[str], *, final: bool = True) -> None:
        """Prepare to yield one chunk per text, then a final chunk when ``final``."""
        self.texts = texts
        self.final = final
        self.pulled = 0
        self.closed = asyncio.Event()

    async def stream(self) -> AsyncIterator[StreamChunk]:
        """Yield the chunks; set ``closed`` however the generator ends."""
        try:
            for index, text in enumerate(self.texts):
                self.pulled += 1
                yield StreamChunk(content=text, index=index)
            if self.final:
                yield StreamChunk(index=len(self.texts), is_final=True, response=FINAL)
        finally:
            self.closed.set()


async def failing_stream() -> AsyncIterator[StreamChunk]:
    """Yield one chunk, then fail the way a stream error from the provider would."""
    yield StreamChunk(content="a")
    raise RuntimeError("provider error")


def test_chunk_str_is_its_content() -> None:
    """``str(chunk)`` is the text delta, so printing chunks prints the stream."""
    chunk = StreamChunk(content="Hi", reasoning="thinking", metadata={"event": "x"})
    assert str(chunk) == "Hi"
    assert f"{chunk}{StreamChunk(content='!')}" == "Hi!"


def test_chunk_defaults() -> None:
    """A bare chunk is empty, not final, and owns a fresh metadata dict."""
    first, second = StreamChunk(), StreamChunk()
    first.metadata["k"] = 1
    assert second.metadata == {}
    assert (second.content, second.index, second.is_final) == ("", 0, False)
    assert second.tool_call_delta is None and second.response is None


async def test_iteration_yields_records_and_completes() -> None:
    """Iterating yields every chunk and leaves text, buffer, completion and response behind."""
    source = Source(["Hello", " ", "world"])
    channel = StreamChannel(source.stream())
    assert not channel.is_completed and channel.response is None
    seen = [chunk.content async for chunk in channel]
    assert seen == ["Hello", " ", "world", ""]
    assert channel.get_accumulated() == "Hello world"
    assert [c.index for c in channel.get_buffer()] == [0, 1, 2, 3]
    assert channel.is_completed
    assert channel.response is FINAL
    assert source.closed.is_set()


async def test_get_buffer_returns_a_copy() -> None:
    """Changing the returned buffer does not change the channel's record."""
    channel = StreamChannel(Source(["a"]).stream())
    await channel.drain()
    channel.get_buffer().clear()
    assert len(channel.get_buffer()) == 2


async def test_response_is_none_without_final_chunk() -> None:
    """A stream without a response-carrying chunk completes with ``response`` None."""
    channel = StreamChannel(Source(["a", "b"], final=False).stream())
    assert await channel.drain() is None
    assert channel.is_completed and channel.get_accumulated() == "ab"


async def test_sync_and_async_consumers_run_in_order_before_yield() -> None:
    """Consumers see each chunk in registration order, async ones awaited, before the caller."""
    calls: list[str] = []

    def first(chunk: StreamChunk) -> None:
        calls.append(f"sync1:{chunk.content}")

    async def second(chunk: StreamChunk) -> None:
        await asyncio.sleep(0)
        calls.append(f"async:{chunk.content}")

    channel = StreamChannel(Source(["a", "b"], final=False).stream())
    channel.add_consumer(first)
    channel.add_consumer(second)
    channel.add_consumer(lambda chunk: calls.append(f"sync2:{chunk.content}"))
    async for chunk in channel:
        calls.append(f"caller:{chunk.content}")
    assert calls == [
        "sync1:a",
        "async:a",
        "sync2:a",
        "caller:a",
        "sync1:b",
        "async:b",
        "sync2:b",
        "caller:b",
    ]


async def test_remove_consumer() -> None:
    """A removed consumer gets no more chunks; removing an unknown one returns False."""
    seen: list[StreamChunk] = []
    channel = StreamChannel(Source(["a", "b"], final=False).stream())
    channel.add_consumer(seen.append)
    async for chunk in channel:
        assert channel.remove_consumer(seen.append) is (chunk.content == "a")
    assert seen == [StreamChunk(content="a", index=0)]
    assert channel.remove_consumer(print) is False


async def test_consumer_may_remove_itself() -> None:
    """A consumer unregistering itself mid-call does not make the next consumer miss the chunk."""
    once: list[str] = []
    every: list[str] = []
    channel = StreamChannel(Source(["a", "b"], final=False).stream())

    def one_shot(chunk: StreamChunk) -> None:
        once.append(chunk.content)
        channel.remove_consumer(one_shot)

    channel.add_consumer(one_shot)
    channel.add_consumer(lambda chunk: every.append(chunk.content))
    await channel.drain()
    assert (once, every) == (["a"], ["a", "b"])


async def test_failing_consumer_is_logged_and_isolated(caplog: pytest.LogCaptureFixture) -> None:
    """A consumer that raises is logged; the others and the stream go on."""
    seen: list[str] = []

    def broken(chunk: StreamChunk) -> None:
        raise ValueError(f"bad chunk {chunk.content}")

    async def broken_async(chunk: StreamChunk) -> None:
        raise KeyError(chunk.content)

    channel = StreamChannel(Source(["a", "b"]).stream())
    channel.add_consumer(broken)
    channel.add_consumer(broken_async)
    channel.add_consumer(lambda chunk: seen.append(chunk.content))
    with caplog.at_level(logging.ERROR, logger="lionpride.streaming"):
        response = await channel.drain()
    assert seen == ["a", "b", ""]
    assert response is FINAL and channel.is_completed
    records = [r for r in caplog.records if r.name == "lionpride.streaming"]
    assert len(records) == 6
    assert records[0].exc_info is not None and records[0].exc_info[0] is ValueError
    assert records[1].exc_info is not None and records[1].exc_info[0] is KeyError


async def test_strict_propagates_consumer_error_and_closes_source() -> None:
    """With strict=True a consumer's exception stops the stream and reaches the caller."""
    source = Source(["a", "b"])
    channel = StreamChannel(source.stream(), strict=True)

    def broken(chunk: StreamChunk) -> None:
        raise ValueError("strict")

    channel.add_consumer(broken)
    with pytest.raises(ValueError, match="strict"):
        await channel.drain()
    assert source.closed.is_set()
    assert not channel.is_completed
    assert source.pulled == 1


async def test_source_error_propagates() -> None:
    """An exception from the source reaches the caller and the channel is not completed."""
    channel = StreamChannel(failing_stream())
    with pytest.raises(RuntimeError, match="provider error"):
        async for _ in channel:
            pass
    assert not channel.is_completed
    assert channel.get_accumulated() == "a"


async def test_context_manager_closes_source_on_early_exit() -> None:
    """Leaving ``async with`` after a break closes the source at once."""
    source = Source(["a", "b", "c"])
    async with StreamChannel(source.stream()) as channel:
        async for _ in channel:
            break
    assert source.closed.is_set()
    assert source.pulled == 1
    assert not channel.is_completed


async def test_bare_break_closes_source() -> None:
    """Breaking out of ``async for`` without ``async with`` still runs the source's cleanup."""
    source = Source(["a", "b", "c"])
    channel = StreamChannel(source.stream())
    async for _ in channel:
        break
    # asyncio finalizes the abandoned iterator on its next loop iterations.
    await asyncio.wait_for(source.closed.wait(), timeout=5)
    assert source.pulled == 1
    assert not channel.is_completed


async def test_aclose_stops_a_live_iteration_without_completing() -> None:
    """aclose() during iteration ends the stream and leaves is_completed False."""
    source = Source(["a", "b", "c"])
    channel = StreamChannel(source.stream())
    seen = []
    async for chunk in channel:
        seen.append(chunk.content)
        await channel.aclose()
    assert seen == ["a"]
    assert source.closed.is_set()
    assert not channel.is_completed
    await channel.aclose()


async def test_channel_is_single_use() -> None:
    """A second iteration or drain yields nothing new and keeps the first run's record."""
    source = Source(["a", "b"])
    channel = StreamChannel(source.stream())
    assert await channel.drain() is FINAL
    assert [chunk async for chunk in channel] == []
    assert await channel.drain() is FINAL
    assert channel.get_accumulated() == "ab"
    assert len(channel.get_buffer()) == 3


async def test_second_iterator_during_first_yields_nothing() -> None:
    """A second iterator opened while the first is live gets nothing; the first gets all."""
    channel = StreamChannel(Source(["a", "b"]).stream())
    first = aiter(channel)
    assert (await anext(first)).content == "a"
    assert [chunk async for chunk in channel] == []
    assert [chunk.content async for chunk in first] == ["b", ""]
    assert channel.is_completed


async def test_drain_feeds_consumers_and_returns_response() -> None:
    """drain() runs the stream for the consumers alone and returns the final response."""
    printed: list[str] = []
    channel = StreamChannel(Source(["Hello", " world"]).stream())
    channel.add_consumer(lambda chunk: printed.append(str(chunk)))
    assert await channel.drain() is FINAL
    assert "".join(printed) == "Hello world"
    assert channel.is_completed


async def test_drain_cancelled_closes_source() -> None:
    """Cancelling drain() closes the source and propagates the cancellation."""
    gate = asyncio.Event()
    source = Source(["a", "b"])

    async def wait_forever(chunk: StreamChunk) -> None:
        gate.set()
        await asyncio.Event().wait()

    channel = StreamChannel(source.stream())
    channel.add_consumer(wait_forever)
    task = asyncio.create_task(channel.drain())
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.closed.is_set()
    assert not channel.is_completed
