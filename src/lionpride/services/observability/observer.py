"""ModelObserver: what an iModel records about each call, in one place.

Runs once per call (``start``/``finish``) and once per retry (``retry``): the call's cost goes
on its ``Execution``, the counters and latency histograms into :class:`ModelMetrics`, a span
into OpenTelemetry when enabled, and structured log lines under ``lionpride.services``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from lionpride.core.event import EventStatus
from lionpride.services.observability.logs import log_attempt, log_failure
from lionpride.services.observability.metrics import ModelMetrics
from lionpride.services.observability.pricing import PriceTable, default_prices
from lionpride.services.types.response import NormalizedResponse

if TYPE_CHECKING:
    from lionpride.core.event import Execution
    from lionpride.services.observability.otel import CallSpan, OtelTracer

__all__ = ["ModelObserver"]

_log = logging.getLogger("lionpride.services")


class ModelObserver:
    """Prices, metrics, spans and logs for one model's calls.

    Args:
        prices: The price table; the shipped one (``default_prices()``) when omitted.
        tracer: An :class:`OtelTracer` to make one span per call, or ``None``.
    """

    __slots__ = ("metrics", "prices", "tracer")

    def __init__(self, prices: PriceTable | None = None, tracer: OtelTracer | None = None) -> None:
        self.prices = prices if prices is not None else default_prices()
        self.metrics = ModelMetrics()
        self.tracer = tracer

    def start(self, provider: str, model: str | None) -> CallSpan | None:
        """Open the call's span (when tracing); returns the handle to pass back."""
        if self.tracer is None:
            return None
        return self.tracer.start_call(provider, model or "unknown")

    def retry(
        self,
        provider: str,
        model: str | None,
        attempt: int,
        error: BaseException,
        delay: float,
        span: CallSpan | None = None,
    ) -> None:
        """Record a failed attempt that will be tried again after ``delay`` seconds."""
        self.metrics.record_retry(error)
        log_attempt(
            _log,
            provider=provider,
            model=model,
            attempt=attempt,
            duration=None,
            error=error,
            retry_in=delay,
        )
        if span is not None and self.tracer is not None:
            self.tracer.record_retry(span, attempt, error, delay)

    def finish(
        self,
        execution: Execution,
        provider: str,
        model: str | None,
        span: CallSpan | None = None,
    ) -> None:
        """Record a finished call; sets ``execution.cost`` when it is known.

        A backend that reports what the call cost (Claude Code's ``total_cost_usd``, in
        ``metadata``) is taken at its word; otherwise the price table prices the usage.
        """
        response = execution.response
        if not isinstance(response, NormalizedResponse):
            response = None
        usage = cost = None
        if response is not None:
            usage = response.usage
            if "total_cost_usd" in response.metadata:
                cost = _reported_cost(response.metadata)
        if cost is None and usage is not None:
            cost = self.prices.cost(model, usage)
        execution.cost = cost
        error = execution.error
        self.metrics.record_call(
            status=execution.status,
            duration=execution.duration,
            queue_wait=execution.queue_wait,
            attempts=execution.attempts,
            usage=usage,
            cost=cost,
            error=error,
        )
        if error is None and execution.status is EventStatus.CANCELLED:
            # Cancelled: no error of its own, yet no success either; the log line and the
            # span say how it ended (the metrics count it under its status).
            error = asyncio.CancelledError()
        if error is not None:
            log_failure(
                _log,
                provider=provider,
                model=model,
                attempts=execution.attempts,
                duration=execution.duration,
                error=error,
            )
        elif _log.isEnabledFor(logging.DEBUG):  # checked here too: this is every success
            log_attempt(
                _log,
                provider=provider,
                model=model,
                attempt=execution.attempts,
                duration=execution.duration,
            )
        if span is not None and self.tracer is not None:
            # record_queue_wait also marks "the first attempt starts now", but the call is
            # over: keep the start a retry set, or date a lone attempt from the call's
            # duration, so the last attempt's span covers the attempt, not a few µs.
            start = span.attempt_start_ns
            if span.attempts == 0 and execution.duration is not None:
                start = time.time_ns() - int(execution.duration * 1e9)
            self.tracer.record_queue_wait(span, execution.queue_wait)
            span.attempt_start_ns = start
            self.tracer.end_call(
                span,
                usage=usage,
                finish_reason=response.finish_reason if response is not None else None,
                error=error,
                response_model=response.metadata.get("model") if response is not None else None,
                attempts=execution.attempts,
                cost=cost,
            )

    def snapshot(self, **gauges: Any) -> dict[str, Any]:
        """The metrics with the live gauges given (queue depth, in flight, levels, breaker)."""
        return self.metrics.snapshot(**gauges)


def _reported_cost(metadata: dict[str, Any]) -> float | None:
    """The USD cost a backend reported for the call, when it is a usable number."""
    value = metadata.get("total_cost_usd")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None
