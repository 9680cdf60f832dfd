"""Limits learned from provider headers and 429s, driven by a fake clock."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from lionpride.core.clock import FakeClock
from lionpride.services.utilities.adaptive import (
    AdaptiveCapacity,
    LimitReading,
    parse_duration,
    read_limit_headers,
)
from lionpride.services.utilities.rate_limiter import RateLimiter


def openai(limit: int, remaining: int, reset: str, family: str = "requests") -> dict[str, str]:
    """OpenAI-style headers for one family."""
    return {
        f"x-ratelimit-limit-{family}": str(limit),
        f"x-ratelimit-remaining-{family}": str(remaining),
        f"x-ratelimit-reset-{family}": reset,
    }


# Parsing


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1m30.5s", 90.5),
        ("59.9ms", 0.0599),
        ("2h0m0s", 7200.0),
        ("12ms", 0.012),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
    ],
)
def test_openai_durations_parse_to_seconds(text: str, seconds: float) -> None:
    """Every Go duration form OpenAI sends reads as its number of seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "1s junk", "-1s", "1.5"])
def test_malformed_durations_are_none(text: str) -> None:
    """A duration that is not a well-formed Go duration reads as None, never a guess."""
    assert parse_duration(text) is None


def test_openai_headers_read_both_families() -> None:
    """OpenAI's request and token families are both read, resets as durations."""
    headers = {**openai(500, 499, "120ms"), **openai(30000, 29000, "2s", "tokens")}
    assert read_limit_headers(headers) == {
        "requests": LimitReading(500, 499, 0.12),
        "tokens": LimitReading(30000, 29000, 2.0),
    }


def test_anthropic_headers_read_every_family_with_rfc3339_resets() -> None:
    """Anthropic's four families are read, resets as seconds from now until the RFC 3339 time."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    headers = {}
    for family, reset in (
        ("requests", "2026-01-01T12:00:01Z"),
        ("tokens", "2026-01-01T12:00:30Z"),
        ("input-tokens", "2026-01-01T12:00:30.5+00:00"),
        ("output-tokens", "2026-01-01T11:59:59Z"),
    ):
        headers[f"anthropic-ratelimit-{family}-limit"] = "1000"
        headers[f"anthropic-ratelimit-{family}-remaining"] = "900"
        headers[f"anthropic-ratelimit-{family}-reset"] = reset
    readings = read_limit_headers(headers, wall_now=now)
    assert readings == {
        "requests": LimitReading(1000, 900, 1.0),
        "tokens": LimitReading(1000, 900, 30.0),
        "input_tokens": LimitReading(1000, 900, 30.5),
        "output_tokens": LimitReading(1000, 900, 0.0),  # a time past: full now
    }


@pytest.mark.parametrize(
    "date", ["Thu, 01 Jan 2026 12:00:00 GMT", "Thu, 01 Jan 2026 12:00:00 -0000"]
)
def test_anthropic_resets_count_from_the_providers_date_when_the_client_runs_ahead(
    date: str,
) -> None:
    """A client clock 1.5 s ahead of the provider's does not shorten a reset: the answer's
    Date header is the provider's now."""
    served = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    headers = {
        "date": date,
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "47",
        "anthropic-ratelimit-requests-reset": "2026-01-01T12:00:02Z",
    }
    readings = read_limit_headers(headers, wall_now=served + 1.5)
    assert readings["requests"] == LimitReading(50, 47, 2.0)
    late = read_limit_headers({**headers, "date": "not a date"}, wall_now=served + 1.5)
    assert late["requests"].reset == 0.5  # without a Date, the client's clock is all there is
    # Within the Date's second the client's clock may be right: it is kept.
    assert read_limit_headers(headers, wall_now=served + 0.5)["requests"].reset == 1.5


def test_no_limit_headers_read_as_nothing() -> None:
    """An answer without rate-limit headers gives no readings."""
    assert read_limit_headers({"content-type": "application/json", "retry-after": "3"}) == {}


# Learning from headers


def gated(clock: FakeClock, **limits: int) -> tuple[AdaptiveCapacity, RateLimiter]:
    """An adaptive capacity and a limiter over it, on the fake clock."""
    capacity = AdaptiveCapacity(clock=clock, **limits)  # type: ignore[arg-type]
    return capacity, RateLimiter(clock=clock, backend=capacity)


async def test_before_the_first_answer_one_call_goes() -> None:
    """With no configured limit, one call goes and the next waits for an answer."""
    clock = FakeClock()
    capacity, limiter = gated(clock)
    assert limiter.try_acquire() is not None
    assert limiter.try_acquire() is None
    capacity.answered(openai(600, 599, "100ms"), capacity.sent(), False)
    assert limiter.try_acquire() is not None


