"""The fault matrix of issue 4: every fault against FakeProvider, typed, counted, never a hang.

Each case checks what is raised, how many requests reached the server, and that the API key
shows up in no exception and no log line. Backoff waits are switched off with ``no_backoff()``
except where the wait itself is under test; breaker recovery runs on a ``FakeClock``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.core.event import EventStatus
from lionpride.services import iModel
from lionpride.services.providers import AnthropicMessagesEndpoint, GeminiEndpoint, OAIChatEndpoint
from lionpride.services.types.endpoint import Endpoint
from lionpride.services.utilities.resilience import (
    MAX_SERVER_WAIT,
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
    RetryConfig,
    backoff_disabled,
    no_backoff,
    retry_with_backoff,
)
from lionpride.testing import FakeProvider, Reply

KEY = "sk-fault-matrix-0123456789-do-not-leak"
MESSAGES = [{"role": "user", "content": "Hello there"}]


@dataclass
class Retries:
    """Records every retry an endpoint announces: (attempt, error, planned wait)."""

    seen: list[tuple[int, BaseException, float]] = field(default_factory=list)

    def __call__(self, attempt: int, error: BaseException, wait: float) -> None:
        """Remember one retry."""
        self.seen.append((attempt, error, wait))

    @property
    def waits(self) -> list[float]:
        """The planned waits, in order."""
        return [wait for _, _, wait in self.seen]

    @property
    def errors(self) -> list[type[BaseException]]:
        """The classes of the errors that were retried, in order."""
        return [type(error) for _, error, _ in self.seen]


def make_endpoint(fp_url: str, provider: str = "openai", **kwargs: Any) -> Endpoint:
    """An endpoint for ``provider`` pointed at a FakeProvider base URL, keyed with KEY."""
    cls: type[Endpoint] = {
        "openai": OAIChatEndpoint,
        "anthropic": AnthropicMessagesEndpoint,
        "gemini": GeminiEndpoint,
    }[provider]
    return cls(base_url=fp_url, api_key=SecretStr(KEY), **kwargs)


def payload(ep: Endpoint, model: str = "test-model") -> dict[str, Any]:
    """A valid request for ``ep``."""
    return ep.create_payload({"model": model, "messages": MESSAGES})


def make_model(fp: FakeProvider, **kwargs: Any) -> iModel:
    """An OpenAI-format iModel on ``fp`` with the secret key."""
    return iModel(
        provider="openai",
        base_url=fp.base_url("openai"),
        api_key=SecretStr(KEY),
        model="gpt-4o-mini",
        **kwargs,
    )


def headers_sent_trace() -> tuple[aiohttp.TraceConfig, asyncio.Event]:
    """An aiohttp trace whose event is set once a request's headers are on the wire."""
    sent = asyncio.Event()

    async def on_headers_sent(*_: Any) -> None:
        sent.set()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_headers_sent)
    return trace, sent


def assert_key_absent(exc: BaseException | None, log_text: str) -> None:
    """The key is in no exception of the chain (text, repr, details) and in no log line."""
    assert KEY not in log_text
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts = [str(exc), repr(exc), repr(exc.args)]
        if isinstance(exc, errors.LionprideError):
            parts.append(json.dumps(exc.to_dict(), default=str))
            parts.append(repr(exc.calling))
        if isinstance(exc, errors.APIError):
            parts += [repr(exc.headers), repr(exc.body)]
        assert not [p for p in parts if KEY in p], f"API key leaked by {type(exc).__name__}"
        exc = exc.__cause__ or exc.__context__


# --- the HTTP status and transport matrix (retries on, backoff off) ------------------------------

