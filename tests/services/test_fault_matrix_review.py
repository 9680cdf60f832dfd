"""Fault-matrix cases found untested in review: 429s no wait cures, bad retry hints, and
streams that fail before, at and after their first event, with retries on.

Every case runs against FakeProvider over loopback with the default retry policy and
``no_backoff()``, so what is checked is the decision (how many requests, which error, what
wait was planned), not the sleeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from pydantic import SecretStr
from tests.conftest import model_on
from tests.services._streams import (
    MESSAGES,
    TO_FIRST_CHUNK,
    anthropic_event,
    endpoint,
    payload,
    read_stream,
    read_with_retries,
)
from tests.services.test_fault_matrix import Retries

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.core.event import EventStatus
from lionpride.services import iModel
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.utilities.rate_limiter import RateLimitConfig, TokenBucket
from lionpride.services.utilities.resilience import (
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
    RetryConfig,
    no_backoff,
    rate_limit_is_permanent,
)
from lionpride.testing import FakeProvider, Reply

# --- 429s that no wait cures (F7) ----------------------------------------------------------------


def _gemini_429(quota_id: str, delay: str = "1s") -> dict[str, Any]:
    failure = {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaMetric": "generate_content_requests", "quotaId": quota_id}],
    }
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
    error = {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}
    return {"error": {**error, "details": [failure, retry_info]}}


_QUOTA = {
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "type": "insufficient_quota",
    "param": None,
    "code": "insufficient_quota",
}
_TOO_LARGE = {
    "message": "Request too large for gpt-4o on tokens per min (TPM): Limit 30000, "
    "Requested 36055. The input or output tokens must be reduced in order to run successfully.",
    "type": "tokens",
    "param": None,
    "code": "rate_limit_exceeded",
}
_PER_MINUTE = {
    "message": "Rate limit reached for gpt-4o on requests per min (RPM): Limit 3.",
    "type": "requests",
    "param": None,
    "code": "rate_limit_exceeded",
}


@pytest.mark.parametrize(
    ("provider", "body", "requests"),
    [
        ("openai", {"error": _QUOTA}, 1),
        ("openai", {"error": _TOO_LARGE}, 1),
        ("gemini", _gemini_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), 1),
        ("gemini", [_gemini_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier")], 1),
        # The transient ones next to them are still retried.
        ("openai", {"error": _PER_MINUTE}, 2),
        ("gemini", _gemini_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), 2),
    ],
    ids=[
        "openai-insufficient-quota",
        "openai-request-too-large",
        "gemini-daily-quota",
        "gemini-daily-quota-in-list",
        "openai-per-minute",
        "gemini-per-minute",
    ],
)
async def test_a_429_no_wait_cures_is_tried_once(
    provider: str, body: Any, requests: int, fake_provider: FakeProvider
) -> None:
    """A spent quota, a daily quota or a request larger than the per-minute limit is raised
    after one request as a non-retryable RateLimitError; a per-minute 429 is still retried."""
    fake_provider.script(Reply(status=429, body=body))
    observer = Retries()
    async with endpoint(fake_provider, provider) as ep:
        with no_backoff():
            try:
                await ep.call(payload(ep, provider), on_retry=observer, timeout=30.0)
                error = None
            except errors.RateLimitError as exc:
                error = exc
    assert len(fake_provider.requests) == requests
    if requests == 1:
        assert error is not None and error.retryable is False
        assert observer.seen == []
    else:
        assert error is None and len(observer.seen) == 1


async def test_x_should_retry_still_wins_over_the_body(fake_provider: FakeProvider) -> None:
    """The server's own ``x-should-retry: true`` overrides the quota reading of the body."""
    fake_provider.script(
        Reply(status=429, body={"error": _QUOTA}, headers={"x-should-retry": "true"})
    )
    async with endpoint(fake_provider) as ep:
        with no_backoff():
            assert (await ep.call(payload(ep))).data
    assert len(fake_provider.requests) == 2