async def test_the_first_answer_gate_lets_one_more_through_each_second() -> None:
    """A first answer that never comes holds the next call back one second, not forever."""
    clock = FakeClock()
    _, limiter = gated(clock)
    assert limiter.try_acquire() is not None
    waiter = asyncio.create_task(limiter.acquire())
    await clock.advance(0.9)
    assert not waiter.done()
    await clock.advance(0.2)
    assert waiter.done()


async def test_headers_set_capacity_rate_and_level() -> None:
    """A reading sets the bucket's capacity, its rate from (limit - remaining - 1) / reset
    (never above the true rate: remaining is rounded down), and its level from what remained."""
    clock = FakeClock()
    capacity, limiter = gated(clock)
    limiter.try_acquire()
    capacity.answered(openai(60, 50, "10s"), capacity.sent(), False)
    bucket = capacity.request_bucket
    assert (bucket.capacity, bucket.refill_rate) == (60, 0.9)
    assert bucket.level == 50
    assert capacity.learned()["requests"]["source"] == "headers"
    assert capacity.learned()["requests"]["per_minute"] == 54.0


async def test_calls_sent_after_an_attempt_are_not_credited_again() -> None:
    """What remained when the provider admitted a call is less the calls sent since."""
    clock = FakeClock()
    capacity, limiter = gated(clock, limit_requests=100)
    limiter.try_acquire()
    mark = capacity.sent()
    for _ in range(5):  # sent while the first call was answered
        assert limiter.try_acquire() is not None
    capacity.answered(openai(60, 50, "10s"), mark, False)
    assert capacity.request_bucket.level == 45


async def test_a_reading_never_raises_the_level_of_the_same_bucket() -> None:
    """A stale reading that shows more room than the bucket holds credits nothing."""
    clock = FakeClock()
    capacity, limiter = gated(clock)
    limiter.try_acquire()
    capacity.answered(openai(60, 10, "50s"), capacity.sent(), False)
    capacity.answered(openai(60, 40, "20s"), capacity.sent(), False)
    assert capacity.request_bucket.level == 10


async def test_a_tightened_limit_reshapes_the_bucket_at_once() -> None:
    """A new, smaller limit in the headers replaces the capacity, rate and level."""
    clock = FakeClock()
    capacity, limiter = gated(clock)
    limiter.try_acquire()
    capacity.answered(openai(600, 500, "10s"), capacity.sent(), False)
    capacity.answered(openai(60, 55, "4s"), capacity.sent(), False)
    bucket = capacity.request_bucket
    assert (bucket.capacity, bucket.refill_rate, bucket.level) == (60, 1.0, 55)


async def test_configured_limits_bound_what_is_learned() -> None:
    """Learned capacity and rate never exceed the configured limit."""
    clock = FakeClock()
    capacity, limiter = gated(clock, limit_requests=30, capacity_refresh_time=60)
    limiter.try_acquire()
    capacity.answered(openai(600, 300, "30s"), capacity.sent(), False)
    bucket = capacity.request_bucket
    assert (bucket.capacity, bucket.refill_rate) == (30, 0.5)
    assert capacity.learned()["requests"]["source"] == "configured"


async def test_the_rate_comes_from_the_most_precise_reading() -> None:
    """A reading with a larger deficit (less rounding error) decides the rate."""
    clock = FakeClock()
    capacity, limiter = gated(clock)
    limiter.try_acquire()
    capacity.answered(openai(6002, 1, "60s", "tokens"), capacity.sent(), False)
    capacity.answered(openai(6002, 5999, "2ms", "tokens"), capacity.sent(), False)
    assert capacity.token_bucket.refill_rate == 100.0


async def test_tokens_are_metered_once_the_provider_names_a_token_limit() -> None:
    """Token reservations start when a token limit is configured or learned, not before."""
    clock = FakeClock()
    capacity, limiter = gated(clock)
    assert limiter.token_capacity is None
    capacity.answered(openai(1000, 900, "6s", "tokens"), capacity.sent(), False)
    assert limiter.token_capacity is not None


async def test_a_request_above_a_learned_capacity_waits_for_a_full_bucket() -> None:
    """A reservation larger than the learned token bucket goes once it is full, into debt."""
    clock = FakeClock()
    capacity, limiter = gated(clock, limit_requests=100)
    capacity.answered(openai(1000, 1000, "0s", "tokens"), capacity.sent(), False)
    assert limiter.try_acquire(1, 1500) is not None
    assert capacity.token_bucket.level == -500


