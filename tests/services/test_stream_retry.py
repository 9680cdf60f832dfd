"""Streams that fail before their first chunk reached the caller are retried (DESIGN D7).

A stream whose headers came but which is then reset, ends with no content, carries a
retryable error event, or stays silent past its idle timeout has delivered nothing, so it
is retried under the call's retry policy, breaker and deadline, like a stream that failed to
open. Once a chunk came out, nothing is retried (those cases live in
``test_fault_matrix_review.py``). Everything runs against FakeProvider over loopback;
``no_backoff()`` skips the backoff sleeps, never the decisions.
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr
from tests.services._streams import (
    BLOCK_START,
    MESSAGE_START,
    MESSAGES,
    TO_FIRST_CHUNK,
    anthropic_event,
    endpoint,
    read_stream,
    read_with_retries,
)
from tests.services.test_fault_matrix import Retries

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.core.event import EventStatus
from lionpride.services import iModel
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.utilities.resilience import (
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
    RetryConfig,
    no_backoff,
)
from lionpride.testing import FakeProvider, Reply


def assert_whole(chunks: list[StreamChunk]) -> None:
    """One complete stream: text chunks indexed from 0, then the final chunk whose
    response holds exactly their text."""
    *deltas, final = chunks
    assert deltas and all(c.content and not c.is_final for c in deltas)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert final.is_final and final.response is not None
    assert "".join(c.content for c in deltas) == final.response.data
    assert final.response.finish_reason == "stop"


async def read_retried_once(fp: FakeProvider, provider: str, reply: Reply) -> list[StreamChunk]:
    """Script ``reply`` and read one ``provider`` stream, which must come out whole after one
    retry of a ConnectionError, from two requests; return its chunks."""
    fp.script(reply)
    async with endpoint(fp, provider) as ep:
        chunks, error, observer = await read_with_retries(ep, provider)
    assert error is None
    assert_whole(chunks)
    assert observer.errors == [errors.ConnectionError]
    assert len(fp.requests) == 2
    return chunks


_PING = anthropic_event("ping")

#: Events that reach the client but give the caller no chunk.
_ANTHROPIC_HEAD = [MESSAGE_START, _PING, BLOCK_START, _PING]


def _anthropic_error(kind: str, message: str) -> str:
    return anthropic_event("error", error={"type": kind, "message": message})


# --- failures before the first chunk are retried -------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_reset_before_the_first_event_is_retried(
    provider: str, fake_provider: FakeProvider
) -> None:
    """200 and event-stream headers, then the connection drops before any event: the retry's
    stream comes out whole, once, and the server saw two requests."""
    await read_retried_once(fake_provider, provider, Reply(truncate=0))


@pytest.mark.parametrize(
    ("provider", "reply"),
    [
        # Keep-alive comments are no content.
        ("openai", Reply(chunks=[": OPENROUTER PROCESSING\n\n"] * 3, truncate=40)),
        # Anthropic's head and pings carry no chunk either.
        ("anthropic", Reply(chunks=_ANTHROPIC_HEAD, truncate=len("".join(_ANTHROPIC_HEAD)) - 5)),
    ],
    ids=["openai-keep-alives", "anthropic-head-and-pings"],
)
async def test_reset_after_events_without_content_is_retried(
    provider: str, reply: Reply, fake_provider: FakeProvider
) -> None:
    """Comments, pings and a message head reach the client but no chunk reaches the caller:
    a reset after them is retried, and the retry's stream is assembled on its own (nothing of
    the failed attempt's head leaks into it)."""
    chunks = await read_retried_once(fake_provider, provider, reply)
    assert chunks[-1].response is not None and chunks[-1].response.metadata.get("id") != "msg_1"


