"""One worker process of the multi-process tests: calls FakeProvider under a shared limit.

Usage: ``python _worker.py <chat_url> <redis_url> <limit_key> <calls> <requests|tokens>``.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp

from lionpride.services.distributed import make_limiter
from lionpride.services.execution.executor import RateLimitedExecutor

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "Hi"}]}
TOKENS_PER_CALL = 10


async def main(url: str, redis_url: str, key: str, calls: int, mode: str) -> None:
    """Make ``calls`` concurrent calls through one executor over the shared limiter."""
    limiter = make_limiter(
        redis_url=redis_url,
        limit_key=key,
        limit_requests=20 if mode == "requests" else None,
        limit_tokens=20 * TOKENS_PER_CALL if mode == "tokens" else None,
        capacity_refresh_time=2.0,
    )
    tokens = TOKENS_PER_CALL if mode == "tokens" else 0
    async with aiohttp.ClientSession() as session, RateLimitedExecutor(limiter=limiter) as ex:

        async def call() -> int:
            async with session.post(url, json=BODY) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(
            *(ex.execute(call, tokens=tokens, settle=lambda _: tokens) for _ in range(calls))
        )
    await limiter.backend.aclose()  # type: ignore[attr-defined]
    assert statuses == [200] * calls, statuses
    print(f"done {calls}")


if __name__ == "__main__":
    chat_url, redis_url, key, n, mode = sys.argv[1:]
    asyncio.run(main(chat_url, redis_url, key, int(n), mode))
