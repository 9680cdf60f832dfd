"""Limits learned from the provider: 2,000 calls at concurrency 64 against a FakeProvider that
enforces limits the client is not told.

Scenarios: OpenAI-style headers, Anthropic-style headers, no headers (an OpenAI-compatible
server that enforces its limits silently), and 4 processes on one account sharing what they
learn through Redis (``redis-server`` on a free port). Each prints the
share of requests answered 429, the share of the provider's allowance used (admitted units
over ``L + L·t/T`` for the binding limit, ``t`` the span of the run at the provider), calls
failed for good, and the same run with the official openai SDK's default
client (two retries, no pacing) where it speaks the wire format.
Run: ``.venv/bin/python -m bench.bench_adaptive`` (targets: with headers <= 1% 429s and
>= 90% used; without <= 5% and >= 80%; nothing lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from bench._server import run_concurrently
from bench.bench_redis import redis_server
from lionpride.services import iModel

TOTAL = 2_000
CONCURRENCY = 64
PROCESSES = 4
WINDOW = 4.0
#: Hidden limits per WINDOW: requests bind, tokens nearly.
LIMITS = {"limit_requests": 400, "limit_tokens": 40_000}
MESSAGES = [{"role": "user", "content": "Say hello."}]

_CHILD = """
import asyncio, json, sys
from lionpride.testing import FakeProvider

async def main():
    async with FakeProvider(**json.loads(sys.argv[1])) as fp:
        print(fp.port, flush=True)
        loop = asyncio.get_running_loop()
        while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            if line == "reset":
                fp.reset()
            seen = fp.arrivals
            print(json.dumps({"requests": len(seen), "429": fp.count_429,
                              "span": seen[-1] - seen[0] if seen else 0.0}), flush=True)

asyncio.run(main())
"""


class Provider:
    """FakeProvider with hidden limits, in a child process: its URL, its counters."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self._proc = proc
        self.url = url

    def _ask(self, line: str) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self._proc.stdout.readline())
        return answer

    def stats(self) -> dict[str, Any]:
        """Requests seen, 429s sent, and seconds from the first request to the last."""
        return self._ask("stats")

    def reset(self) -> None:
        """Full buckets and zero counters, for the next run."""
        self._ask("reset")


@contextlib.contextmanager
def provider(**options: Any) -> Iterator[Provider]:
    """Start the limited FakeProvider in a subprocess; stop it on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield Provider(proc, f"http://127.0.0.1:{int(proc.stdout.readline())}")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


@dataclass
class Run:
    """What one run did, at the provider and at the client."""

    requests: int
    refused: int
    span: float
    failed: int
    seconds: float
    tokens_per_call: int

    @property
    def share_429(self) -> float:
        """Requests answered 429, as a share of all requests."""
        return self.refused / self.requests if self.requests else 0.0

    def used(self, window: float, limits: dict[str, int]) -> float:
        """Admitted units over the allowance ``L + L·span/T`` of the binding limit."""
        admitted = self.requests - self.refused
        shares = [admitted / (limits["limit_requests"] * (1 + self.span / window))]
        if "limit_tokens" in limits and self.tokens_per_call:
            tokens = admitted * self.tokens_per_call
            shares.append(tokens / (limits["limit_tokens"] * (1 + self.span / window)))
        return max(shares)


async def run_ours(
    url: str, provider_name: str, total: int, concurrency: int, redis_url: str | None = None
) -> tuple[int, int]:
    """Our calls: failures and tokens per call (from the usage of a success)."""
    shared: dict[str, Any] = {} if redis_url is None else {"redis_url": redis_url}
    model = iModel(provider=provider_name, base_url=url, api_key=SecretStr("k"), **shared)
    failed = 0
    tokens = 0

    async def call() -> None:
        nonlocal failed, tokens
        calling = await model.invoke(
            model="m", messages=MESSAGES, max_tokens=64, raise_on_error=False
        )
        if calling.execution.error is not None:
            failed += 1
        elif calling.usage is not None:
            tokens = calling.usage.total_tokens

    async with model:
        await run_concurrently(call, total, concurrency)
        learned = model.metrics()["learned_limits"]
    if concurrency == CONCURRENCY:
        print(f"    learned ({provider_name}): {json.dumps(learned)}")
    return failed, tokens


async def run_sdk(url: str, total: int) -> int:
    """The openai SDK's default client (2 retries, no pacing): calls failed for good."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="k")
    failed = 0

    async def call() -> None:
        nonlocal failed
        try:
            await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=64)  # type: ignore[arg-type]
        except openai.APIError:
            failed += 1

    await run_concurrently(call, total, CONCURRENCY)
    await client.close()
    return failed