@pytest.mark.parametrize(
    ("provider", "reply"),
    [
        ("openai", Reply(chunks=[])),
        ("openai", Reply(chunks=[": keep-alive\n\n"])),
        ("anthropic", Reply(chunks=[MESSAGE_START, BLOCK_START])),
    ],
    ids=["openai-empty-body", "openai-only-a-comment", "anthropic-head-only"],
)
async def test_clean_end_before_any_content_is_retried(
    provider: str, reply: Reply, fake_provider: FakeProvider
) -> None:
    """A body that ends cleanly before any content (F10 before the first chunk) is a cut
    stream, and retried."""
    await read_retried_once(fake_provider, provider, reply)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(stall_after=0),
        # A proxy keeping the silent stream open with comments (10 s of them).
        Reply(chunks=[": OPENROUTER PROCESSING\n\n"] * 200, chunk_delay=0.05),
    ],
    ids=["silent", "only-keep-alives"],
)
async def test_silence_before_the_first_event_is_retried(
    reply: Reply, fake_provider: FakeProvider
) -> None:
    """Headers, then no content for longer than the idle timeout: the attempt ends with
    TimeoutError and is retried. The pool holds one connection, so the retry only gets
    through because the failed attempt's response was closed at once."""
    fake_provider.script(reply)
    async with endpoint(fake_provider, client_kwargs={"limit": 1}) as ep:
        chunks, error, observer = await read_with_retries(ep, idle_timeout=0.3, timeout=15)
    assert error is None
    assert_whole(chunks)
    assert observer.errors == [errors.TimeoutError]
    assert "idle" in str(observer.seen[0][1])
    assert len(fake_provider.requests) == 2


async def test_retryable_error_event_before_content_is_retried(
    fake_provider: FakeProvider,
) -> None:
    """Anthropic's overloaded_error inside the 200 stream, before any content, is retried
    like a 529; an invalid-request error event is not retryable and raised at once."""
    fake_provider.script(
        Reply(chunks=[MESSAGE_START, _anthropic_error("overloaded_error", "Overloaded")])
    )
    observer = Retries()
    async with endpoint(fake_provider, "anthropic") as ep:
        with no_backoff():
            chunks, error = await read_stream(ep, "anthropic", on_retry=observer)
            assert error is None
            assert_whole(chunks)
            assert observer.errors == [errors.OverloadedError]
            assert len(fake_provider.requests) == 2

            fake_provider.script(
                Reply(chunks=[MESSAGE_START, _anthropic_error("invalid_request_error", "bad")])
            )
            chunks, error = await read_stream(ep, "anthropic", on_retry=observer)
    assert type(error) is errors.BadRequestError and chunks == []
    assert len(observer.seen) == 1
    assert len(fake_provider.requests) == 3


async def test_content_and_an_error_in_one_piece_delivers_the_content_then_fails(
    fake_provider: FakeProvider,
) -> None:
    """A chunk and an error event read in the same piece: the chunk reaches the caller
    first, so the error that follows is raised, not retried."""
    piece = "".join(TO_FIRST_CHUNK) + _anthropic_error("overloaded_error", "Over")
    fake_provider.script(Reply(chunks=[piece]))
    async with endpoint(fake_provider, "anthropic") as ep:
        chunks, error, observer = await read_with_retries(ep, "anthropic")
    assert type(error) is errors.OverloadedError
    assert [c.content for c in chunks] == ["Hel"]
    assert observer.seen == []
    assert len(fake_provider.requests) == 1


# --- the same policy, deadline and breaker as opening ---------------------------------------------


@pytest.mark.parametrize("retry", [None, RetryConfig(max_retries=0)], ids=["none", "zero"])
async def test_retries_off_raise_the_first_failure(
    retry: RetryConfig | None, fake_provider: FakeProvider
) -> None:
    """With retries off, a reset before the first event is raised at once, after one
    request."""
    fake_provider.script(Reply(truncate=0))
    async with endpoint(fake_provider, retry_config=retry) as ep:
        chunks, error = await read_stream(ep)
    assert type(error) is errors.ConnectionError and chunks == []
    assert len(fake_provider.requests) == 1