async def test_a_429_no_wait_cures_does_not_pause_the_model(fake_provider: FakeProvider) -> None:
    """A quota 429 with ``retry-after: 60`` fails its call but does not stop the model's
    limiter for a minute: the next call (a different request) is served at once."""
    fake_provider.script(
        Reply(status=429, body={"error": _TOO_LARGE}, headers={"retry-after": "60"})
    )
    model = model_on(fake_provider, "openai", limit_requests=100)
    async with model:
        with pytest.raises(errors.RateLimitError) as info:
            await model.invoke(model="m", messages=MESSAGES)
        assert info.value.retry_after == 60.0 and not info.value.retryable
        # Paused, this call would wait 60 s for capacity and time out at 10 s.
        calling = await model.invoke(model="m", messages=MESSAGES, poll_timeout=10.0)
    assert calling.response is not None and calling.response.data
    assert len(fake_provider.requests) == 2


# --- retry hints that are no hints (F6) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "-3"}, 0.5),
        ({"retry-after-ms": "-100"}, 0.5),
        ({"retry-after": "soon"}, 0.5),
        ({"retry-after": "-3", "retry-after-ms": "-5"}, 0.5),
        ({"retry-after-ms": "-100", "retry-after": "2"}, 2.0),
    ],
    ids=["negative-seconds", "negative-ms", "garbage", "both-negative", "negative-ms-then-valid"],
)
async def test_negative_or_garbage_retry_after_falls_back_to_backoff(
    headers: dict[str, str], wait: float, fake_provider: FakeProvider
) -> None:
    """A negative or unreadable Retry-After is no hint: the retry waits the backoff (0.5 s
    here, jitter off), not zero; a valid later header is still used."""
    fake_provider.script(Reply(status=429, headers=headers))
    observer = Retries()
    retry = RetryConfig(initial_delay=0.5, jitter=False)
    async with endpoint(fake_provider, retry_config=retry) as ep:
        with no_backoff():
            await ep.call(payload(ep), on_retry=observer)
    assert observer.waits == [wait]
    assert len(fake_provider.requests) == 2


# --- streams: retried before the first event, never after (F3, F4, F10, F11) ---------------------


@pytest.mark.parametrize(
    ("reply", "retried"),
    [
        (Reply(status=503), errors.ServerError),
        (Reply(status=429, headers={"retry-after": "1"}), errors.RateLimitError),
        (Reply(drop=True), errors.ConnectionError),
    ],
    ids=["503", "429", "dropped-before-headers"],
)
async def test_stream_that_fails_to_open_is_retried(
    reply: Reply, retried: type[Exception], fake_provider: FakeProvider
) -> None:
    """A stream refused or dropped before its headers is retried like a call, and the
    retry's events come out whole."""
    fake_provider.script(reply)
    async with endpoint(fake_provider) as ep:
        chunks, error, observer = await read_with_retries(ep)
    assert error is None
    assert [type(e) for _, e, _ in observer.seen] == [retried]
    assert len(fake_provider.requests) == 2
    final = chunks[-1]
    assert final.is_final and final.response is not None
    assert "".join(c.content for c in chunks[:-1]) == final.response.data != ""


def _oai_event(text: str) -> str:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


