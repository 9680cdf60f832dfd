"""Every python block of the seed (services module docs) runs as written.

Each block is copied faithfully into a function below; the only edits are the ones a
reader must make anyway: ``...`` arguments become a real request, top-level ``await`` sits
in a coroutine, and the environment points ``<PROVIDER>_BASE_URL`` at a FakeProvider and
sets ``<PROVIDER>_API_KEY``. A few blocks use names defined by an earlier block of the same
section (``model``, ``my_function``, ``process``); those are defined as the docs imply.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lionpride.services import iModel
from lionpride.testing import FakeProvider, Reply

PROVIDERS = ("openai", "anthropic", "groq", "gemini")


@pytest.fixture
async def fp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[FakeProvider]:
    """A FakeProvider behind every provider's env vars, in a temporary working directory."""
    async with FakeProvider(reply_text="Once upon a time.") as provider:
        for name in PROVIDERS:
            monkeypatch.setenv(f"{name.upper()}_BASE_URL", provider.base_url(name))
            monkeypatch.setenv(f"{name.upper()}_API_KEY", f"test-{name}-key")
        monkeypatch.chdir(tmp_path)
        yield provider


# -- Module Exports -----------------------------------------------------------------------


def test_module_exports() -> None:
    """The documented import list works."""
    from lionpride.services import (  # noqa: F401
        # Core types
        Calling,
        Endpoint,
        EndpointConfig,
        ServiceBackend,
        ServiceRegistry,
        Tool,
        iModel,
    )


# -- Quick Start --------------------------------------------------------------------------


async def test_quick_start_basic_usage(fp: FakeProvider) -> None:
    """Basic Usage (Auto-Matching): an Anthropic call returns text in response.data."""
    from lionpride.services import iModel

    # Auto-match provider to endpoint
    model = iModel(provider="anthropic", api_key="ANTHROPIC_API_KEY")

    # Single call
    calling = await model.invoke(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hello!"}]
    )
    print(calling.response.data)  # Extracted text response

    assert calling.response.data == "Once upon a time."
    await model.aclose()


async def test_quick_start_rate_limiting(fp: FakeProvider) -> None:
    """With Rate Limiting: limits build an executor and the call goes through it."""
    from lionpride.services import iModel

    # Auto-construct executor with rate limits (lionagi v0 pattern)
    model = iModel(
        provider="openai",
        api_key="OPENAI_API_KEY",
        limit_requests=50,  # 50 requests per minute
        limit_tokens=100000,  # 100k tokens per minute
        capacity_refresh_time=60.0,
    )

    # Calls are automatically rate-limited
    calling = await model.invoke(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}]
    )

    assert model.executor is not None and calling.response is not None
    await model.aclose()


def test_quick_start_circuit_breaker_and_retry(fp: FakeProvider) -> None:
    """With Circuit Breaker and Retry: the backend keeps both policies."""
    from lionpride.services import iModel
    from lionpride.services.providers.anthropic_messages import AnthropicMessagesEndpoint
    from lionpride.services.utilities.resilience import CircuitBreaker, RetryConfig

    # Create backend with resilience patterns
    backend = AnthropicMessagesEndpoint(
        api_key="ANTHROPIC_API_KEY",
        circuit_breaker=CircuitBreaker(
            failure_threshold=5,
            recovery_time=30.0,
        ),
        retry_config=RetryConfig(
            max_retries=3,
            initial_delay=1.0,
            exponential_base=2.0,
        ),
    )

    model = iModel(backend=backend)

    assert model.backend.retry_config.max_retries == 3  # type: ignore[attr-defined]


async def test_quick_start_streaming(fp: FakeProvider, capsys: pytest.CaptureFixture[str]) -> None:
    """Streaming: chunks print as text, and the channel accumulates the full text."""
    from lionpride.services import iModel

    model = iModel(provider="openai", api_key="OPENAI_API_KEY")

    # Stream chunks
    async for chunk in model.invoke_stream(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Write a story"}]
    ):
        print(chunk, end="", flush=True)

    # Stream with channel (fan-out)
    channel = await model.invoke_stream_with_channel(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Write a story"}]
    )
    channel.add_consumer(lambda chunk: print(chunk.content))
    async for chunk in channel:  # noqa: B007 - as in the docs
        pass
    full_text = channel.get_accumulated()

    assert capsys.readouterr().out.startswith("Once upon a time.")
    assert full_text == "Once upon a time."
    await model.aclose()