async def test_retries_stop_at_max_retries(fake_provider: FakeProvider) -> None:
    """Three resets before content with the default two retries: three requests, the last
    error raised."""
    fake_provider.script(Reply(truncate=0), Reply(truncate=0), Reply(truncate=0))
    async with endpoint(fake_provider) as ep:
        chunks, error, observer = await read_with_retries(ep)
    assert type(error) is errors.ConnectionError and chunks == []
    assert observer.errors == [errors.ConnectionError] * 2
    assert len(fake_provider.requests) == 3


async def test_the_call_deadline_caps_the_wait_for_the_first_chunk(
    fake_provider: FakeProvider,
) -> None:
    """An idle timeout longer than the call's timeout does not stretch the wait for the
    first chunk past the call's deadline, and no retry starts without time left."""
    fake_provider.script(Reply(stall_after=0))
    observer = Retries()
    loop = asyncio.get_running_loop()
    async with endpoint(fake_provider) as ep:
        start = loop.time()
        with no_backoff():
            chunks, error = await read_stream(ep, on_retry=observer, timeout=1.0, idle_timeout=60)
        elapsed = loop.time() - start
    assert type(error) is errors.TimeoutError and chunks == []
    assert elapsed < 15.0  # the deadline (1 s), far below the idle timeout (60 s)
    assert observer.seen == []
    assert len(fake_provider.requests) == 1


async def test_every_attempt_counts_against_the_breaker(fake_provider: FakeProvider) -> None:
    """Each failed attempt before the first chunk is a breaker failure; once the breaker
    opens, the next attempt is refused without a request and its error raised."""
    breaker = CircuitBreaker(failure_threshold=2, recovery_time=30.0, clock=FakeClock())
    fake_provider.script(Reply(truncate=0), Reply(chunks=[]))
    async with endpoint(fake_provider, circuit_breaker=breaker) as ep:
        chunks, error, observer = await read_with_retries(ep)
    assert type(error) is CircuitBreakerOpenError and chunks == []
    assert observer.errors == [errors.ConnectionError, errors.ConnectionError]
    assert breaker.state is CircuitState.OPEN
    assert breaker.metrics["failure_count"] == 2
    assert len(fake_provider.requests) == 2


async def test_a_retried_stream_books_one_failure_and_one_success(
    fake_provider: FakeProvider,
) -> None:
    """A stream reset before content and then retried books one breaker failure and one
    success: the breaker stays closed with its consecutive-failure count reset."""
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=30.0, clock=FakeClock())
    fake_provider.script(Reply(truncate=0))
    async with endpoint(fake_provider, circuit_breaker=breaker) as ep:
        with no_backoff():
            chunks, error = await read_stream(ep)
    assert error is None
    assert_whole(chunks)
    assert (breaker.metrics["failure_count"], breaker.metrics["success_count"]) == (1, 1)
    assert breaker.state is CircuitState.CLOSED and breaker.failure_count == 0
    assert len(fake_provider.requests) == 2