FAULTS = [
    # id, provider, scripted replies, error raised (None: success), requests, errors retried
    pytest.param(
        "openai",
        [Reply(status=503), Reply(status=500)],
        None,
        3,
        [errors.ServerError, errors.ServerError],
        id="503-500-then-200",
    ),
    pytest.param(
        "anthropic", [Reply(status=529)], None, 2, [errors.OverloadedError], id="529-anthropic"
    ),
    pytest.param(
        "openai",
        [Reply(status=429)],
        None,
        2,
        [errors.RateLimitError],
        id="429-without-retry-after",
    ),
    pytest.param("openai", [Reply(status=408)], None, 2, [errors.APIStatusError], id="408"),
    pytest.param("openai", [Reply(status=409)], None, 2, [errors.APIStatusError], id="409"),
    pytest.param(
        "openai", [Reply(status=400)], errors.BadRequestError, 1, [], id="400-bad-request"
    ),
    pytest.param("openai", [Reply(status=401)], errors.AuthenticationError, 1, [], id="401-auth"),
    pytest.param(
        "openai", [Reply(status=403)], errors.PermissionDeniedError, 1, [], id="403-denied"
    ),
    pytest.param("openai", [Reply(status=404)], errors.NotFoundError, 1, [], id="404"),
    pytest.param(
        "openai",
        [Reply(status=503)] * 3,
        errors.ServerError,
        3,
        [errors.ServerError] * 2,
        id="503-persistent-tried-3-times",
    ),
    pytest.param(
        "openai",
        [Reply(status=503, headers={"x-should-retry": "false"})],
        errors.ServerError,
        1,
        [],
        id="503-x-should-retry-false",
    ),
    pytest.param(
        "openai",
        [Reply(status=400, headers={"x-should-retry": "true"})],
        None,
        2,
        [errors.BadRequestError],
        id="400-x-should-retry-true",
    ),
    pytest.param(
        "openai", [Reply(drop=True)], None, 2, [errors.ConnectionError], id="drop-then-200"
    ),
    pytest.param(
        "openai",
        [Reply(body={"choices": [{"message": {"content": "cut short"}}]}, truncate=12)] * 3,
        errors.ConnectionError,
        3,
        [errors.ConnectionError] * 2,
        id="truncated-json",
    ),
    pytest.param(
        "openai",
        [Reply(body="<html>502 Bad Gateway</html>", headers={"content-type": "text/html"})],
        errors.InvalidResponseError,
        1,
        [],
        id="body-not-json",
    ),
    pytest.param("openai", [Reply(body="")], errors.InvalidResponseError, 1, [], id="empty-body"),
]


