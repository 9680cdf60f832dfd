"""OpenTelemetry spans for calls and attempts, following the GenAI semantic conventions.

Nothing here imports ``opentelemetry`` until an :class:`OtelTracer` is made, which happens
only when a user turns tracing on (install ``lionpride[otel]``). One call is one CLIENT span
named ``"{operation} {model}"`` carrying ``gen_ai.*`` attributes; each attempt is a child
span with its own time window; waiting for capacity and each retry are events on the call's
span. No span ever holds message contents or credentials.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lionpride import errors
from lionpride.services.types.response import Usage

__all__ = ["CallSpan", "OtelTracer"]

_INSTRUMENTATION = "lionpride"


@dataclass(slots=True)
class CallSpan:
    """One call's span and the bookkeeping for its attempt spans.

    Attributes:
        span: The OpenTelemetry span of the whole call.
        name: The span name, ``"{operation} {model}"``, reused by the attempt spans.
        attempts: Attempt spans recorded so far.
        attempt_start_ns: When the next attempt starts (epoch nanoseconds).
    """

    span: Any
    name: str
    attempts: int = 0
    attempt_start_ns: int = 0


class OtelTracer:
    """Make spans for calls; built only when tracing is enabled.

    Args:
        tracer: An OpenTelemetry ``Tracer``; ``None`` takes one named ``lionpride`` from
            the global tracer provider.

    Raises:
        lionpride.errors.ConfigurationError: ``opentelemetry-api`` is not installed.
    """

    def __init__(self, tracer: Any = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError as exc:
            raise errors.ConfigurationError(
                "tracing needs opentelemetry: pip install 'lionpride[otel]'", cause=exc
            ) from exc
        self._trace = trace
        self._tracer = tracer if tracer is not None else trace.get_tracer(_INSTRUMENTATION)

    def start_call(
        self,
        system: str,
        model: str,
        operation: str = "chat",
        *,
        attributes: dict[str, Any] | None = None,
    ) -> CallSpan:
        """Start the span of one call (before it waits for capacity).

        Args:
            system: The provider (``openai``, ``anthropic``, ``gemini``, ``groq``, ...).
            model: The requested model.
            operation: ``chat``, ``text_completion``, ``embeddings``, ``execute_tool``...
            attributes: Extra attributes (never message contents).
        """
        name = f"{operation} {model}"
        attrs: dict[str, Any] = {
            "gen_ai.system": system,
            # The conventions' newer name for gen_ai.system; set both for either reader.
            "gen_ai.provider.name": system,
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": model,
            **(attributes or {}),
        }
        span = self._tracer.start_span(name, kind=self._trace.SpanKind.CLIENT, attributes=attrs)
        return CallSpan(span=span, name=name, attempt_start_ns=time.time_ns())

    @contextmanager
    def activate(self, call: CallSpan) -> Iterator[None]:
        """Make the call's span current inside the block (HTTP spans become its children)."""
        with self._trace.use_span(call.span, end_on_exit=False):
            yield

    def record_queue_wait(self, call: CallSpan, seconds: float) -> None:
        """Note the wait for capacity; the first attempt starts now."""
        call.span.add_event("lionpride.queue_wait", {"lionpride.queue_wait_s": seconds})
        call.span.set_attribute("lionpride.queue_wait_s", seconds)
        call.attempt_start_ns = time.time_ns()

    def record_attempt(
        self, call: CallSpan, *, error: BaseException | None = None, next_delay: float = 0.0
    ) -> None:
        """Close the current attempt as a child span ending now; the next starts after
        ``next_delay`` seconds."""
        now = time.time_ns()
        call.attempts += 1
        context = self._trace.set_span_in_context(call.span)
        span = self._tracer.start_span(
            call.name,
            context=context,
            kind=self._trace.SpanKind.CLIENT,
            attributes={"lionpride.attempt": call.attempts},
            start_time=min(call.attempt_start_ns, now),
        )
        if error is not None:
            self._mark_error(span, error)
        span.end(end_time=now)
        call.attempt_start_ns = now + int(max(next_delay, 0.0) * 1e9)

    def record_retry(
        self, call: CallSpan, attempt: int, error: BaseException, delay: float
    ) -> None:
        """Close the failed attempt and add a retry event (fits a backend's ``on_retry``)."""
        self.record_attempt(call, error=error, next_delay=delay)
        call.span.add_event(
            "lionpride.retry",
            {
                "lionpride.retry.attempt": attempt,
                "lionpride.retry.delay_s": delay,
                "error.type": type(error).__name__,
            },
        )

    def end_call(
        self,
        call: CallSpan,
        *,
        usage: Usage | None = None,
        finish_reason: str | None = None,
        error: BaseException | None = None,
        response_model: str | None = None,
        attempts: int | None = None,
        cost: float | None = None,
    ) -> None:
        """Record the last attempt and the outcome, then end the call's span.

        Args:
            call: What :meth:`start_call` returned.
            usage: The normalized token counts.
            finish_reason: The normalized finish reason.
            error: The failure, if the call failed.
            response_model: The model the provider says answered.
            attempts: Attempts the call made (``Execution.attempts``); attempts not yet
                recorded get one final span. ``None`` means one more attempt ran; 0 none.
            cost: USD cost, when the price is known.
        """
        pending = 1 if attempts is None else attempts - call.attempts
        if pending > 0:
            self.record_attempt(call, error=error)
        span = call.span
        if response_model is not None:
            span.set_attribute("gen_ai.response.model", response_model)
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            span.set_attribute("lionpride.usage.cached_tokens", usage.cached_tokens)
            span.set_attribute("lionpride.usage.reasoning_tokens", usage.reasoning_tokens)
        if finish_reason is not None:
            span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
        if cost is not None:
            span.set_attribute("lionpride.cost_usd", cost)
        span.set_attribute("lionpride.attempts", call.attempts)
        if error is not None:
            self._mark_error(span, error)
        span.end()

    def _mark_error(self, span: Any, error: BaseException) -> None:
        span.set_attribute("error.type", type(error).__name__)
        status_code = getattr(error, "status_code", None)
        if isinstance(status_code, int):
            span.set_attribute("http.response.status_code", status_code)
        # The type name only: a provider's message could echo request contents.
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, type(error).__name__))