async def test_anthropic_resets_count_from_when_the_attempt_went_out() -> None:
    """A reset time is read against the send time, so a slow answer never shortens it."""
    clock = FakeClock()
    capacity, limiter = gated(clock)
    limiter.try_acquire()
    requests, tokens, _ = capacity.sent()
    mark = (requests, tokens, time.time() - 5)  # went out 5 s before this answer is read
    reset = datetime.fromtimestamp(mark[2] + 10, UTC).isoformat()
    headers = {
        "anthropic-ratelimit-requests-limit": "60",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": reset,
    }
    capacity.answered(headers, mark, False)
    assert capacity.request_bucket.refill_rate == pytest.approx(1.0)


async def test_anthropic_input_tokens_pace_when_no_combined_family_comes() -> None:
    """Without a combined token family, the input family shapes the token bucket; the
    output family is shown."""
    clock = FakeClock()
    capacity, limiter = gated(clock)
    limiter.try_acquire()
    reset = datetime.fromtimestamp(clock.now() + 1e9, UTC)  # far: the rate is not used here
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-input-tokens-reset": reset.isoformat(),
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "8000",
    }
    capacity.answered(headers, capacity.sent(), False)
    assert capacity.token_bucket.capacity == 40000
    assert set(capacity.learned()) == {"requests", "tokens", "input_tokens", "output_tokens"}


# Learning from 429s (no headers)


async def ramp(capacity: AdaptiveCapacity, clock: FakeClock, per_second: int, seconds: int) -> None:
    """Answer ``per_second`` successes a second for ``seconds`` seconds."""
    for _ in range(seconds * per_second):
        capacity.answered({}, capacity.sent(), False)
        await clock.advance(1 / per_second)


async def test_a_429_cuts_the_rate_below_the_measured_success_rate() -> None:
    """Without headers, a 429 cuts the request rate to 0.7 of the rate that succeeded."""
    clock = FakeClock()
    capacity, _ = gated(clock)
    await ramp(capacity, clock, 20, 2)
    capacity.answered({}, capacity.sent(), True)
    assert capacity.request_bucket.refill_rate == pytest.approx(14.0, rel=0.05)
    assert capacity.learned()["requests"]["source"] == "429s"


async def test_successes_win_the_cut_back_additively() -> None:
    """After a cut, each success raises the rate linearly in time, back at the old rate
    after four seconds."""
    clock = FakeClock()
    capacity, _ = gated(clock)
    await ramp(capacity, clock, 20, 2)
    capacity.answered({}, capacity.sent(), True)
    cut = capacity.request_bucket.refill_rate
    await clock.advance(2)
    capacity.answered({}, capacity.sent(), False)
    assert capacity.request_bucket.refill_rate == pytest.approx(cut / 0.7 * 0.85, rel=0.05)
    await clock.advance(2)
    capacity.answered({}, capacity.sent(), False)
    assert capacity.request_bucket.refill_rate == pytest.approx(cut / 0.7, rel=0.05)


async def test_429s_of_calls_sent_before_a_cut_do_not_cut_again() -> None:
    """A round of 429s for calls already in flight cuts the rate once, not once each."""
    clock = FakeClock()
    capacity, _ = gated(clock)
    await ramp(capacity, clock, 20, 2)
    marks = [capacity.sent() for _ in range(5)]
    for mark in marks:
        capacity.answered({}, mark, True)
    assert capacity.request_bucket.refill_rate == pytest.approx(14.0, rel=0.05)


async def test_a_429_no_wait_cures_teaches_nothing() -> None:
    """An answer that is neither a success nor a curable 429 (a spent quota) leaves the
    rate alone."""
    clock = FakeClock()
    capacity, _ = gated(clock)
    await ramp(capacity, clock, 20, 2)
    before = capacity.request_bucket.refill_rate
    capacity.answered({}, capacity.sent(), None)
    assert capacity.request_bucket.refill_rate == before
    assert capacity.learned()["requests"]["source"] == "unlimited"


async def test_the_429_rate_never_exceeds_the_configured_limit() -> None:
    """AIMD probing stops at the configured limit."""
    clock = FakeClock()
    capacity, _ = gated(clock, limit_requests=600, capacity_refresh_time=60)
    await ramp(capacity, clock, 8, 2)
    capacity.answered({}, capacity.sent(), True)
    await clock.advance(60)
    capacity.answered({}, capacity.sent(), False)
    assert capacity.request_bucket.refill_rate == 10.0
    assert capacity.learned()["requests"]["source"] == "configured"


async def test_a_cut_empties_the_request_bucket() -> None:
    """A 429 says the provider's bucket is empty: the next call waits for the cut rate."""
    clock = FakeClock()
    capacity, limiter = gated(clock)
    await ramp(capacity, clock, 20, 2)
    capacity.answered({}, capacity.sent(), True)
    assert capacity.request_bucket.level <= 0
    assert limiter.try_acquire() is None