@pytest.mark.parametrize(("provider", "replies", "raised", "requests", "retried"), FAULTS)
async def test_fault_matrix(
    provider: str,
    replies: list[Reply],
    raised: type[Exception] | None,
    requests: int,
    retried: list[type[Exception]],
    fake_provider: FakeProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each fault raises its typed error (or recovers) after exactly the expected requests."""
    caplog.set_level(logging.DEBUG, logger="lionpride")
    fake_provider.script(*replies)
    ep = make_endpoint(fake_provider.base_url(provider), provider)
    observer = Retries()
    error: BaseException | None = None
    async with ep:
        with no_backoff():
            try:
                response = await asyncio.wait_for(
                    ep.call(payload(ep), on_retry=observer, timeout=10.0), 20.0
                )
            except Exception as exc:
                error = exc
    if raised is None:
        assert error is None, f"unexpected {error!r}"
        assert response.data
    else:
        assert type(error) is raised
    assert len(fake_provider.requests) == requests
    assert observer.errors == retried
    assert_key_absent(error, caplog.text)
    sent = fake_provider.requests[0].headers
    assert KEY in sent.get("authorization", "") + sent.get("x-api-key", "")


async def test_bad_request_carries_the_provider_message(fake_provider: FakeProvider) -> None:
    """A 400 raises BadRequestError whose text is the provider's own message, after 1 request."""
    message = "Invalid value for 'temperature': expected a number <= 2."
    fake_provider.script(
        Reply(status=400, body={"error": {"message": message, "type": "invalid_request_error"}})
    )
    async with make_endpoint(fake_provider.base_url("openai")) as ep:
        with pytest.raises(errors.BadRequestError) as info:
            await ep.call(payload(ep))
    assert str(info.value) == message
    assert info.value.status_code == 400
    assert len(fake_provider.requests) == 1


async def test_refused_connection_is_retried_then_raised(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listening: three attempts, no request served, ConnectionError (also the builtin)."""
    caplog.set_level(logging.DEBUG, logger="lionpride")
    async with FakeProvider() as fp:
        url = fp.base_url("openai")
    observer = Retries()
    async with make_endpoint(url) as ep:
        with no_backoff(), pytest.raises(ConnectionError) as info:
            await asyncio.wait_for(ep.call(payload(ep), on_retry=observer), 20.0)
    assert isinstance(info.value, errors.ConnectionError)
    assert observer.errors == [errors.ConnectionError] * 2
    assert fp.requests == []
    assert_key_absent(info.value, caplog.text)


async def test_retries_off_with_zero_retries_or_none(fake_provider: FakeProvider) -> None:
    """RetryConfig(max_retries=0) and retry_config=None both send a failing request once."""
    for retry in (RetryConfig(max_retries=0), None):
        fake_provider.reset()
        fake_provider.script(Reply(status=503))
        async with make_endpoint(fake_provider.base_url("openai"), retry_config=retry) as ep:
            with pytest.raises(errors.ServerError):
                await ep.call(payload(ep))
        assert len(fake_provider.requests) == 1


# --- the server decides the wait -----------------------------------------------------------------


async def test_429_retry_after_one_second_is_waited_for_real(fake_provider: FakeProvider) -> None:
    """429 with retry-after: 1 then 200: the retry leaves at least 1 s later; 2 requests."""
    fake_provider.script(Reply(status=429, headers={"retry-after": "1"}))
    async with make_endpoint(fake_provider.base_url("openai")) as ep:
        response = await ep.call(payload(ep))
    assert response.data
    assert len(fake_provider.requests) == 2
    gap = fake_provider.arrivals[1] - fake_provider.arrivals[0]
    assert 1.0 <= gap < 2.0


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def _gemini_429(delay: str) -> dict[str, Any]:
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
    return {"error": {"code": 429, "message": "Quota exceeded", "details": [retry_info]}}


@pytest.mark.parametrize(
    ("provider", "reply", "wait"),
    [
        ("openai", lambda: Reply(status=429, headers={"retry-after-ms": "1500"}), 1.5),
        ("openai", lambda: Reply(status=429, headers={"retry-after": "7"}), 7.0),
        ("anthropic", lambda: Reply(status=529, headers={"retry-after": "3"}), 3.0),
        ("openai", lambda: Reply(status=503, headers={"retry-after": _http_date(20)}), 20.0),
        ("gemini", lambda: Reply(status=429, body=_gemini_429("12s")), 12.0),
    ],
    ids=["retry-after-ms", "retry-after-seconds", "529-retry-after", "http-date", "gemini"],
)
async def test_server_hint_sets_the_wait(
    provider: str, reply: Callable[[], Reply], wait: float, fake_provider: FakeProvider
) -> None:
    """retry-after-ms, retry-after (seconds or HTTP date) and Gemini's retryDelay set the wait."""
    fake_provider.script(reply())  # built now: an HTTP date must be fresh
    observer = Retries()
    async with make_endpoint(fake_provider.base_url(provider), provider) as ep:
        with no_backoff():
            await ep.call(payload(ep), on_retry=observer, timeout=60.0)
    assert observer.waits == [pytest.approx(wait, abs=1.5)]
    assert isinstance(observer.seen[0][1], errors.APIError)
    assert observer.seen[0][1].retry_after == pytest.approx(wait, abs=1.5)
    assert len(fake_provider.requests) == 2


async def test_retry_after_beyond_deadline_fails_now(fake_provider: FakeProvider) -> None:
    """retry-after: 30 under a 2 s timeout raises RateLimitError(retry_after=30) at once."""
    fake_provider.script(Reply(status=429, headers={"retry-after": "30"}))
    observer = Retries()
    start = time.monotonic()
    async with make_endpoint(fake_provider.base_url("openai")) as ep:
        with pytest.raises(errors.RateLimitError) as info:
            await ep.call(payload(ep), timeout=2.0, on_retry=observer)
    assert time.monotonic() - start < 1.0
    assert info.value.retry_after == 30.0
    assert observer.seen == []
    assert len(fake_provider.requests) == 1


async def test_long_retry_after_without_deadline_fails_now() -> None:
    """Without a deadline a retry_after over MAX_SERVER_WAIT is raised, one within it waited."""
    clock = FakeClock()
    calls: list[float] = []
    late = errors.RateLimitError("quota", status_code=429, retry_after=MAX_SERVER_WAIT + 1)

    async def attempt(error: Exception) -> str:
        calls.append(clock.now())
        if len(calls) == 1:
            raise error
        return "ok"

    with pytest.raises(errors.RateLimitError) as info:
        await retry_with_backoff(attempt, args=(late,), clock=clock)
    assert info.value is late and calls == [0.0]
    calls.clear()
    soon = errors.RateLimitError("slow", status_code=429, retry_after=MAX_SERVER_WAIT)
    task = asyncio.ensure_future(retry_with_backoff(attempt, args=(soon,), clock=clock))
    await clock.advance(MAX_SERVER_WAIT)
    assert await task == "ok"
    assert calls == [0.0, MAX_SERVER_WAIT]


# --- timeouts ------------------------------------------------------------------------------------


async def test_model_timeout_reaches_the_endpoint_and_bounds_the_call(
    fake_provider: FakeProvider,
) -> None:
    """iModel(timeout=1.0): a 5 s response ends in TimeoutError near 1 s, after 1 request."""
    fake_provider.script(Reply(delay=5.0))
    model = make_model(fake_provider, timeout=1.0)
    assert model.backend.config.timeout == 1.0
    start = time.monotonic()
    async with model:
        with pytest.raises(errors.TimeoutError) as info:
            await model.invoke(messages=MESSAGES)
    assert 0.9 <= time.monotonic() - start < 1.6
    assert len(fake_provider.requests) == 1
    assert info.value.calling is not None
    assert info.value.calling.execution.status is EventStatus.CANCELLED
    assert_key_absent(info.value, "")


async def test_invoke_timeout_bounds_the_call(fake_provider: FakeProvider) -> None:
    """invoke(timeout=1.0) on a model with the default timeout ends near 1 s, after 1 request."""
    fake_provider.script(Reply(delay=5.0))
    model = make_model(fake_provider)
    assert model.backend.config.timeout == 300.0
    start = time.monotonic()
    async with model:
        with pytest.raises(errors.TimeoutError):
            await model.invoke(messages=MESSAGES, timeout=1.0)
    assert 0.9 <= time.monotonic() - start < 1.6
    assert len(fake_provider.requests) == 1


async def test_call_timeout_bounds_the_whole_retry_sequence(fake_provider: FakeProvider) -> None:
    """Retries stop when the next 0.4 s wait would not fit a 1 s timeout: 3 requests, < 1 s."""
    fake_provider.script(*[Reply(status=503)] * 10)
    retry = RetryConfig(max_retries=10, initial_delay=0.4, max_delay=0.4, jitter=False)
    start = time.monotonic()
    async with make_endpoint(fake_provider.base_url("openai"), retry_config=retry) as ep:
        with pytest.raises(errors.ServerError):
            await ep.call(payload(ep), timeout=1.0)
    assert time.monotonic() - start < 1.0
    assert len(fake_provider.requests) == 3


async def test_slow_attempts_never_outlive_the_call_timeout(fake_provider: FakeProvider) -> None:
    """Slow 503s with instant retries: the third attempt is cut at the 1 s deadline."""
    fake_provider.script(*[Reply(status=503, delay=0.4)] * 10)
    # A fixed 0.05 s backoff always fits until the deadline, so only the timeout can stop it.
    retry = RetryConfig(max_retries=10, initial_delay=0.05, max_delay=0.05, jitter=False)
    start = time.monotonic()
    async with make_endpoint(fake_provider.base_url("openai"), retry_config=retry) as ep:
        with no_backoff(), pytest.raises(errors.TimeoutError):
            await ep.call(payload(ep), timeout=1.0)
    assert 0.9 <= time.monotonic() - start < 1.4
    assert len(fake_provider.requests) == 3


async def test_connect_timeout_bounds_waiting_for_a_connection(
    fake_provider: FakeProvider,
) -> None:
    """With the only pooled connection busy, a call fails at connect_timeout, not its timeout."""
    fake_provider.latency = 5.0
    trace, sent = headers_sent_trace()
    ep = make_endpoint(
        fake_provider.base_url("openai"),
        retry_config=None,
        connect_timeout=0.3,
        client_kwargs={"limit": 1, "trace_configs": [trace]},
    )
    async with ep:
        busy = asyncio.create_task(ep.call(payload(ep), timeout=10.0))
        await asyncio.wait_for(sent.wait(), 5.0)  # the first call holds the connection
        start = time.monotonic()
        with pytest.raises(errors.TimeoutError):
            await ep.call(payload(ep), timeout=10.0)
        elapsed = time.monotonic() - start
        busy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await busy
    assert 0.25 <= elapsed < 1.5


# --- the circuit breaker behind the endpoint -----------------------------------------------------


async def test_failures_between_successes_keep_breaker_closed(
    fake_provider: FakeProvider,
) -> None:
    """Two failures, a success, two failures... never three in a row: the breaker stays closed."""
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=30.0, clock=FakeClock())
    fail = Reply(status=503)
    fake_provider.script(fail, fail, Reply(), fail, fail, Reply(), fail, fail)
    outcomes = []
    async with make_endpoint(
        fake_provider.base_url("openai"), retry_config=None, circuit_breaker=breaker
    ) as ep:
        for _ in range(8):
            try:
                await ep.call(payload(ep))
                outcomes.append("ok")
            except errors.ServerError:
                outcomes.append("503")
    assert outcomes == ["503", "503", "ok", "503", "503", "ok", "503", "503"]
    assert breaker.state is CircuitState.CLOSED
    assert len(fake_provider.requests) == 8
    assert breaker.metrics["rejected_count"] == 0


async def test_three_failures_open_breaker_then_probe_closes_it(
    fake_provider: FakeProvider,
) -> None:
    """Three failures open it; the fourth call sends nothing; a probe after recovery closes it."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=30.0, clock=clock)
    fake_provider.script(*[Reply(status=500)] * 3)
    async with make_endpoint(
        fake_provider.base_url("openai"), retry_config=None, circuit_breaker=breaker
    ) as ep:
        for _ in range(3):
            with pytest.raises(errors.ServerError):
                await ep.call(payload(ep))
        assert breaker.state is CircuitState.OPEN
        with pytest.raises(CircuitBreakerOpenError) as info:
            await ep.call(payload(ep))
        assert info.value.retry_after == pytest.approx(30.0)
        assert len(fake_provider.requests) == 3
        await clock.advance(30.0)
        assert breaker.state is CircuitState.HALF_OPEN
        response = await ep.call(payload(ep))
    assert response.data
    assert breaker.state is CircuitState.CLOSED
    assert len(fake_provider.requests) == 4
    assert breaker.metrics["rejected_count"] == 1
    assert [(c["from"], c["to"]) for c in breaker.metrics["state_changes"]] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


async def test_retries_count_against_the_breaker_and_stop_at_it(
    fake_provider: FakeProvider,
) -> None:
    """One call's three failed attempts open the breaker; the next call fails fast, unsent."""
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=30.0, clock=FakeClock())
    fake_provider.script(*[Reply(status=503)] * 3)
    async with make_endpoint(fake_provider.base_url("openai"), circuit_breaker=breaker) as ep:
        with no_backoff():
            with pytest.raises(errors.ServerError):
                await ep.call(payload(ep))
            with pytest.raises(CircuitBreakerOpenError):
                await ep.call(payload(ep))
    assert len(fake_provider.requests) == 3
    assert breaker.metrics["failure_count"] == 3
    assert breaker.metrics["rejected_count"] == 1


