"""The executor path (limits that never bind) against the direct path, same FakeProvider, same run.

Prints CPU µs per call and p50/p99 latency at concurrency 64 for both and the CPU ratio.
Run: ``.venv/bin/python -m bench.bench_executor`` (target: ratio <= 1.05).
"""

from __future__ import annotations

import asyncio
import time

from pydantic import SecretStr

from bench._server import fake_provider_process, percentile, run_concurrently
from lionpride.services import iModel

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
CONCURRENCY = 64


async def measure(model: iModel, total: int) -> tuple[float, float, float]:
    """CPU µs per call, p50 and p99 latency in ms (after a warm-up)."""

    async def call() -> None:
        await model.invoke(**BODY)

    await run_concurrently(call, 300, CONCURRENCY)
    cpu = time.process_time()
    latencies = await run_concurrently(call, total, CONCURRENCY)
    per_call = (time.process_time() - cpu) / total * 1e6
    return per_call, percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3


async def main(total: int = 4000, rounds: int = 3) -> dict[str, float]:
    """Alternate the two paths ``rounds`` times and keep each one's best CPU figure."""
    with fake_provider_process() as url:
        base = f"{url}/v1"
        direct = iModel(provider="openai", base_url=base, api_key=SecretStr("k"))
        limited = iModel(
            provider="openai",
            base_url=base,
            api_key=SecretStr("k"),
            limit_requests=10_000_000,
            limit_tokens=10_000_000_000,
            capacity_refresh_time=1.0,
        )
        best: dict[str, tuple[float, float, float]] = {}
        for _ in range(rounds):
            for name, model in (("direct", direct), ("executor", limited)):
                result = await measure(model, total)
                if name not in best or result[0] < best[name][0]:
                    best[name] = result
        await direct.aclose()
        await limited.aclose()
    for name, (cpu, p50, p99) in best.items():
        print(f"{name:>8}: {cpu:7.1f} µs/call CPU, p50 {p50:6.2f} ms, p99 {p99:6.2f} ms")
    ratio = best["executor"][0] / best["direct"][0]
    print(f"executor/direct CPU ratio {ratio:.3f} at concurrency {CONCURRENCY}")
    return {"ratio": ratio}


if __name__ == "__main__":
    asyncio.run(main())
