"""The HTTP transport and the seams around it: typing an error status apart from reporting it,
the one stream read loop, the retry loop making every attempt, the common backend base."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from lionpride import errors
from lionpride.services.providers import ClaudeCodeEndpoint, OAIChatEndpoint
from lionpride.services.providers.match import match_endpoint
from lionpride.services.types.endpoint import Endpoint
from lionpride.services.types.request import (
    RequestSchema,
    request_schema,
    request_schema_name,
)
from lionpride.services.types.resilient import ResilientBackend
from lionpride.services.utilities.adaptive import NO_MARK, Mark
from lionpride.services.utilities.resilience import CircuitBreaker, RetryConfig, no_backoff
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Hello there"}]


class Watch:
    """A limit watch that keeps what it was told."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bool | None]] = []

    def sent(self) -> Mark:
        return NO_MARK

    def answered(self, headers: Mapping[str, str], mark: Mark, throttled: bool | None) -> None:
        self.answers.append((int(headers.get("x-ratelimit-limit-requests", 0)), throttled))


class TeapotEndpoint(OAIChatEndpoint):
    """Types a 418 as a rate limit a wait cures: only the typing is overridden."""

    def status_error(
        self, status: int, raw_headers: Mapping[str, str], data: bytes
    ) -> errors.APIStatusError:
        if status == 418:
            return errors.RateLimitError("teapot", status_code=429, retryable=True)
        return super().status_error(status, raw_headers, data)


async def test_a_subclass_types_the_error_and_the_watch_hears_its_typing(
    fake_provider: FakeProvider,
) -> None:
    """An override of status_error alone decides the error, and the limit watch is told the
    answer as that error says (a throttle), with the answer's headers."""
    headers = {"x-ratelimit-limit-requests": "7"}
    fake_provider.script(Reply(status=418, headers=headers))
    ep = TeapotEndpoint(
        base_url=fake_provider.base_url("openai"), api_key=SecretStr("k"), retry_config=None
    )
    watch = Watch()
    ep.watch_limits(watch)
    payload = ep.create_payload({"model": "m", "messages": MESSAGES})
    with pytest.raises(errors.RateLimitError, match="teapot"):
        await ep.call(payload)
    await ep.aclose()
    assert watch.answers == [(7, True)]


def _sse(*objects: dict[str, Any]) -> str:
    return "".join(f"data: {json.dumps(obj)}\n\n" for obj in objects)


def _delta(text: str) -> dict[str, Any]:
    return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": text}}]}


async def test_an_error_after_content_in_one_read_comes_after_that_content(
    fake_provider: FakeProvider,
) -> None:
    """A body piece holding content and then an error event yields the content first, then
    raises the error, unretried: the content had reached the caller."""
    piece = _sse(_delta("Hel"), _delta("lo"), {"error": {"message": "boom", "code": 500}})
    fake_provider.script(Reply(headers={"content-type": "text/event-stream"}, chunks=[piece]))
    ep = match_endpoint("openai", base_url=fake_provider.base_url("openai"), api_key="sk-x1")
    payload = ep.create_payload({"model": "m", "messages": MESSAGES})
    texts: list[str] = []
    with no_backoff(), pytest.raises(errors.LionprideError, match="boom"):
        async for chunk in ep.stream(payload):
            texts.append(chunk.content)
    await ep.aclose()
    assert texts == ["Hel", "lo"] and len(fake_provider.requests) == 1


async def test_the_retry_loop_makes_the_first_attempt_too(fake_provider: FakeProvider) -> None:
    """Every attempt, the first included, goes through the breaker inside the retry loop: a
    503 then a success count one failure and one success, and the retry is reported once."""
    fake_provider.script(Reply(status=503, headers={"retry-after-ms": "0"}))
    breaker = CircuitBreaker(failure_threshold=5)
    ep = match_endpoint(
        "openai",
        base_url=fake_provider.base_url("openai"),
        api_key="sk-x1",
        circuit_breaker=breaker,
        retry_config=RetryConfig(max_retries=2),
    )
    retries: list[int] = []
    payload = ep.create_payload({"model": "m", "messages": MESSAGES})
    response = await ep.call(payload, on_retry=lambda n, e, d: retries.append(n))
    await ep.aclose()
    assert response.status == "success" and retries == [1]
    assert breaker.metrics["failure_count"] == 1 and breaker.metrics["success_count"] == 1


def test_cli_backends_share_the_base_not_the_http_endpoint() -> None:
    """A CLI backend has the common base's config, retry and breaker, and is no HTTP endpoint."""
    backend = ClaudeCodeEndpoint(
        circuit_breaker=CircuitBreaker(failure_threshold=2), retry_config={"max_retries": 1}
    )
    assert isinstance(backend, ResilientBackend) and not isinstance(backend, Endpoint)
    assert backend.retry_config == RetryConfig(max_retries=1)
    restored = ResilientBackend.from_dict(backend.to_dict())
    assert type(restored) is ClaudeCodeEndpoint
    assert restored.circuit_breaker is not None
    assert restored.circuit_breaker.failure_threshold == 2


class HouseRequest(RequestSchema):
    """A request schema defined by a user."""

    prompt: str


class Stray(BaseModel):
    """A model that is not a request schema."""

    prompt: str


def test_request_schemas_are_found_by_name_and_others_are_refused() -> None:
    """A RequestSchema subclass is saved by name and found again; another model is refused."""
    name = request_schema_name(HouseRequest)
    assert name is not None and request_schema(name) is HouseRequest
    with pytest.raises(NotImplementedError, match="RequestSchema"):
        request_schema_name(Stray)
    with pytest.raises(ValueError, match="unknown request_options"):
        request_schema(f"{Stray.__module__}.Stray")


def test_configuration_is_keyword_only() -> None:
    """Endpoints, breakers and retry policies take their settings by keyword only."""
    with pytest.raises(TypeError):
        CircuitBreaker(5)  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryConfig(3)  # type: ignore[misc]
    with pytest.raises(TypeError):
        OAIChatEndpoint({"provider": "openai", "name": "x"})  # type: ignore[misc]