async def test_excluded_errors_pass_the_breaker_uncounted(fake_provider: FakeProvider) -> None:
    """A 400 excluded from the breaker neither opens it nor counts as a failure."""
    breaker = CircuitBreaker(
        failure_threshold=1, excluded_exceptions=[errors.BadRequestError], clock=FakeClock()
    )
    fake_provider.script(Reply(status=400), Reply(status=400))
    async with make_endpoint(
        fake_provider.base_url("openai"), retry_config=None, circuit_breaker=breaker
    ) as ep:
        for _ in range(2):
            with pytest.raises(errors.BadRequestError):
                await ep.call(payload(ep))
    assert breaker.state is CircuitState.CLOSED
    assert breaker.metrics["failure_count"] == 0
    assert len(fake_provider.requests) == 2


# --- cancellation --------------------------------------------------------------------------------


async def test_cancelled_call_leaks_no_connection_probe_slot_or_tokens(
    fake_provider: FakeProvider,
) -> None:
    """Cancelling invoke mid-flight frees the connection, the probe slot and the tokens."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=10.0, clock=clock)
    trace, sent = headers_sent_trace()
    model = make_model(
        fake_provider,
        retry_config=None,
        circuit_breaker=breaker,
        # One pooled connection: a leaked one would make the next call fail at connect time.
        client_kwargs={"limit": 1, "trace_configs": [trace]},
        connect_timeout=2.0,
        limit_requests=100,
        limit_tokens=100_000,
        capacity_refresh_time=3600.0,  # refill is negligible during the test
    )
    assert model.executor is not None
    async with model:
        fake_provider.script(Reply(status=500))
        with pytest.raises(errors.ServerError):
            await model.invoke(messages=MESSAGES)
        await clock.advance(10.0)
        assert breaker.state is CircuitState.HALF_OPEN
        before = model.executor.limiter.levels

        fake_provider.latency = 5.0
        sent.clear()
        calling = await model.create_calling(messages=MESSAGES)
        assert calling.reserved_tokens > 1000
        task = asyncio.create_task(model.invoke(calling))
        await asyncio.wait_for(sent.wait(), 5.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        fake_provider.latency = 0.0

        assert calling.execution.status is EventStatus.CANCELLED
        levels = model.executor.limiter.levels
        assert levels["tokens"] == pytest.approx(before["tokens"], abs=50)
        assert levels["requests"] == pytest.approx(before["requests"] - 1, abs=0.1)
        stats = model.executor.stats()
        assert stats["in_flight"] == 0 and stats["cancelled"] == 1
        assert breaker.state is CircuitState.HALF_OPEN
        assert breaker.metrics["failure_count"] == 1 and breaker.metrics["success_count"] == 0

        # The probe slot and the single connection are free again: the next call is the probe.
        done = await asyncio.wait_for(model.invoke(messages=MESSAGES), 5.0)
        assert done.response is not None and done.response.data
        assert breaker.state is CircuitState.CLOSED


# --- the test mode for users' own tests ----------------------------------------------------------


async def test_no_backoff_documented_example_is_instant() -> None:
    """The module docstring's example: a 503 and a 429 (retry-after 30) retried instantly."""
    start = time.monotonic()
    async with FakeProvider() as fp:
        fp.script(Reply(status=503), Reply(status=429, headers={"retry-after": "30"}))
        model = iModel(
            provider="openai",
            base_url=fp.base_url("openai"),
            api_key=SecretStr("test"),
            model="gpt-4o-mini",
        )
        with no_backoff():
            calling = await model.invoke(messages=[{"role": "user", "content": "Hi"}])
        await model.aclose()
    assert calling.response is not None and calling.response.data
    assert len(fp.requests) == 3
    assert calling.execution.attempts == 3
    assert time.monotonic() - start < 2.0


async def test_backoff_disabled_reports_the_test_mode_to_tasks_started_inside() -> None:
    """backoff_disabled() is true inside no_backoff(), in tasks started there, and not after."""
    assert not backoff_disabled()
    with no_backoff():
        started_inside = asyncio.create_task(_read_switch())
        assert backoff_disabled()
    started_after = asyncio.create_task(_read_switch())
    assert await started_inside
    assert not await started_after
    assert not backoff_disabled()


async def _read_switch() -> bool:
    return backoff_disabled()
