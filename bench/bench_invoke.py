"""iModel.invoke against raw aiohttp on the same FakeProvider: CPU µs per call and the ratio.

Chat completions, then the Responses endpoint (both sides posting the same Responses body).

Run: ``.venv/bin/python bench/bench_invoke.py`` (target: ratio <= 1.5 at concurrency 1 and 64).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from pydantic import SecretStr

from bench._server import fake_provider_process, run_concurrently
from lionpride.services.imodel import iModel

ROUNDS = 3
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
RESPONSES_BODY = {"model": "gpt-5-mini", "input": [{"role": "user", "content": "Say hello."}]}


async def measure(fn, total: int, concurrency: int) -> float:  # type: ignore[no-untyped-def]
    """CPU microseconds per call of ``fn`` (after a warm-up)."""
    await run_concurrently(fn, 200, concurrency)
    cpu = time.process_time()
    await run_concurrently(fn, total, concurrency)
    return (time.process_time() - cpu) / total * 1e6


async def main(total: int = 3000) -> dict[str, float]:
    """Measure raw aiohttp and iModel at concurrency 1 and 64; print and return the figures."""
    results: dict[str, float] = {}
    with fake_provider_process() as url:
        base = f"{url}/v1"
        headers = {"Authorization": "Bearer k"}
        connector = aiohttp.TCPConnector(limit=1000)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def raw() -> None:
                async with session.post(
                    f"{base}/chat/completions", json=BODY, headers=headers
                ) as resp:
                    await resp.json()

            model = iModel(provider="openai", base_url=base, api_key=SecretStr("k"))

            async def lion() -> None:
                await model.invoke(**BODY)

            await compare("", raw, lion, total, results)
            await model.aclose()

            async def raw_responses() -> None:
                async with session.post(
                    f"{base}/responses", json=RESPONSES_BODY, headers=headers
                ) as resp:
                    await resp.json()

            responses = iModel(
                provider="openai", endpoint="responses", base_url=base, api_key=SecretStr("k")
            )

            async def lion_responses() -> None:
                await responses.invoke(**RESPONSES_BODY)

            await compare("responses ", raw_responses, lion_responses, total, results)
            await responses.aclose()
    return results


async def compare(label: str, raw, lion, total: int, results: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    """Measure ``raw`` and ``lion`` at concurrency 1 and 64; record and print the figures."""
    for concurrency in (1, 64):
        # Alternate the two, several rounds, and keep each one's best: this machine is
        # shared, and a burst of someone else's work should not decide the ratio.
        r = m = float("inf")
        for _ in range(ROUNDS):
            r = min(r, await measure(raw, total, concurrency))
            m = min(m, await measure(lion, total, concurrency))
        key = label.strip().replace(" ", "_") + "_" if label else ""
        results[f"{key}raw_c{concurrency}"] = r
        results[f"{key}imodel_c{concurrency}"] = m
        print(
            f"{label}concurrency {concurrency:>3}: raw aiohttp {r:7.1f} µs/call, "
            f"iModel.invoke {m:7.1f} µs/call, ratio {m / r:.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
