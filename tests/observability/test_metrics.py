"""LatencyHistogram and ModelMetrics: percentiles, fixed memory, and a scripted real run."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.core.event import EventStatus
from lionpride.services import iModel
from lionpride.services.observability import (
    LatencyHistogram,
    ModelMetrics,
    PriceTable,
    default_prices,
)
from lionpride.services.types.backend import Calling
from lionpride.services.types.response import Usage
from lionpride.services.utilities.resilience import no_backoff
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Hello!"}]


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def test_percentiles_are_within_the_bucket_resolution() -> None:
    """p50/p90/p99 of 1..2000 ms are within 2.5% of the exact nearest-rank values."""
    hist = LatencyHistogram()
    values = [k * 1e-3 for k in range(1, 2001)]
    for value in values:
        hist.record(value)
    for q in (1, 50, 90, 99, 100):
        exact = _nearest_rank(values, q)
        assert hist.percentile(q) == pytest.approx(exact, rel=0.026), q
    summary = hist.to_dict()
    assert summary["count"] == 2000
    assert summary["mean"] == pytest.approx(sum(values) / 2000)
    assert (summary["min"], summary["max"]) == (0.001, 2.0)


def test_out_of_range_values_are_clamped_to_what_was_seen() -> None:
    """Values under 1 µs, over 10 min, or negative still count and report sensibly."""
    hist = LatencyHistogram()
    assert hist.percentile(50) is None and hist.to_dict()["p99"] is None
    for value in (-1.0, 2e-7, 4e-7):
        hist.record(value)
    assert hist.percentile(100) == pytest.approx(4e-7)
    assert hist.min == 0.0
    hist.record(3600.0)
    assert hist.percentile(100) == 3600.0
    with pytest.raises(ValueError):
        hist.record(math.nan)
    with pytest.raises(ValueError):
        hist.percentile(101)


def test_histogram_memory_does_not_grow_with_100000_calls() -> None:
    """Recording 100,000 durations allocates no lasting memory and adds no buckets."""
    hist = LatencyHistogram()
    buckets = hist.buckets
    assert buckets < 500  # 1 µs .. 10 min at 5% steps
    for k in range(1_000):
        hist.record((k % 500 + 1) * 1e-3)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for k in range(100_000):
            hist.record((k * 7919 % 600_000 + 1) * 1e-3)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert hist.count == 101_000
    assert hist.buckets == buckets
    # Bucket counters turn into larger ints once; nothing accumulates per call.
    assert after - before < 16 * 1024


def test_error_types_are_capped() -> None:
    """Past max_error_types distinct names, further failures count under 'other'."""
    metrics = ModelMetrics(max_error_types=3)
    kinds = [type(f"Error{i}", (Exception,), {}) for i in range(5)]
    for kind in kinds:
        metrics.record_call(status="failed", duration=0.1, error=kind("x"))
    metrics.record_call(status="failed", duration=0.1, error=kinds[0]("again"))
    metrics.record_call(status="cancelled", duration=None)
    snap = metrics.snapshot()
    assert snap["failures_by_type"] == {"Error0": 2, "Error1": 1, "Error2": 1, "other": 3}
    assert (snap["calls"], snap["failures"], snap["successes"]) == (7, 7, 0)
    assert snap["latency"]["count"] == 6


def test_metrics_memory_is_bounded_with_many_error_types() -> None:
    """20,000 calls with 1,000 distinct error types keep at most 101 type entries."""
    metrics = ModelMetrics()
    kinds = [type(f"Kind{i}", (Exception,), {}) for i in range(1_000)]
    errs = [kind() for kind in kinds]
    usage = Usage(input_tokens=10, output_tokens=5)
    for k in range(2_000):
        metrics.record_call(status="failed", duration=0.01, error=errs[k % 1_000], usage=usage)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for k in range(20_000):
            metrics.record_call(
                status="failed", duration=0.01, error=errs[k % 1_000], usage=usage, cost=1e-6
            )
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(metrics.failures_by_type) == 101
    assert after - before < 16 * 1024


def test_retries_and_rate_limits_are_counted_once_each() -> None:
    """A retried 429 counts in record_retry, a final 429 in record_call; retries counted."""
    metrics = ModelMetrics()
    limited = errors.RateLimitError("slow down", status_code=429)
    metrics.record_retry(limited)
    metrics.record_retry(errors.ServerError("boom", status_code=500))
    metrics.record_call(status=EventStatus.FAILED, duration=1.0, attempts=3, error=limited)
    snap = metrics.snapshot(
        queue_depth=4, in_flight=2, limiter_levels={"requests": 3.5}, breaker_state="open"
    )
    assert (snap["retries"], snap["rate_limited"], snap["attempts"]) == (2, 2, 3)
    assert snap["failures_by_type"] == {"RateLimitError": 1}
    assert snap["queue_depth"] == 4 and snap["in_flight"] == 2
    assert snap["limiter_levels"] == {"requests": 3.5} and snap["breaker_state"] == "open"


# -- a scripted run against FakeProvider, recorded the way iModel will record it -----------

USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 20,
    "total_tokens": 120,
    "prompt_tokens_details": {"cached_tokens": 40},
    "completion_tokens_details": {"reasoning_tokens": 5},
}


async def _recorded_call(
    model: iModel, metrics: ModelMetrics, prices: PriceTable, name: str
) -> Calling:
    """Run one call and record it the way the iModel integration will."""
    calling = await model.create_calling(model=name, messages=MESSAGES)
    upstream = calling.retry_listener

    def on_retry(attempt: int, error: BaseException, delay: float) -> Any:
        metrics.record_retry(error)
        return upstream(attempt, error, delay) if upstream is not None else None

    calling.retry_listener = on_retry
    calling = await model.invoke(calling, raise_on_error=False)
    ex = calling.execution
    usage = calling.response.usage if calling.response is not None else None
    metrics.record_call(
        status=ex.status,
        duration=ex.duration,
        queue_wait=ex.queue_wait,
        attempts=ex.attempts,
        usage=usage,
        cost=prices.cost(name, usage),
        error=ex.error,
    )
    return calling


async def test_scripted_run_metrics_match_what_happened(fake_provider: FakeProvider) -> None:
    """429s, 5xx and successes against FakeProvider give exactly the expected snapshot."""
    ok = Reply(usage=USAGE)
    fake_provider.script(
        ok,  # call 1: success at once
        Reply(status=429),
        ok,  # call 2: one 429 retried, then success
        Reply(status=500),
        Reply(status=503),
        ok,  # call 3: two 5xx retried, then success
        Reply(status=429),
        Reply(status=429),
        Reply(status=429),  # call 4: 429 three times, gives up
        Reply(status=502),
        Reply(status=502),
        Reply(status=502),  # call 5: 5xx three times, gives up
        Reply(status=400),  # call 6: bad request, never retried
    )
    metrics, prices = ModelMetrics(), default_prices()
    model = iModel(
        provider="openai", base_url=fake_provider.base_url("openai"), api_key=SecretStr("k")
    )
    async with model:
        with no_backoff():
            callings = [
                await _recorded_call(model, metrics, prices, "gpt-4o-mini") for _ in range(6)
            ]
    assert [c.execution.attempts for c in callings] == [1, 2, 3, 3, 3, 1]
    assert len(fake_provider.requests) == 13 and fake_provider.pending == 0

    # gpt-4o-mini: 60 fresh * $0.15 + 40 cached * $0.075 + 15 visible * $0.60 + 5 * $0.60
    per_call = (60 * 0.15 + 40 * 0.075 + 15 * 0.6 + 5 * 0.6) / 1e6
    snap = metrics.snapshot(queue_depth=0, in_flight=0)
    latency = snap.pop("latency")
    queue_wait = snap.pop("queue_wait")
    assert snap == {
        "calls": 6,
        "successes": 3,
        "failures": 3,
        "failures_by_type": {"RateLimitError": 1, "ServerError": 1, "BadRequestError": 1},
        "attempts": 13,
        "retries": 7,
        "rate_limited": 4,
        "tokens_in": 300,
        "tokens_out": 60,
        "cached_tokens": 120,
        "reasoning_tokens": 15,
        "cost_usd": pytest.approx(3 * per_call, rel=1e-9),
        "unpriced_calls": 0,
        "queue_depth": 0,
        "in_flight": 0,
        "limiter_levels": None,
        "breaker_state": None,
    }
    assert per_call == pytest.approx(24e-6)
    durations = [c.execution.duration for c in callings]
    assert all(d is not None for d in durations)
    seen = [d for d in durations if d is not None]
    assert latency["count"] == 6 and latency["max"] == max(seen)
    for q in (50, 90, 99):
        assert latency[f"p{q}"] == pytest.approx(_nearest_rank(seen, q), rel=0.026)
    assert queue_wait["count"] == 6 and queue_wait["max"] == 0.0
