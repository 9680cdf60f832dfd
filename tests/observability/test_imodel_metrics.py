"""iModel records its own metrics, costs and spans: checked against scripted FakeProvider runs."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.observability import ModelMetrics, PriceTable, default_prices
from lionpride.services.types.response import Usage
from lionpride.services.utilities.resilience import no_backoff
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Hello there!"}]
MODEL = "gpt-test"

# Provider-native usage with cached and reasoning tokens, so every price kind is exercised.
USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 20,
    "total_tokens": 120,
    "prompt_tokens_details": {"cached_tokens": 40},
    "completion_tokens_details": {"reasoning_tokens": 5},
}

HAVE_SDK = importlib.util.find_spec("opentelemetry") is not None and (
    importlib.util.find_spec("opentelemetry.sdk") is not None
)


def _prices() -> PriceTable:
    """A private table naming only the test model (USD per million tokens)."""
    table = PriceTable()
    table.register_price(MODEL, input=2.0, output=8.0, cached_input=0.5, reasoning=10.0)
    return table


def _model(fp: FakeProvider, **kwargs: Any) -> iModel:
    return iModel(
        provider="openai", base_url=fp.base_url("openai"), api_key=SecretStr("k"), **kwargs
    )


def _limited(count: int = 1) -> list[Reply]:
    return [Reply(status=429, headers={"retry-after": "0"})] * count


async def test_scripted_run_metrics_match_what_happened(fake_provider: FakeProvider) -> None:
    """429s, 503s, a 400 and successes give exactly the counts, tokens and cost that happened."""
    ok = Reply(usage=USAGE)
    fake_provider.script(
        Reply(),  # call 1: success at once (usage computed by the provider)
        *_limited(),
        ok,  # call 2: one 429 retried, then success
        Reply(status=503),
        Reply(status=503),
        ok,  # call 3: two 503s retried, then success
        Reply(status=400),  # call 4: bad request, never retried
        *_limited(3),  # call 5: 429 three times, gives up after two retries
        *[Reply(status=503)] * 3,  # call 6: 503 three times, gives up
        Reply(),  # call 7: success
    )
    # The configured bucket as it is, not learned from the scripted 429s (test_learned_limits).
    model = _model(fake_provider, prices=_prices(), limit_requests=1_000, adaptive_limits=False)
    async with model:
        with no_backoff():
            callings = [
                await model.invoke(model=MODEL, messages=MESSAGES, raise_on_error=False)
                for _ in range(7)
            ]
        snap = model.metrics()
    assert [c.execution.attempts for c in callings] == [1, 2, 3, 1, 3, 3, 1]
    assert len(fake_provider.requests) == 14 and fake_provider.pending == 0

    usages = [c.usage for c in callings if c.usage is not None]
    assert len(usages) == 4
    costs = [c.cost for c in callings]
    assert [cost is not None for cost in costs] == [True, True, True, False, False, False, True]
    latency = snap.pop("latency")
    queue_wait = snap.pop("queue_wait")
    levels = snap.pop("limiter_levels")
    assert snap == {
        "calls": 7,
        "successes": 4,
        "failures": 3,
        "failures_by_type": {"BadRequestError": 1, "RateLimitError": 1, "ServerError": 1},
        "attempts": 14,
        "retries": 7,
        "rate_limited": 4,
        "tokens_in": sum(u.input_tokens for u in usages),
        "tokens_out": sum(u.output_tokens for u in usages),
        "cached_tokens": 80,
        "reasoning_tokens": 10,
        # Added in the same order as the metrics add them, so exactly equal.
        "cost_usd": sum(cost for cost in costs if cost is not None),
        "unpriced_calls": 0,
        "queue_depth": 0,
        "in_flight": 0,
        "breaker_state": None,  # the endpoint has no breaker unless given one
        "learned_limits": None,
    }
    assert snap["cost_usd"] > 0
    # Every request the provider saw was taken, the retries too (a little refill since).
    assert set(levels) == {"requests"} and 1_000 - 14 <= levels["requests"] <= 1_000 - 14 + 5
    seen = [c.duration for c in callings if c.duration is not None]
    assert latency["count"] == 7 == len(seen) and latency["max"] == max(seen)
    for q in (50, 90, 99):
        exact = sorted(seen)[max(1, math.ceil(q / 100 * len(seen))) - 1]
        assert latency[f"p{q}"] == pytest.approx(exact, rel=0.026)
    assert queue_wait["count"] == 7


async def test_cost_of_a_priced_model_and_none_for_an_unknown_one(
    fake_provider: FakeProvider,
) -> None:
    """Calling.cost follows the registered price per token kind; an unknown model costs None."""
    fake_provider.script(Reply(usage=USAGE), Reply(usage=USAGE))
    model = _model(fake_provider, prices=_prices())
    async with model:
        priced = await model.invoke(model=MODEL, messages=MESSAGES)
        unknown = await model.invoke(model="mystery-model-9", messages=MESSAGES)
        snap = model.metrics()
    # 60 fresh input at $2, 40 cached at $0.5, 15 visible output at $8, 5 reasoning at $10.
    expected = (60 * 2.0 + 40 * 0.5 + 15 * 8.0 + 5 * 10.0) / 1e6
    assert priced.cost == pytest.approx(expected, rel=1e-12)
    assert priced.execution.cost == priced.cost
    assert unknown.usage is not None and unknown.cost is None
    assert snap["cost_usd"] == priced.cost and snap["unpriced_calls"] == 1


async def test_without_prices_the_shipped_table_is_used(fake_provider: FakeProvider) -> None:
    """With no prices= a known model is priced from the shipped table."""
    fake_provider.script(Reply(usage=USAGE))
    async with _model(fake_provider) as model:
        calling = await model.invoke(model="gpt-4o-mini", messages=MESSAGES)
    assert calling.usage is not None
    assert calling.cost == default_prices().cost("gpt-4o-mini", calling.usage)
    assert calling.cost is not None and calling.cost > 0


@pytest.fixture
def span_exporter() -> Iterator[tuple[Any, Any]]:
    """An SDK tracer on its own TracerProvider (no global state) and its in-memory exporter."""
    if not HAVE_SDK:
        pytest.skip("opentelemetry-sdk is not installed (pip install 'lionpride[otel]')")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider.get_tracer("test"), memory
    provider.shutdown()


async def test_otel_makes_one_genai_span_per_call(
    fake_provider: FakeProvider, span_exporter: tuple[Any, Any]
) -> None:
    """iModel(otel=tracer) gives each call one span with gen_ai attributes and retry events."""
    tracer, memory = span_exporter
    fake_provider.script(*_limited(), Reply(), Reply(delay=0.05), Reply(status=400))
    model = _model(fake_provider, otel=tracer)
    async with model:
        with no_backoff():
            retried = await model.invoke(model=MODEL, messages=MESSAGES)
            plain = await model.invoke(model=MODEL, messages=MESSAGES)
            with pytest.raises(errors.BadRequestError):
                await model.invoke(model=MODEL, messages=MESSAGES)
    spans = memory.get_finished_spans()
    calls = [s for s in spans if "lionpride.attempt" not in s.attributes]
    assert len(calls) == 3
    for span in calls:
        assert span.attributes["gen_ai.system"] == "openai"
        assert span.attributes["gen_ai.request.model"] == MODEL
    first, second, failed = sorted(calls, key=lambda s: s.start_time)
    for span, calling in ((first, retried), (second, plain)):
        assert calling.usage is not None
        assert span.attributes["gen_ai.usage.input_tokens"] == calling.usage.input_tokens
        assert span.attributes["lionpride.attempts"] == calling.execution.attempts
    retries = [e for e in first.events if e.name == "lionpride.retry"]
    assert len(retries) == 1 and retries[0].attributes["error.type"] == "RateLimitError"
    assert not [e for e in second.events if e.name == "lionpride.retry"]
    assert failed.attributes["error.type"] == "BadRequestError"
    assert "gen_ai.usage.input_tokens" not in failed.attributes
    # Every attempt span hangs under its call's span.
    attempts = [s for s in spans if "lionpride.attempt" in s.attributes]
    assert len(attempts) == 4
    call_ids = {s.context.span_id for s in calls}
    assert all(a.parent is not None and a.parent.span_id in call_ids for a in attempts)
    # The lone attempt of the second call spans the provider's 50 ms, not a few µs.
    (lone,) = [a for a in attempts if a.parent.span_id == second.context.span_id]
    assert lone.end_time - lone.start_time >= 40_000_000


async def test_streaming_calls_are_recorded(fake_provider: FakeProvider) -> None:
    """invoke_stream records successes, retries before the first chunk, tokens, cost, failures."""
    fake_provider.script(Reply(text="one two three"), Reply(status=503), Reply(), Reply(status=400))
    model = _model(fake_provider, prices=_prices())
    usages: list[Usage] = []
    async with model:
        with no_backoff():
            for _ in range(2):
                async for chunk in model.invoke_stream(model=MODEL, messages=MESSAGES):
                    if chunk.is_final and chunk.response is not None:
                        assert chunk.response.usage is not None
                        usages.append(chunk.response.usage)
            with pytest.raises(errors.BadRequestError) as info:
                async for _ in model.invoke_stream(model=MODEL, messages=MESSAGES):
                    pass
        snap = model.metrics()
    assert len(usages) == 2 and info.value.calling.cost is None
    prices = _prices()
    assert snap["calls"] == 3 and snap["successes"] == 2
    assert snap["failures_by_type"] == {"BadRequestError": 1}
    assert (snap["attempts"], snap["retries"], snap["rate_limited"]) == (4, 1, 0)
    assert snap["tokens_in"] == sum(u.input_tokens for u in usages) > 0
    assert snap["tokens_out"] == sum(u.output_tokens for u in usages) > 0
    expected = sum(prices.cost(MODEL, u) or 0.0 for u in usages)
    assert snap["cost_usd"] == pytest.approx(expected, rel=1e-12) and expected > 0
    assert snap["latency"]["count"] == 3


def test_metrics_memory_stays_fixed_over_100000_calls() -> None:
    """100,000 record_call calls keep both histograms' bucket counts and the error table fixed."""
    metrics = ModelMetrics()
    buckets = (metrics.latency.buckets, metrics.queue_wait.buckets)
    usage = Usage(input_tokens=10, output_tokens=5)
    failure = errors.ServerError("down", status_code=503)
    for k in range(100_000):
        if k % 10:
            metrics.record_call(
                status="completed", duration=(k % 997 + 1) * 1e-3, usage=usage, cost=1e-6
            )
        else:
            metrics.record_call(status="failed", duration=k * 1e-4, error=failure)
    assert (metrics.latency.buckets, metrics.queue_wait.buckets) == buckets
    assert metrics.calls == 100_000 and metrics.latency.count == 100_000
    assert metrics.failures_by_type == {"ServerError": 10_000}
    assert metrics.tokens_in == 90_000 * 10
