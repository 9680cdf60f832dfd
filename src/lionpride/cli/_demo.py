"""``lionpride demo``: an offline tour on the built-in FakeProvider (no key, no network).

Four scenes, about ten seconds in all:

1. Load: 300 calls through three ``iModel``s (OpenAI, Anthropic and Gemini formats), each
   against its own FakeProvider that enforces the same request limit the client sets, with
   injected 429s and 503s that the retries absorb, a circuit breaker per model and a
   lifecycle hook counting finished calls. A live progress bar runs on stderr.
2. Streaming: one reply printed as its chunks arrive.
3. Tools: the model asks for a tool; the tool is found in a ``ServiceRegistry`` and run.
4. Breaker: an outage opens a circuit breaker, calls fail fast without reaching the server,
   and the breaker closes again after its recovery time.

It ends with a table per provider, read from each model's own ``metrics()`` after the load
scene: calls, successes, retries, 429s seen, tokens, cost, p50/p99 latency and the achieved
rate (over the scene's wall time) next to the configured one.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from lionpride import errors
from lionpride.cli._progress import Progress
from lionpride.cli._stats import Stopwatch, Summary, ms
from lionpride.services import (
    CircuitBreaker,
    HookPhase,
    HookRegistry,
    Limits,
    RetryConfig,
    ServiceRegistry,
    Tool,
    iModel,
)
from lionpride.testing import FakeProvider, Reply

__all__ = ["demo"]

#: Calls per provider in the load scene.
CALLS = 100
#: Requests per window, on the provider (its own limit) and on the client (the same).
LIMIT = 25
#: The window of the limit, in seconds.
WINDOW = 1.0
#: Server-side latency of every reply, in seconds.
LATENCY = 0.03

# Models the shipped price table knows, so the table can show a cost.
_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.0-flash",
}
#: The first replies of each provider in the load scene: failures for the retries to absorb.
_INJECTED = (429, 503, 429, 503)
_RETRY = RetryConfig(max_retries=3, initial_delay=0.25, max_delay=2.0)


@dataclass
class _Lane:
    """One provider in the demo: its fake server, the client model and its load numbers."""

    provider: str
    server: FakeProvider
    model: iModel
    summary: Summary | None = field(default=None)


def demo() -> int:
    """Run the demo; return 0."""
    return asyncio.run(_demo())


async def _demo() -> int:
    hook_counts: dict[str, int] = {}
    hooks = HookRegistry({HookPhase.PostInvocation: _counting_hook(hook_counts)})
    lanes: list[_Lane] = []
    try:
        for provider in _MODELS:
            server = FakeProvider(limit_requests=LIMIT, window=WINDOW, latency=LATENCY)
            await server.start()
            model = _model(provider, server, hook_registry=hooks)
            lanes.append(_Lane(provider, server, model))
        _say("1. Load: 300 calls, limits on both sides, injected 429s and 503s")
        await _load(lanes)
        _say("\n2. Streaming: a reply printed as it arrives")
        await _stream(lanes[0])
        _say("\n3. Tools: the model calls a tool found in a ServiceRegistry")
        await _tools(lanes[0])
        _say("\n4. Circuit breaker: an outage, fast failures, recovery")
        await _breaker(lanes[1].server)
        _say("")
        _table(lanes, hook_counts)
    finally:
        for lane in lanes:
            await lane.model.aclose()
            await lane.server.stop()
    return 0


def _model(provider: str, server: FakeProvider, **kwargs: Any) -> iModel:
    kwargs.setdefault(
        "limits", Limits(limit_requests=LIMIT, capacity_refresh_time=WINDOW, concurrency_limit=16)
    )
    kwargs.setdefault("retry_config", _RETRY)
    kwargs.setdefault("circuit_breaker", CircuitBreaker(failure_threshold=5, recovery_time=2.0))
    return iModel(
        provider=provider,
        base_url=server.base_url(provider),
        api_key=SecretStr("demo"),
        model=_MODELS[provider],
        **kwargs,
    )


def _counting_hook(counts: dict[str, int]) -> Any:
    def after_call(calling: Any, **_: Any) -> None:
        name = calling.backend.provider
        counts[name] = counts.get(name, 0) + 1

    return after_call


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _load(lanes: list[_Lane]) -> None:
    for lane in lanes:
        lane.server.script(
            *[
                Reply(status=s, headers={"retry-after": "0.2"} if s == 429 else {})
                for s in _INJECTED
            ]
        )
    progress = Progress(CALLS * len(lanes), label="demo")
    clock = Stopwatch()
    async with progress, asyncio.TaskGroup() as group:
        for lane in lanes:
            for i in range(CALLS):
                group.create_task(_one_call(lane, i, progress))
    clock.stop()
    for lane in lanes:
        # Snapshot now: the later scenes make more calls on the same models.
        lane.summary = Summary.of(lane.model, clock.elapsed)


async def _one_call(lane: _Lane, i: int, progress: Progress) -> None:
    messages = [{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}]
    calling = await lane.model.invoke(messages=messages, raise_on_error=False)
    usage = calling.usage
    tokens = usage.input_tokens + usage.output_tokens if usage is not None else 0
    progress.advance(ok=calling.execution.error is None, tokens=tokens)


async def _stream(lane: _Lane) -> None:
    text = "Rate limits, retries and breakers keep a batch moving while the provider pushes back."
    lane.server.script(Reply(text=text, chunk_delay=0.06))
    messages = [{"role": "user", "content": "Why use a client-side rate limiter?"}]
    sys.stdout.write("   > ")
    async for chunk in lane.model.invoke_stream(messages=messages):
        if chunk.content:
            sys.stdout.write(chunk.content)
            sys.stdout.flush()
        if chunk.is_final and chunk.response is not None and chunk.response.usage is not None:
            usage = chunk.response.usage
            sys.stdout.write(f"\n   ({usage.input_tokens} in / {usage.output_tokens} out)")
    _say("")


def get_weather(city: str) -> str:
    """Report the weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny and 21 C in {city}"


