"""Per-model call metrics in fixed memory.

:class:`ModelMetrics` counts what happened to a model's calls (successes, failures by error
type, retries, 429s, tokens, cost) and keeps latency and queue-wait distributions in
:class:`LatencyHistogram`\\ s: log-spaced buckets whose number is fixed when the histogram is
made, so memory stays the same after ten calls or ten million.
"""

from __future__ import annotations

import math
from typing import Any

from lionpride import errors
from lionpride.services.types.response import Usage

__all__ = ["LatencyHistogram", "ModelMetrics"]

_SUCCESS = "completed"
_OTHER = "other"


class LatencyHistogram:
    """Percentiles of durations from log-spaced buckets, in fixed memory.

    Bucket ``i`` covers ``[min_value·growth^(i-1), min_value·growth^i)``; a percentile is
    reported as its bucket's geometric middle, so it is within ``sqrt(growth) - 1`` (about
    2.5% for the default 5% growth) of the true value. Values below ``min_value`` share one
    bucket reported as ``min_value``, values from ``max_value`` up one reported as the
    largest value seen; every report is clamped to the smallest and largest values seen.

    Args:
        min_value: Smallest value resolved, in seconds (default 1 µs, for in-process tools).
        max_value: Largest value resolved, in seconds (default 10 minutes).
        growth: Ratio between consecutive bucket bounds (default 1.05).
    """

    __slots__ = (
        "_counts",
        "_log_growth",
        "count",
        "growth",
        "max",
        "max_value",
        "min",
        "min_value",
        "total",
    )

    def __init__(
        self, min_value: float = 1e-6, max_value: float = 600.0, growth: float = 1.05
    ) -> None:
        if not (0 < min_value < max_value and math.isfinite(max_value)):
            raise errors.ValidationError("need 0 < min_value < max_value < inf")
        if not (growth > 1 and math.isfinite(growth)):
            raise errors.ValidationError("growth must be a finite number > 1")
        self.min_value = min_value
        self.max_value = max_value
        self.growth = growth
        self._log_growth = math.log(growth)
        inner = math.ceil(math.log(max_value / min_value) / self._log_growth)
        # [underflow] + inner log-spaced buckets + [overflow]
        self._counts = [0] * (inner + 2)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    @property
    def buckets(self) -> int:
        """How many buckets the histogram holds (fixed at construction)."""
        return len(self._counts)

    def record(self, seconds: float) -> None:
        """Add one duration; a negative one counts as zero.

        Raises:
            ValueError: ``seconds`` is NaN.
        """
        if seconds != seconds:  # NaN
            raise errors.ValidationError("cannot record NaN")
        value = seconds if seconds > 0.0 else 0.0
        counts = self._counts
        if value < self.min_value:
            index = 0
        elif value >= self.max_value:
            index = len(counts) - 1
        else:
            index = int(math.log(value / self.min_value) / self._log_growth) + 1
            # Rounding at a bucket bound can land one past the last inner bucket.
            if index > len(counts) - 2:
                index = len(counts) - 2
        counts[index] += 1
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def percentile(self, q: float) -> float | None:
        """Return the ``q``-th percentile (0-100) by nearest rank, ``None`` when empty.

        Raises:
            ValueError: ``q`` outside 0-100.
        """
        if not 0 <= q <= 100:
            raise errors.ValidationError(f"percentile must be within 0-100, got {q!r}")
        if self.count == 0:
            return None
        index = self._bucket_of_rank(max(1, math.ceil(q / 100 * self.count)))
        last = len(self._counts) - 1
        if index == 0:
            value = self.min_value
        elif index == last:
            value = self.max
        else:
            value = self.min_value * self.growth ** (index - 0.5)
        return min(max(value, self.min), self.max)

    def _bucket_of_rank(self, rank: int) -> int:
        seen = 0
        for index, bucket in enumerate(self._counts):
            seen += bucket
            if seen >= rank:
                return index
        return len(self._counts) - 1

    def to_dict(self) -> dict[str, Any]:
        """Return count, mean, min, max and p50/p90/p99 (``None`` when empty)."""
        empty = self.count == 0
        return {
            "count": self.count,
            "mean": None if empty else self.total / self.count,
            "min": None if empty else self.min,
            "max": None if empty else self.max,
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
        }


