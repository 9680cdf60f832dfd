"""Limits learned from the provider, shared by processes through Redis."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from lionpride.core.clock import FakeClock
from lionpride.services import iModel
from lionpride.services.distributed.redis_learned import SharedAdaptiveCapacity
from lionpride.testing import FakeProvider

if TYPE_CHECKING:
    from conftest import RedisServer

MESSAGES = [{"role": "user", "content": "hi"}]


def openai(limit: int, remaining: int, reset: str) -> dict[str, str]:
    """OpenAI-style request headers."""
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": reset,
    }


async def test_what_one_process_learns_paces_the_others(redis_server: RedisServer) -> None:
    """A learner that never saw an answer takes by the shapes and levels another one learned."""
    teacher = SharedAdaptiveCapacity(redis_server.url, "shared")
    pupil = SharedAdaptiveCapacity(redis_server.url, "shared")
    try:
        assert await teacher.take(1, 0) == 0.0
        teacher.answered(openai(10, 3, "70s"), teacher.sent(), False)
        await teacher.flush()
        waits = [await pupil.take(1, 0) for _ in range(4)]
        assert waits[:3] == [0.0, 0.0, 0.0]  # not the first-answer gate: the learned bucket
        assert waits[3] > 5  # empty, refilling 0.1 a second
        assert pupil.mode == "first"
    finally:
        await teacher.aclose()
        await pupil.aclose()


async def test_a_reading_never_raises_the_shared_level(redis_server: RedisServer) -> None:
    """A reading that shows more room than Redis holds leaves the shared bucket as it is."""
    first = SharedAdaptiveCapacity(redis_server.url, "shared")
    try:
        await first.take(1, 0)
        first.answered(openai(10, 2, "80s"), first.sent(), False)
        first.answered(openai(10, 9, "10s"), first.sent(), False)
        await first.flush()
        assert [await first.take(1, 0) for _ in range(3)][2] > 0
    finally:
        await first.aclose()


async def test_two_models_on_one_key_share_the_learned_limits(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Models with redis_url learn from headers and no provider refusal follows."""
    monkeypatch.setenv("OPENAI_API_KEY", "k")  # a raw key is not saved: restored from the env
    async with FakeProvider(limit_requests=10, window=2.0, latency=0.01) as fp:
        models = [
            iModel(
                provider="openai",
                base_url=fp.base_url("openai"),
                api_key=SecretStr("k"),
                redis_url=redis_server.url,
            )
            for _ in range(2)
        ]
        try:
            calls = [m.invoke(model="m", messages=MESSAGES) for m in models for _ in range(12)]
            await asyncio.gather(*calls)
            learned = models[1].metrics()["learned_limits"]
        finally:
            for model in models:
                await model.aclose()
    assert fp.count_429 == 0
    assert learned["requests"]["limit"] == 10
    restored = iModel.from_dict(models[0].to_dict(), redis_url=redis_server.url)
    assert isinstance(restored.executor.limiter.backend, SharedAdaptiveCapacity)  # type: ignore[union-attr]
    await restored.aclose()


@pytest.mark.filterwarnings("ignore:Redis at .* is unreachable")
async def test_a_lesson_while_redis_is_down_keeps_what_the_fallback_granted() -> None:
    """With Redis unreachable, a reading that lowers the buckets never refills the local
    fallback to the last level Redis reported."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    clock = FakeClock()
    learner = SharedAdaptiveCapacity(
        f"redis://127.0.0.1:{port}/0", "down", limit_requests=10, clock=clock
    )
    try:
        assert [await learner.take(1, 0) for _ in range(10)] == [0.0] * 10
        assert not learner.shared.shared
        learner.answered(openai(10, 0, "60s"), learner.sent(), False)
        await learner.flush()
        assert await learner.take(1, 0) > 0
    finally:
        await learner.aclose()


async def test_a_newcomer_never_raises_the_token_level_another_process_learned(
    redis_server: RedisServer,
) -> None:
    """A process's first answer, read family by family, lowers the shared token bucket that
    another process learned and never sets it to what that answer says was left."""
    tokens = {
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "100",
        "x-ratelimit-reset-tokens": "54s",
    }
    first = SharedAdaptiveCapacity(redis_server.url, "tokens")
    newcomer = SharedAdaptiveCapacity(redis_server.url, "tokens")
    try:
        await first.take(1, 0)
        first.answered({**openai(10, 9, "6s"), **tokens}, first.sent(), False)
        await first.flush()
        await newcomer.take(1, 0)
        newer = {**tokens, "x-ratelimit-remaining-tokens": "900"}  # admitted before `first`
        newcomer.answered({**openai(10, 8, "12s"), **newer}, newcomer.sent(), False)
        await newcomer.flush()
        assert await first.take(1, 500) > 0
    finally:
        await first.aclose()
        await newcomer.aclose()