async def _tools(lane: _Lane) -> None:
    registry = ServiceRegistry()
    tool = Tool(func_callable=get_weather, config=None)
    registry.register(iModel(backend=tool))
    registry.register(lane.model)
    lane.server.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    llm = registry.get(lane.model.name)
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    calling = await llm.invoke(messages=messages, tools=[tool.to_openai()])
    assert calling.response is not None
    for call in calling.response.tool_calls:
        result = await registry.get(call.name).invoke(**call.arguments)
        assert result.response is not None
        _say(f"   model asked for {call.name}({call.arguments}) -> {result.response.data!r}")
    _say(f"   registry: {', '.join(registry.list_names())}")


async def _breaker(server: FakeProvider) -> None:
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=0.5, name="outage")
    # One call at a time and no retries, so every failure reaches the breaker directly.
    model = _model(
        "anthropic",
        server,
        limits=Limits(concurrency_limit=16),
        retry_config=None,
        circuit_breaker=breaker,
    )
    server.script(*[Reply(status=503)] * 3)
    messages = [{"role": "user", "content": "ping"}]
    try:
        for i in range(1, 6):
            before = len(server.requests)
            try:
                await model.invoke(messages=messages)
                outcome = "ok"
            except errors.LionprideError as exc:
                outcome = type(exc).__name__
            reached = "reached the server" if len(server.requests) > before else "failed fast"
            _say(f"   call {i}: {outcome:<24} {reached:<18} breaker {breaker.state.value}")
        await asyncio.sleep(breaker.recovery_time)
        await model.invoke(messages=messages)
        _say(f"   after {breaker.recovery_time:g}s: probe ok, breaker {breaker.state.value}")
    finally:
        await model.aclose()


def _table(lanes: list[_Lane], hook_counts: dict[str, int]) -> None:
    header = (
        f"{'provider':<10}{'calls':>6}{'ok':>5}{'retries':>8}{'429s':>6}"
        f"{'tokens in/out':>15}{'cost':>10}{'p50':>7}{'p99':>7}{'achieved':>10}{'configured':>12}"
    )
    _say(header)
    _say("-" * len(header))
    summaries = [(lane, lane.summary) for lane in lanes if lane.summary is not None]
    for lane, s in summaries:
        tokens = f"{s.tokens_in}/{s.tokens_out}"
        _say(
            f"{lane.provider:<10}{s.calls:>6}{s.successes:>5}{s.retries:>8}{s.rate_limited:>6}"
            f"{tokens:>15}{s.cost_text():>10}{ms(s.p50):>7}{ms(s.p99):>7}"
            f"{s.rate:>8.1f}/s{LIMIT / WINDOW:>10.1f}/s"
        )
    for lane, s in summaries:
        if s.failures:
            _say(f"{lane.provider} failures: {s.failures_text()}")
    elapsed = max(s.elapsed for _, s in summaries)
    ceiling = (LIMIT + LIMIT * elapsed / WINDOW) / elapsed
    refused = sum(lane.server.count_429 for lane in lanes)
    _say(
        f"\nA limit of {LIMIT} per {WINDOW:g}s is a bucket of {LIMIT} refilling "
        f"{LIMIT / WINDOW:g}/s, so over {elapsed:.1f}s at most {ceiling:.1f}/s may start."
        f"\nEach provider first answered {_INJECTED.count(429)} injected 429s and "
        f"{_INJECTED.count(503)} injected 503s;"
        f"\nthe retries and 429s columns above count them."
        f"\n429s from the providers' own limits: {refused} (the client kept under them)."
        f"\nPostInvocation hook saw: "
        + ", ".join(f"{name} {count}" for name, count in sorted(hook_counts.items()))
    )