class ModelMetrics:
    """What happened to one model's calls, in fixed memory.

    Record every finished call once with :meth:`record_call` and every retry (once per
    failed attempt that is tried again) with :meth:`record_retry`. A 429 is counted where it
    is seen: by ``record_retry`` when it was retried, by ``record_call`` when it ended the
    call, so each 429 response counts once.

    Args:
        max_error_types: Most distinct error type names kept; later ones count as ``other``.
    """

    def __init__(self, *, max_error_types: int = 100) -> None:
        if max_error_types < 1:
            raise errors.ValidationError("max_error_types must be >= 1")
        self.max_error_types = max_error_types
        self.calls = 0
        self.successes = 0
        self.failures_by_type: dict[str, int] = {}
        self.attempts = 0
        self.retries = 0
        self.rate_limited = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.cached_tokens = 0
        self.reasoning_tokens = 0
        self.cost_usd = 0.0
        self.unpriced_calls = 0
        self.latency = LatencyHistogram()
        self.queue_wait = LatencyHistogram()

    @property
    def failures(self) -> int:
        """Calls that did not complete."""
        return self.calls - self.successes

    def record_call(
        self,
        *,
        status: str,
        duration: float | None,
        queue_wait: float = 0.0,
        attempts: int = 1,
        usage: Usage | None = None,
        cost: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Count one finished call.

        Args:
            status: The Calling's final status (``EventStatus`` or its value);
                ``"completed"`` is a success, anything else a failure.
            duration: Wall seconds of the call, when it ran.
            queue_wait: Seconds it waited for capacity.
            attempts: Attempts made (retries + 1); 0 if it never ran.
            usage: The normalized token counts, when reported.
            cost: USD cost, when the model's price is known.
            error: The failure; its type name is the key in ``failures_by_type``.
        """
        self.calls += 1
        if status == _SUCCESS:
            self.successes += 1
        else:
            self._count_failure(type(error).__name__ if error is not None else str(status))
        if error is not None and _is_rate_limit(error):
            self.rate_limited += 1
        self.attempts += max(attempts, 0)
        if usage is not None:
            self.tokens_in += usage.input_tokens
            self.tokens_out += usage.output_tokens
            self.cached_tokens += usage.cached_tokens
            self.reasoning_tokens += usage.reasoning_tokens
            if cost is None:
                self.unpriced_calls += 1
        if cost is not None:
            self.cost_usd += cost
        if duration is not None:
            self.latency.record(duration)
        self.queue_wait.record(queue_wait)

    def _count_failure(self, key: str) -> None:
        counts = self.failures_by_type
        if key not in counts and len(counts) >= self.max_error_types:
            # Keep the table bounded: the first types seen keep their names.
            key = _OTHER
        counts[key] = counts.get(key, 0) + 1

    def record_retry(self, error: BaseException) -> None:
        """Count one failed attempt that is being tried again (a 429 also counts as seen)."""
        self.retries += 1
        if _is_rate_limit(error):
            self.rate_limited += 1

    def snapshot(
        self,
        *,
        queue_depth: int | None = None,
        in_flight: int | None = None,
        limiter_levels: dict[str, Any] | None = None,
        breaker_state: str | None = None,
    ) -> dict[str, Any]:
        """Return every counter plus the live gauges given, as a JSON-safe dict.

        Args:
            queue_depth: Calls waiting for capacity now.
            in_flight: Calls running now.
            limiter_levels: The limiter's current levels (tokens and requests available).
            breaker_state: The circuit breaker's state (``closed``, ``open``, ``half_open``).
        """
        return {
            "calls": self.calls,
            "successes": self.successes,
            "failures": self.failures,
            "failures_by_type": dict(self.failures_by_type),
            "attempts": self.attempts,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": self.cost_usd,
            "unpriced_calls": self.unpriced_calls,
            "latency": self.latency.to_dict(),
            "queue_wait": self.queue_wait.to_dict(),
            "queue_depth": queue_depth,
            "in_flight": in_flight,
            "limiter_levels": limiter_levels,
            "breaker_state": breaker_state,
        }


def _is_rate_limit(error: BaseException | None) -> bool:
    if error is None:
        return False
    return isinstance(error, errors.RateLimitError) or getattr(error, "status_code", None) == 429
