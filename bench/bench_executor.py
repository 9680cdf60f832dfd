"""The executor path (limits that never bind) against the direct path, same FakeProvider, same run.

Prints CPU µs per call and p50/p99 latency at concurrency 64 for both, and the CPU ratio; and
the ratio of the default model, whose executor paces by the limits it learns from the answers.
Run: ``.venv/bin/python -m bench.bench_executor`` (target: ratio <= 1.05).

The ratio is the median over many short rounds taken in pairs, one round of each path back
to back, the order flipped every pair: on a shared machine the speed drifts by more than the
5% measured here within seconds, and a pair sees the same drift on both sides. A control pair,
the direct path against a second direct model, shows what a ratio of 1 looks like in the same
run (its distance from 1.00 is the noise left in the method).
"""

from __future__ import annotations

import asyncio
import statistics
import time

from pydantic import SecretStr

from bench._server import fake_provider_process, percentile, run_concurrently
from lionpride.services import iModel

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
CONCURRENCY = 64


async def measure(model: iModel, total: int) -> tuple[float, list[float]]:
    """CPU µs per call of ``total`` calls, and their latencies in seconds."""

    async def call() -> None:
        await model.invoke(**BODY)

    cpu = time.process_time()
    latencies = await run_concurrently(call, total, CONCURRENCY)
    return (time.process_time() - cpu) / total * 1e6, latencies


async def paired(
    a: iModel, b: iModel, pairs: int, per_round: int
) -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """``pairs`` rounds of each model back to back: per-round ratios b/a, CPU and latencies."""
    ratios: list[float] = []
    cpu_a: list[float] = []
    cpu_b: list[float] = []
    lat_a: list[float] = []
    lat_b: list[float] = []
    for i in range(pairs):
        if i % 2:
            ca, la = await measure(a, per_round)
            cb, lb = await measure(b, per_round)
        else:
            cb, lb = await measure(b, per_round)
            ca, la = await measure(a, per_round)
        ratios.append(cb / ca)
        cpu_a.append(ca)
        cpu_b.append(cb)
        lat_a += la
        lat_b += lb
    return ratios, cpu_a, cpu_b, lat_a, lat_b


def spread(ratios: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    return f"{median:.3f} (quartiles {q1:.3f}-{q3:.3f})"


async def main(pairs: int = 200, per_round: int = 200) -> dict[str, float]:
    """Measure both paths and the control; print and return the median ratios."""
    with fake_provider_process() as url:
        base = f"{url}/v1"
        # The direct path: no executor (learning the provider's limits is off).
        direct = iModel(
            provider="openai", base_url=base, api_key=SecretStr("k"), adaptive_limits=False
        )
        control = iModel(
            provider="openai", base_url=base, api_key=SecretStr("k"), adaptive_limits=False
        )
        limited = iModel(
            provider="openai",
            base_url=base,
            api_key=SecretStr("k"),
            limit_requests=10_000_000,
            limit_tokens=10_000_000_000,
            capacity_refresh_time=1.0,
            adaptive_limits=False,
        )
        # The default: the executor over limits learned from the answers (none bind here).
        learning = iModel(provider="openai", base_url=base, api_key=SecretStr("k"))
        models = (direct, control, limited, learning)
        for model in models:  # warm-up: sessions, connections, caches
            await measure(model, 500)
        ratios, cpu_d, cpu_e, lat_d, lat_e = await paired(direct, limited, pairs, per_round)
        learned_ratios = (await paired(direct, learning, pairs // 2, per_round))[0]
        control_ratios = (await paired(direct, control, pairs, per_round))[0]
        for model in models:
            await model.aclose()
    for name, cpu, lat in (("direct", cpu_d, lat_d), ("executor", cpu_e, lat_e)):
        print(
            f"{name:>8}: {statistics.median(cpu):7.1f} µs/call CPU (median round), "
            f"p50 {percentile(lat, 50) * 1e3:6.2f} ms, p99 {percentile(lat, 99) * 1e3:6.2f} ms"
        )
    print(f"executor/direct CPU ratio {spread(ratios)} at concurrency {CONCURRENCY}")
    print(f"learned/direct CPU ratio  {spread(learned_ratios)} (the default: limits learned)")
    print(f"control (direct/direct)   {spread(control_ratios)}")
    return {
        "ratio": statistics.median(ratios),
        "learned": statistics.median(learned_ratios),
        "control": statistics.median(control_ratios),
    }


if __name__ == "__main__":
    asyncio.run(main())
