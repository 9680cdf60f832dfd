"""OtelTracer: GenAI spans per call and per attempt, recorded by an in-memory exporter."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.observability import OtelTracer
from lionpride.services.types.response import Usage
from lionpride.services.utilities.resilience import no_backoff
from lionpride.testing import FakeProvider, Reply

HAVE_SDK = importlib.util.find_spec("opentelemetry") is not None and (
    importlib.util.find_spec("opentelemetry.sdk") is not None
)
needs_sdk = pytest.mark.skipif(
    not HAVE_SDK, reason="opentelemetry-sdk is not installed (pip install 'lionpride[otel]')"
)


@pytest.fixture
def otel() -> Any:
    """An OtelTracer over its own TracerProvider (no global state) and its in-memory exporter."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield OtelTracer(provider.get_tracer("test")), memory
    provider.shutdown()


def _split(spans: Any) -> tuple[Any, list[Any]]:
    calls = [s for s in spans if "lionpride.attempt" not in s.attributes]
    attempts = sorted(
        (s for s in spans if "lionpride.attempt" in s.attributes),
        key=lambda s: s.attributes["lionpride.attempt"],
    )
    assert len(calls) == 1
    return calls[0], attempts


def test_import_does_not_load_opentelemetry() -> None:
    """Importing lionpride.services.observability leaves opentelemetry unimported."""
    code = (
        "import sys, lionpride.services.observability\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_missing_opentelemetry_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without opentelemetry installed, enabling tracing says which extra to install."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(errors.ConfigurationError, match=r"lionpride\[otel\]"):
        OtelTracer()


@needs_sdk
def test_call_and_attempt_spans_follow_genai_conventions(otel: Any) -> None:
    """A retried call gives one CLIENT call span with gen_ai.* attributes and two attempts."""
    from opentelemetry.trace import SpanKind, StatusCode

    tracer, exporter = otel
    call = tracer.start_call("openai", "gpt-4o-mini")
    tracer.record_queue_wait(call, 0.25)
    tracer.record_retry(call, 1, errors.RateLimitError("slow", status_code=429), 0.5)
    usage = Usage(input_tokens=100, output_tokens=20, cached_tokens=40, reasoning_tokens=5)
    tracer.end_call(
        call,
        usage=usage,
        finish_reason="stop",
        response_model="gpt-4o-mini-2024-07-18",
        attempts=2,
        cost=2.4e-5,
    )
    span, attempts = _split(exporter.get_finished_spans())
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes)
    assert attrs["gen_ai.system"] == "openai"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (100, 20)
    assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("stop",)
    assert attrs["lionpride.attempts"] == 2 and attrs["lionpride.cost_usd"] == 2.4e-5
    assert "error.type" not in attrs and span.status.status_code is StatusCode.UNSET
    events = [(e.name, dict(e.attributes)) for e in span.events]
    assert events[0] == ("lionpride.queue_wait", {"lionpride.queue_wait_s": 0.25})
    assert events[1][0] == "lionpride.retry"
    assert events[1][1]["error.type"] == "RateLimitError"
    assert events[1][1]["lionpride.retry.delay_s"] == 0.5
    assert [a.attributes["lionpride.attempt"] for a in attempts] == [1, 2]
    for attempt in attempts:
        assert attempt.parent is not None
        assert attempt.parent.span_id == span.context.span_id
        assert span.start_time <= attempt.start_time <= attempt.end_time <= span.end_time
    assert attempts[0].attributes["error.type"] == "RateLimitError"
    assert attempts[0].attributes["http.response.status_code"] == 429
    # The second attempt starts after the retry delay, not when the first one failed.
    assert attempts[1].start_time >= attempts[0].end_time
    assert "error.type" not in attempts[1].attributes


@needs_sdk
def test_failed_call_marks_error_without_message_text(otel: Any) -> None:
    """A failure sets error.type and ERROR status; the provider's message stays out."""
    from opentelemetry.trace import StatusCode

    tracer, exporter = otel
    call = tracer.start_call("anthropic", "claude-haiku-4-5")
    err = errors.ServerError("secret prompt echoed here", status_code=500)
    tracer.end_call(call, error=err, attempts=1)
    span, attempts = _split(exporter.get_finished_spans())
    assert span.attributes["error.type"] == "ServerError"
    assert span.status.status_code is StatusCode.ERROR
    assert len(attempts) == 1 and attempts[0].status.status_code is StatusCode.ERROR
    for recorded in exporter.get_finished_spans():
        assert "secret prompt" not in str(recorded.to_json())


@needs_sdk
def test_call_that_never_ran_has_no_attempt_span(otel: Any) -> None:
    """A call that failed waiting for capacity (attempts=0) has a call span only."""
    tracer, exporter = otel
    call = tracer.start_call("groq", "llama-3.1-8b-instant")
    tracer.end_call(call, error=errors.TimeoutError("queue"), attempts=0)
    span, attempts = _split(exporter.get_finished_spans())
    assert attempts == [] and span.attributes["lionpride.attempts"] == 0


@needs_sdk
async def test_spans_of_a_real_call_with_a_retry(fake_provider: FakeProvider) -> None:
    """A real call answered 429 then 200 produces a call span and two attempt spans."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    fake_provider.script(Reply(status=429), Reply())
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = iModel(
        provider="openai",
        base_url=fake_provider.base_url("openai"),
        api_key=SecretStr("k"),
        otel=provider.get_tracer("test"),
    )
    async with model:
        with no_backoff():
            calling = await model.invoke(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
            )
        response = calling.response
        assert response is not None
    provider.shutdown()
    span, attempts = _split(exporter.get_finished_spans())
    assert len(attempts) == 2 == calling.execution.attempts
    assert response.usage is not None
    assert span.attributes["gen_ai.usage.input_tokens"] == response.usage.input_tokens
    assert tuple(span.attributes["gen_ai.response.finish_reasons"]) == ("stop",)


@needs_sdk
async def test_call_cancelled_in_flight_ends_its_span_as_cancelled() -> None:
    """A call cancelled on the wire records no error of its own, yet its span is no
    success: ERROR status with error.type CancelledError."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with FakeProvider(latency=60) as fp:
        model = iModel(
            provider="openai",
            base_url=fp.base_url("openai"),
            api_key=SecretStr("k"),
            otel=provider.get_tracer("test"),
        )
        async with model:
            task = asyncio.create_task(
                model.invoke(model="m", messages=[{"role": "user", "content": "Hi"}])
            )
            async with asyncio.timeout(10):
                await fp.wait_for_requests(1)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    provider.shutdown()
    span, _ = _split(exporter.get_finished_spans())
    assert span.attributes["error.type"] == "CancelledError"
    assert span.status.status_code is StatusCode.ERROR
