"""Run FakeProvider in a child process so that client CPU time is measured alone."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator

_CHILD = """
import asyncio, sys
from lionpride.testing import FakeProvider

async def main():
    async with FakeProvider(stream_chunks=int(sys.argv[1])) as fp:
        print(fp.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


@contextlib.contextmanager
def fake_provider_process(stream_chunks: int = 8) -> Iterator[str]:
    """Start FakeProvider in a subprocess; yield its URL; stop it on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(stream_chunks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


async def run_concurrently(fn, total: int, concurrency: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Run ``fn()`` ``total`` times with ``concurrency`` workers; return per-call latencies."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    remaining = iter(range(total))

    async def worker() -> None:
        for _ in remaining:
            start = loop.time()
            await fn()
            latencies.append(loop.time() - start)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]