@pytest.mark.parametrize(
    ("provider", "reply", "raised"),
    [
        # Reset after the first event: the body stops short of its announced length.
        (
            "openai",
            Reply(
                chunks=[_oai_event("Hel"), _oai_event("lo")],
                truncate=len(_oai_event("Hel")) + 10,
            ),
            errors.ConnectionError,
        ),
        # A clean end of the body without [DONE] or message_stop.
        ("openai", Reply(chunks=[_oai_event("Hel")]), errors.ConnectionError),
        ("anthropic", Reply(chunks=TO_FIRST_CHUNK), errors.ConnectionError),
        # Anthropic's overload error inside the 200 stream.
        (
            "anthropic",
            Reply(
                chunks=[
                    *TO_FIRST_CHUNK,
                    anthropic_event(
                        "error", error={"type": "overloaded_error", "message": "Overloaded"}
                    ),
                ]
            ),
            errors.OverloadedError,
        ),
    ],
    ids=["openai-reset", "openai-no-done", "anthropic-no-message-stop", "anthropic-error-event"],
)
async def test_stream_failing_after_its_first_event_is_raised_not_retried(
    provider: str, reply: Reply, raised: type[Exception], fake_provider: FakeProvider
) -> None:
    """Once content reached the caller, a reset, a cut body or an error event ends the
    stream with its typed error after one request, with retries on and the error retryable."""
    fake_provider.script(reply)
    async with endpoint(fake_provider, provider) as ep:
        chunks, error, observer = await read_with_retries(ep, provider)
    assert type(error) is raised
    assert isinstance(error, errors.LionprideError) and error.retryable
    assert [c.content for c in chunks] == ["Hel"]
    assert not any(c.is_final for c in chunks)
    assert observer.seen == []
    assert len(fake_provider.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=200, body={"error": {"message": "stream not supported"}}),
        Reply(
            status=200,
            body="<html><body>Sign in to the proxy</body></html>",
            headers={"content-type": "text/html"},
        ),
    ],
    ids=["json", "html"],
)
async def test_stream_answered_with_a_plain_body_is_an_invalid_response(
    reply: Reply, fake_provider: FakeProvider
) -> None:
    """A 200 that is not an event stream (a JSON body, a proxy's page) raises
    InvalidResponseError with the body, after one request: not a retryable ConnectionError
    claiming the stream was cut."""
    fake_provider.script(reply)
    async with endpoint(fake_provider) as ep:
        chunks, error, observer = await read_with_retries(ep)
    assert type(error) is errors.InvalidResponseError
    assert not error.retryable
    assert "expected an event stream" in str(error)
    assert isinstance(error.body, str) and (
        "stream not supported" in error.body or "proxy" in error.body
    )
    assert chunks == [] and observer.seen == []
    assert len(fake_provider.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [Reply(status=503, stall_after=0), Reply(status=200, body={"x": 1}, stall_after=0)],
    ids=["error-status", "json-200"],
)
async def test_stream_whose_error_body_stalls_ends_at_the_deadline(
    reply: Reply, fake_provider: FakeProvider
) -> None:
    """Headers of an error (or of a plain body) followed by silence: the stream fails with
    its typed error at the call's deadline instead of waiting for the body forever."""
    fake_provider.script(reply)
    loop = asyncio.get_running_loop()
    async with endpoint(fake_provider, retry_config=None) as ep:
        start = loop.time()
        chunks, error = await read_stream(ep, timeout=1.0)
        elapsed = loop.time() - start
    assert isinstance(error, errors.ServerError | errors.InvalidResponseError)
    assert chunks == []
    assert elapsed < 10.0  # read_stream gives up at 20 s; the deadline is 1 s
    assert len(fake_provider.requests) == 1


# --- streams through the breaker and the executor ------------------------------------------------