async def test_quick_start_service_registry(fp: FakeProvider) -> None:
    """Service Registry: register two models, look one up, invoke it, list by tag."""
    from lionpride.services import ServiceRegistry, iModel

    registry = ServiceRegistry()

    # Register multiple models
    registry.register(iModel(provider="anthropic", api_key="..."))
    registry.register(iModel(provider="openai", api_key="..."))

    # Lookup by name
    model = registry.get("anthropic_messages")
    calling = await model.invoke(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hello!"}]
    )

    # List by tag
    backends = registry.list_by_tag("llm")

    assert calling.response is not None and len(backends) == 2
    assert fp.requests[0].headers["x-api-key"] == "..."
    await model.aclose()


# -- Common Patterns ----------------------------------------------------------------------


def test_pattern_1_multi_provider(fp: FakeProvider) -> None:
    """Pattern 1: three providers with limits, looked up by name."""
    from lionpride.services import ServiceRegistry, iModel

    registry = ServiceRegistry()

    # Register multiple providers
    for provider in ["anthropic", "openai", "groq"]:
        model = iModel(
            provider=provider,
            api_key=f"{provider.upper()}_API_KEY",
            limit_requests=50,
            limit_tokens=100000,
        )
        registry.register(model)

    # Use based on requirements
    fast_model = registry.get("groq_chat")  # For speed
    smart_model = registry.get("anthropic_messages")  # For reasoning
    cheap_model = registry.get("openai_chat")  # For cost

    assert {fast_model.name, smart_model.name, cheap_model.name} == {
        "groq_chat",
        "anthropic_messages",
        "openai_chat",
    }


async def test_pattern_2_tool_integration() -> None:
    """Pattern 2: a Tool with a pydantic schema, registered and invoked by name."""
    from pydantic import BaseModel, Field

    from lionpride.services import ServiceRegistry, Tool, iModel

    # Define tool schema with Pydantic
    class WeatherRequest(BaseModel):
        location: str = Field(..., description="City name")
        units: str = Field("celsius", description="Temperature units")

    def get_weather(location: str, units: str = "celsius") -> dict[str, Any]:
        """Get weather for a location."""
        return {"temp": 22, "conditions": "sunny", "location": location}

    # Create tool backend
    tool = Tool(func_callable=get_weather, config={"request_options": WeatherRequest})

    # Wrap in iModel and register
    tool_model = iModel(backend=tool)
    registry = ServiceRegistry()
    registry.register(tool_model)

    # Execute
    calling = await registry.get("get_weather").invoke(location="San Francisco")
    print(calling.response.data)  # {"temp": 22, ...}

    assert calling.response.data["temp"] == 22


async def test_pattern_3_serialization(fp: FakeProvider) -> None:
    """Pattern 3: to_dict → JSON file → from_dict, then the restored model works."""
    from lionpride.services import iModel

    # Create model with endpoint backend
    model = iModel(
        provider="anthropic",
        api_key="ANTHROPIC_API_KEY",
        limit_requests=50,
        limit_tokens=100000,
    )

    # Serialize to dict (excludes runtime state)
    config = model.to_dict()

    # Store in database or file
    import json

    with open("model_config.json", "w") as f:
        json.dump(config, f)

    # Restore from dict (fresh capacity)
    restored = iModel.from_dict(config)

    # API key must still be in environment
    calling = await restored.invoke(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hello!"}]
    )

    assert calling.response is not None
    assert json.loads(Path("model_config.json").read_text()) == config
    await restored.aclose()


async def test_pattern_4_hooks(fp: FakeProvider, capsys: pytest.CaptureFixture[str]) -> None:
    """Pattern 4: the request and response hooks print the payload and the response."""
    from lionpride.services import iModel
    from lionpride.services.types.hook import HookPhase, HookRegistry

    # Define hooks
    async def log_request(event: Any, **kwargs: Any) -> None:
        print(f"Request: {event.payload}")

    async def log_response(event: Any, **kwargs: Any) -> None:
        print(f"Response: {event.execution.response}")

    # Create hook registry
    hooks = HookRegistry()
    hooks.register(HookPhase.PreInvocation, log_request)
    hooks.register(HookPhase.PostInvocation, log_response)

    # Attach to model
    model = iModel(
        provider="openai",
        api_key="OPENAI_API_KEY",
        hook_registry=hooks,
    )

    # Hooks execute automatically
    calling = await model.invoke(  # noqa: F841 - as in the docs
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}]
    )

    out = capsys.readouterr().out
    assert "Request: {" in out and "gpt-4o-mini" in out
    assert "Response: " in out and "Once upon a time." in out
    assert "Response: None" not in out
    await model.aclose()


# -- Common Pitfalls ----------------------------------------------------------------------


def my_function(x: int) -> int:
    """A plain function to wrap as a tool (named by Pitfall 1)."""
    return x