def measured(fp: Provider, start: float, failed: int, tokens: int) -> Run:
    stats = fp.stats()
    return Run(
        stats["requests"], stats["429"], stats["span"], failed, time.perf_counter() - start, tokens
    )


def _worker(url: str, redis_url: str, total: int) -> None:
    failed, tokens = asyncio.run(
        run_ours(url, "openai", total, CONCURRENCY // PROCESSES, redis_url)
    )
    print(json.dumps({"failed": failed, "tokens": tokens}), flush=True)


async def run_processes(fp: Provider, redis_url: str) -> tuple[int, int]:
    """PROCESSES processes on one account, sharing what they learn: failures, tokens."""
    code = (
        "import sys; from bench.bench_adaptive import _worker; "
        "_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))"
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            f"{fp.url}/v1",
            redis_url,
            str(TOTAL // PROCESSES),
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    outs = await asyncio.gather(*(p.communicate() for p in procs))
    results = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs]
    return sum(r["failed"] for r in results), max(r["tokens"] for r in results)


def row(name: str, run: Run, limits: dict[str, int]) -> str:
    return (
        f"{name:<28}{run.share_429:>8.1%}{run.used(WINDOW, limits):>8.1%}"
        f"{run.failed:>8}{run.requests:>10}{run.seconds:>8.1f}s"
    )


async def main() -> dict[str, float]:
    """Run every scenario; print the table and return the figures."""
    scenarios: list[tuple[str, str, dict[str, Any]]] = [
        ("openai headers", "openai", {}),
        ("anthropic headers", "anthropic", {}),
        ("no headers", "openai", {"limit_headers": False}),
    ]
    figures: dict[str, float] = {}
    lines = [f"{'run':<28}{'429s':>8}{'used':>8}{'failed':>8}{'requests':>10}{'time':>9}"]
    for name, provider_name, options in scenarios:
        with provider(window=WINDOW, latency=0.02, **LIMITS, **options) as fp:
            url = fp.url + ("/v1" if provider_name == "openai" else "")
            start = time.perf_counter()
            failed, tokens = await run_ours(url, provider_name, TOTAL, CONCURRENCY)
            ours = measured(fp, start, failed, tokens)
            lines.append(row(f"lionpride, {name}", ours, LIMITS))
            figures[f"{name} 429s"] = ours.share_429
            figures[f"{name} used"] = ours.used(WINDOW, LIMITS)
            figures[f"{name} failed"] = ours.failed
            if provider_name == "openai":
                fp.reset()
                start = time.perf_counter()
                sdk_failed = await run_sdk(url, TOTAL)
                lines.append(
                    row(f"openai SDK, {name}", measured(fp, start, sdk_failed, tokens), LIMITS)
                )
    with provider(window=WINDOW, latency=0.02, **LIMITS) as fp, redis_server() as redis_url:
        start = time.perf_counter()
        failed, tokens = await run_processes(fp, redis_url)
        shared = measured(fp, start, failed, tokens)
        lines.append(row(f"lionpride, {PROCESSES} processes+Redis", shared, LIMITS))
        figures["redis 429s"] = shared.share_429
        figures["redis used"] = shared.used(WINDOW, LIMITS)
        figures["redis failed"] = shared.failed
    print(f"{TOTAL} calls at concurrency {CONCURRENCY}; hidden limits {LIMITS} per {WINDOW:g}s")
    print("\n".join(lines))
    return figures


if __name__ == "__main__":
    asyncio.run(main())