async def test_stream_open_failures_count_against_the_breaker(
    fake_provider: FakeProvider,
) -> None:
    """Failed stream openings count as breaker failures; an open breaker refuses the next
    stream without a request, and a probe stream after recovery closes it."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_time=30.0, clock=clock)
    fake_provider.script(Reply(status=503), Reply(status=503))
    async with endpoint(fake_provider, retry_config=None, circuit_breaker=breaker) as ep:
        for _ in range(2):
            _, error = await read_stream(ep)
            assert type(error) is errors.ServerError
        assert breaker.state is CircuitState.OPEN
        _, error = await read_stream(ep)
        assert type(error) is CircuitBreakerOpenError
        assert len(fake_provider.requests) == 2
        await clock.advance(30.0)
        chunks, error = await read_stream(ep)
    assert error is None and chunks[-1].is_final
    assert breaker.state is CircuitState.CLOSED
    assert len(fake_provider.requests) == 3


async def test_stream_reset_mid_way_fails_the_calling_and_frees_its_slot(
    fake_provider: FakeProvider,
) -> None:
    """A stream reset after its first chunk fails its Calling with the error (on
    ``e.calling``), books one failure, and gives the only concurrency slot back."""
    first = _oai_event("Hel")
    fake_provider.script(Reply(chunks=[first, _oai_event("lo")], truncate=len(first) + 10))
    model = model_on(fake_provider, "openai", limit_requests=100, concurrency_limit=1)
    executor = model.executor
    assert executor is not None
    async with model:
        seen: list[str] = []
        with no_backoff(), pytest.raises(errors.ConnectionError) as info:
            async for chunk in model.invoke_stream(model="m", messages=MESSAGES):
                seen.append(chunk.content)
        assert seen == ["Hel"]
        calling = info.value.calling  # type: ignore[attr-defined]
        assert calling.execution.status is EventStatus.FAILED
        assert calling.execution.error is info.value
        stats = executor.stats()
        assert (stats["failed"], stats["in_flight"]) == (1, 0)
        start = time.monotonic()
        done = await model.invoke(model="m", messages=MESSAGES, poll_timeout=10.0)
    assert done.response is not None and done.response.data
    assert time.monotonic() - start < 10.0
    assert len(fake_provider.requests) == 2


@pytest.mark.parametrize(
    ("body", "permanent"),
    [
        ('{"error": {"code": "insufficient_quota", "message": "quota"}}', True),
        ({"error": {"type": "insufficient_quota"}}, True),
        ({"error": {"message": "Request too large for gpt-4o on tokens per min"}}, True),
        ({"error": {"details": [{"@type": "x.QuotaFailure", "violations": "bad"}]}}, False),
        ({"error": {"details": ["oops", {"@type": "google.rpc.QuotaFailure"}]}}, False),
        ({"error": "plain text"}, False),
        ("<html>429</html>", False),
        (None, False),
        ([], False),
    ],
)
def test_rate_limit_is_permanent_reads_only_what_it_knows(body: Any, permanent: bool) -> None:
    """Bodies of any shape are read without error; only the three known kinds are permanent."""
    assert rate_limit_is_permanent(body) is permanent


# --- what a failed or cancelled call leaves behind (F1, F16) -------------------------------------


async def test_refused_connection_refunds_tokens_and_spends_the_request() -> None:
    """Nothing listening: the call fails with ConnectionError after its retries, its token
    reservation comes back whole and its one request stays spent (the documented policy)."""
    async with FakeProvider() as fp:
        url = fp.base_url("openai")  # the port is closed once the provider stops
    model = iModel(
        provider="openai",
        base_url=url,
        api_key=SecretStr("k"),
        limit_requests=100,
        limit_tokens=100_000,
        capacity_refresh_time=3600.0,  # refill is negligible during the test
    )
    executor = model.executor
    assert executor is not None
    async with model:
        before = executor.limiter.levels
        calling = await model.create_calling(model="m", messages=MESSAGES)
        assert calling.reserved_tokens > 0
        with no_backoff(), pytest.raises(errors.ConnectionError):
            await model.invoke(calling)
        after = executor.limiter.levels
    assert calling.execution.attempts == 3
    assert after["tokens"] == pytest.approx(before["tokens"], abs=5)
    assert after["requests"] == pytest.approx(before["requests"] - 1, abs=0.1)
    assert executor.stats()["in_flight"] == 0


async def test_cancelling_a_call_waiting_to_retry_sends_nothing_more(
    fake_provider: FakeProvider,
) -> None:
    """A call sleeping out a 429's retry-after is cancelled at once, the cancellation
    propagates, and no retry request is sent."""
    fake_provider.script(Reply(status=429, headers={"retry-after": "30"}))
    waiting = asyncio.Event()
    async with endpoint(fake_provider) as ep:
        task = asyncio.create_task(
            ep.call(payload(ep), on_retry=lambda *_: waiting.set(), timeout=120.0)
        )
        await asyncio.wait_for(waiting.wait(), 10.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10.0)
    assert len(fake_provider.requests) == 1


async def test_a_stream_failing_after_content_keeps_its_token_reservation(
    fake_provider: FakeProvider,
) -> None:
    """F4: once content came, the provider has counted the prompt and part of an answer,
    so the failed stream's reservation stays spent; a stream that failed to open (nothing
    processed) gives all of it back."""
    clock = FakeClock(0)
    bucket = TokenBucket(RateLimitConfig(capacity=100_000, refill_rate=0), clock=clock)
    model = model_on(
        fake_provider,
        "openai",
        executor=RateLimitedExecutor(token_bucket=bucket, clock=clock),
        retry_config=None,
    )
    first = _oai_event("Hel")
    async with model:
        calling = await model.create_calling(
            model="m", messages=MESSAGES, max_tokens=500, streaming=True
        )
        assert calling.reserved_tokens > 500
        fake_provider.script(Reply(chunks=[first, _oai_event("lo")], truncate=len(first) + 10))
        with pytest.raises(errors.ConnectionError):
            async for _ in model.invoke_stream(calling):
                pass
        assert bucket.level == 100_000 - calling.reserved_tokens

        fake_provider.script(Reply(status=503))
        with pytest.raises(errors.ServerError):
            async for _ in model.invoke_stream(model="m", messages=MESSAGES, max_tokens=500):
                pass
        assert bucket.level == 100_000 - calling.reserved_tokens  # all of it given back
