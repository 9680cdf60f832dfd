"""Observability for calls: prices and cost, metrics, OpenTelemetry spans, log lines.

:class:`PriceTable` (``default_prices()`` for the shipped, dated table) turns a model and
its :class:`~lionpride.services.types.response.Usage` into USD; :class:`ModelMetrics` keeps a
model's counters and latency percentiles in fixed memory; :class:`OtelTracer` makes GenAI
spans and is importable without ``opentelemetry`` installed (it loads it only when built);
:func:`log_attempt` and :func:`log_failure` write structured lines under ``lionpride``.
"""

from __future__ import annotations

from lionpride.services.observability.logs import log_attempt, log_failure
from lionpride.services.observability.metrics import LatencyHistogram, ModelMetrics
from lionpride.services.observability.otel import CallSpan, OtelTracer
from lionpride.services.observability.pricing import ModelPrice, PriceTable, default_prices

__all__ = [
    "CallSpan",
    "LatencyHistogram",
    "ModelMetrics",
    "ModelPrice",
    "OtelTracer",
    "PriceTable",
    "default_prices",
    "log_attempt",
    "log_failure",
]
