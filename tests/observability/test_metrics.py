"""LatencyHistogram and ModelMetrics: percentiles, counting rules and fixed memory.

The same metrics recorded by a real iModel are checked in ``test_imodel_metrics.py``.
"""

from __future__ import annotations

import math
import tracemalloc

import pytest

from lionpride import errors
from lionpride.core.event import EventStatus
from lionpride.services.observability import LatencyHistogram, ModelMetrics
from lionpride.services.types.response import Usage


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