def test_pitfall_1_tool_serialization(fp: FakeProvider) -> None:
    """Pitfall 1: a Tool backend raises NotImplementedError; an Endpoint serializes."""
    from lionpride.services import Tool
    from lionpride.services.providers.anthropic_messages import AnthropicMessagesEndpoint

    # ❌ WRONG: Tool backends cannot serialize
    tool = Tool(func_callable=my_function)
    model = iModel(backend=tool)
    with pytest.raises(NotImplementedError):
        config = model.to_dict()  # Raises NotImplementedError

    # ✅ CORRECT: Use Endpoint backends for persistence
    endpoint = AnthropicMessagesEndpoint(api_key="...")
    model = iModel(backend=endpoint)
    config = model.to_dict()  # Works

    assert "..." not in json.dumps(config)


def test_pitfall_2_missing_api_key(fp: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pitfall 2: a renamed env var is a ValueError naming it; SecretStr is never dumped."""
    monkeypatch.setenv("OLD_ENV_VAR", "sk-old")

    # ❌ WRONG: API key env var changed
    model = iModel(provider="anthropic", api_key="OLD_ENV_VAR")
    config = model.to_dict()
    # ... later, env var renamed to NEW_ENV_VAR
    monkeypatch.delenv("OLD_ENV_VAR")
    monkeypatch.setenv("NEW_ENV_VAR", "sk-old")
    with pytest.raises(ValueError, match="OLD_ENV_VAR"):
        restored = iModel.from_dict(config)  # ValueError: env var not found

    # ✅ CORRECT: Ensure env var consistency or use SecretStr
    from pydantic import SecretStr

    model = iModel(
        provider="anthropic",
        api_key=SecretStr("raw_credential"),  # Cleared on serialization
    )

    config = model.to_dict()
    assert "raw_credential" not in json.dumps(config)
    restored = iModel.from_dict(config)
    assert restored.backend.config.api_key is None  # type: ignore[attr-defined]


async def test_pitfall_3_poll_timeout(fp: FakeProvider) -> None:
    """Pitfall 3: a call slower than poll_timeout raises TimeoutError; a larger one works."""
    # ❌ WRONG: poll timeout too short for a slow model (scaled down: 0.2 s vs a 2 s reply)
    model = iModel(
        provider="anthropic",
        limit_requests=10,
    )
    fp.script(Reply(delay=2.0))
    with pytest.raises(TimeoutError, match=r"0\.2"):
        calling = await model.invoke(
            poll_timeout=0.2,
            model="claude-sonnet-4-5",
            messages=[{"role": "user", "content": "Hello!"}],
        )
    fp.reset()

    # ✅ CORRECT: Increase poll_timeout for slow models
    calling = await model.invoke(
        poll_timeout=120.0,  # 2 minutes for large models
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "Hello!"}],
    )

    assert calling.response is not None
    await model.aclose()


async def test_pitfall_4_capacity_not_preserved(fp: FakeProvider) -> None:
    """Pitfall 4: after 40 of 50 requests, the restored model has all 50 again."""
    # ❌ WRONG: Assuming depleted capacity is serialized
    model = iModel(provider="openai", limit_requests=50)
    # ... use 40 requests
    for _ in range(40):
        await model.invoke(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    config = model.to_dict()
    restored = iModel.from_dict(config)
    # Restored model has FULL capacity (50 requests), not 10

    original = model.executor.limiter.request_bucket  # type: ignore[union-attr]
    fresh = restored.executor.limiter.request_bucket  # type: ignore[union-attr]
    assert original is not None and not original.try_acquire(50)
    assert fresh is not None and fresh.try_acquire(50)
    await model.aclose()


# -- Performance Considerations -----------------------------------------------------------


async def test_request_validation_overhead(fp: FakeProvider) -> None:
    """A Calling created once, given a new timeout, is invoked without re-validation."""
    model = iModel(provider="openai", api_key="OPENAI_API_KEY")

    # Create calling once, reuse with different timeouts
    calling = await model.create_calling(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}]
    )
    calling.timeout = 120.0
    calling = await model.invoke(calling=calling)  # Skips create_calling

    assert calling.response is not None and calling.timeout == 120.0
    await model.aclose()


async def test_streaming_vs_batch(fp: FakeProvider) -> None:
    """Streaming vs Batch: both the stream and the batch call deliver the text."""
    model = iModel(provider="openai", api_key="OPENAI_API_KEY")
    seen: list[Any] = []
    process = seen.append

    # Streaming: No executor overhead, immediate chunks
    async for chunk in model.invoke_stream(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}]
    ):
        process(chunk)

    # Batch: Executor overhead, full response
    calling = await model.invoke(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}]
    )
    process(calling.response.data)

    assert "".join(str(c) for c in seen[:-1]) == seen[-1] == "Once upon a time."
    await model.aclose()