async def test_a_half_open_probe_reset_before_content_reopens_the_breaker(
    fake_provider: FakeProvider,
) -> None:
    """The probe stream after recovery is reset before content: that attempt is the
    probe's failure, the breaker opens again, and the retry is refused without a request."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=30.0, clock=clock)
    fake_provider.script(Reply(status=400), Reply(truncate=0))
    async with endpoint(fake_provider, circuit_breaker=breaker) as ep:
        _, error = await read_stream(ep)  # a 400 is not retried, but counts
        assert type(error) is errors.BadRequestError
        await clock.advance(30.0)
        assert breaker.state is CircuitState.HALF_OPEN
        with no_backoff():
            chunks, error = await read_stream(ep)
    assert type(error) is CircuitBreakerOpenError and chunks == []
    assert breaker.state is CircuitState.OPEN
    assert breaker.metrics["failure_count"] == 2
    assert len(fake_provider.requests) == 2


# --- cancellation and closing ---------------------------------------------------------------------


async def test_cancelling_while_waiting_for_the_first_chunk_propagates_and_frees_all(
    fake_provider: FakeProvider,
) -> None:
    """A stream cancelled in its silence before the first chunk: the cancellation is not
    swallowed or retried, the breaker books nothing and frees its probe slot, and the one
    pooled connection serves the next stream."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=30.0, clock=clock)
    fake_provider.script(Reply(status=400), Reply(stall_after=0))
    async with endpoint(fake_provider, circuit_breaker=breaker, client_kwargs={"limit": 1}) as ep:
        await read_stream(ep)  # opens the breaker
        await clock.advance(30.0)
        assert breaker.state is CircuitState.HALF_OPEN  # the next stream is the one probe
        request = ep.create_payload({"model": "m", "messages": MESSAGES})

        async def consume() -> None:
            async for _ in ep.stream(request, idle_timeout=60):
                pass

        task = asyncio.create_task(consume())
        async with asyncio.timeout(10):
            while not ep._transport.streams:  # headers in, waiting for the first chunk
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert ep._transport.streams == {}
        assert breaker.metrics["failure_count"] == 1  # the 400 only
        assert breaker.metrics["success_count"] == 0
        assert breaker.state is CircuitState.HALF_OPEN
        with no_backoff():
            chunks, error = await read_stream(ep, timeout=5)
    assert error is None
    assert_whole(chunks)
    assert breaker.state is CircuitState.CLOSED
    assert len(fake_provider.requests) == 3


async def test_aclose_while_waiting_for_the_first_chunk_is_not_retried(
    fake_provider: FakeProvider,
) -> None:
    """Closing the endpoint under a stream still waiting for content fails it at once with
    ExecutionError; no retry opens a new session."""
    fake_provider.script(Reply(stall_after=0))
    ep = endpoint(fake_provider)
    task = asyncio.create_task(read_stream(ep, idle_timeout=60))
    async with asyncio.timeout(10):
        while not ep._transport.streams:
            await asyncio.sleep(0.01)
        await ep.aclose()
        chunks, error = await task
    assert isinstance(error, errors.ExecutionError) and "closed" in str(error)
    assert not error.retryable and chunks == []
    assert len(fake_provider.requests) == 1


# --- through iModel ------------------------------------------------------------------------------


async def test_invoke_stream_retries_a_reset_before_the_first_event(
    fake_provider: FakeProvider,
) -> None:
    """Through iModel.invoke_stream: a reset before the first event then a good stream gives
    one whole stream, a completed Calling with two attempts, and two requests."""
    fake_provider.script(Reply(truncate=0))
    async with iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        limit_requests=100,
    ) as model:
        calling = await model.create_calling(streaming=True, model="m", messages=MESSAGES)
        with no_backoff():
            chunks = [chunk async for chunk in model.invoke_stream(calling)]
    assert_whole(chunks)
    assert calling.execution.status is EventStatus.COMPLETED
    assert calling.execution.attempts == 2
    assert calling.response is not None and calling.response.data == chunks[-1].response.data  # type: ignore[union-attr]
    assert len(fake_provider.requests) == 2


async def test_invoke_stream_with_retries_off_fails_at_once(fake_provider: FakeProvider) -> None:
    """Through iModel with ``retry_config=None``: the reset is the Calling's error, after
    one request."""
    fake_provider.script(Reply(truncate=0))
    async with iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        retry_config=None,
    ) as model:
        with pytest.raises(errors.ConnectionError) as info:
            async for _ in model.invoke_stream(model="m", messages=MESSAGES):
                pass
    calling = info.value.calling  # type: ignore[attr-defined]
    assert calling.execution.status is EventStatus.FAILED
    assert calling.execution.attempts == 1
    assert len(fake_provider.requests) == 1
