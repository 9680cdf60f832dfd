"""Shared limits on Redis: acquire throughput per process and the latency each call adds.

Run from the repo root: ``.venv/bin/python -m bench.bench_redis`` (starts its own
``redis-server`` on a free port). Limits are set far above the load, so every figure is the
cost of asking, never a wait.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from lionpride.services.distributed import make_limiter
from lionpride.services.utilities.rate_limiter import RateLimitConfig, RateLimiter, TokenBucket

HUGE = 10**9


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", directory],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Ready to accept connections" in line:
                break
        proc.stdout.close()
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


async def rate(acquire: Callable[[], Awaitable[object]], total: int, concurrency: int) -> float:
    """Acquires per second with ``concurrency`` tasks sharing ``total`` acquires."""
    share = total // concurrency

    async def worker() -> None:
        for _ in range(share):
            await acquire()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return share * concurrency / (time.perf_counter() - start)


async def main(total: int = 5000) -> dict[str, float]:
    """Measure local and Redis-backed acquires; print and return the figures."""
    local = RateLimiter(
        TokenBucket(RateLimitConfig(HUGE, HUGE)), TokenBucket(RateLimitConfig(HUGE, HUGE))
    )
    results: dict[str, float] = {}
    with redis_server() as url:
        shared = make_limiter(
            redis_url=url,
            limit_key="bench",
            limit_requests=HUGE,
            limit_tokens=HUGE,
            capacity_refresh_time=1.0,
        )
        for name, limiter in (("local", local), ("redis", shared)):

            async def acquire(limiter: RateLimiter = limiter) -> None:
                await limiter.acquire(1, 100)

            await rate(acquire, 500, 1)  # warm-up: connections, script load
            for concurrency in (1, 64):
                results[f"{name}_c{concurrency}"] = await rate(acquire, total, concurrency)
        await shared.backend.aclose()  # type: ignore[attr-defined]
    added = 1e6 / results["redis_c1"] - 1e6 / results["local_c1"]
    print(f"{'backend':<8}{'acquires/s c=1':>18}{'acquires/s c=64':>18}")
    for name in ("local", "redis"):
        print(f"{name:<8}{results[f'{name}_c1']:>18,.0f}{results[f'{name}_c64']:>18,.0f}")
    print(f"added latency per call (Redis, c=1): {added:.0f} µs")
    results["added_latency_us"] = added
    return results


if __name__ == "__main__":
    asyncio.run(main())
