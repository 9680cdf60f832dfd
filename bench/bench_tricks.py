"""The price of each speed trick the library keeps: the trick against its plain form.

Every trick sits behind one function (bench/README.md lists them with the benchmark that
protects each). This prints, per trick, the µs per use of the plain form and of the trick, and
what the trick saves on one call (uses per call x the difference), so that a trick that stops
paying for itself shows here first.

Run: ``.venv/bin/python -m bench.bench_tricks``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, PrivateAttr

from lionpride.core._trusted import build_trusted
from lionpride.services.providers.oai_chat import OAIChatEndpoint, OpenAIChatCompletionsRequest
from lionpride.services.types._fast_request import plain_payload
from lionpride.services.types._json_wire import json_dumps, json_loads
from lionpride.services.types.endpoint import APICalling
from lionpride.services.types.response import NormalizedResponse, Usage
from lionpride.services.utilities.loops import runs_here

BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Say hello, in French and in Japanese: こんにちは."},
    ],
    "max_tokens": 64,
}
ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Bonjour"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
    }
).encode()


def per_use(fn: Callable[[], Any], uses: int = 20_000) -> float:
    """µs per call of ``fn``, best of five rounds (the least disturbed by the machine)."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(uses):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / uses * 1e6


async def per_await(make: Callable[[], Any], uses: int = 20_000) -> float:
    """µs per ``await make()``, best of five rounds."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(uses):
            await make()
        best = min(best, time.perf_counter() - start)
    return best / uses * 1e6


class _WithPrivate(BaseModel):
    _state: int = PrivateAttr(default=1)


class _WithPlain(BaseModel):
    pass


def report(name: str, plain: float, trick: float, per_call: int = 1) -> None:
    print(
        f"{name:<46} plain {plain:7.3f} µs  trick {trick:7.3f} µs  "
        f"saves {(plain - trick) * per_call:6.3f} µs/call"
    )


async def frames() -> tuple[float, float]:
    """An awaitable returned to the caller against one awaited in a wrapper coroutine."""

    async def inner() -> int:
        await asyncio.sleep(0)
        return 1

    async def wrapper() -> int:
        return await inner()

    return await per_await(wrapper), await per_await(inner)


def main() -> None:
    endpoint = OAIChatEndpoint(api_key="sk-bench")
    fields = {"backend": endpoint, "payload": dict(BODY)}
    report(
        "trusted construction: the Calling",
        per_use(lambda: APICalling(**fields)),
        per_use(lambda: build_trusted(APICalling, fields)),
    )
    report(
        "request checked without pydantic (plain_payload)",
        per_use(lambda: OpenAIChatCompletionsRequest.model_validate(BODY).to_payload()),
        per_use(lambda: plain_payload(OpenAIChatCompletionsRequest, BODY)),
    )
    counts = {"input_tokens": 20, "output_tokens": 3, "total_tokens": 23}
    usage = Usage(**counts)
    parts = {
        "data": "Bonjour",
        "tool_calls": [],
        "usage": usage,
        "finish_reason": "stop",
        "metadata": {"model": "gpt-4o-mini"},
        "raw_response": {},
    }
    # In a tight loop these two cost about what validation costs (the Usage more); they are
    # kept for concurrency 1, where a pydantic call is cold after each network wait: 0.09 of
    # bench_invoke's ratio there (median of 30 paired rounds, bench/README.md).
    report(
        "trusted construction: the response (Usage + NormalizedResponse)",
        per_use(lambda: NormalizedResponse(**{**parts, "usage": Usage(**counts)})),
        per_use(
            lambda: build_trusted(
                NormalizedResponse, {**parts, "usage": build_trusted(Usage, counts)}
            )
        ),
    )
    report(
        "JSON encoder built once (request body)",
        per_use(lambda: json.dumps(BODY, separators=(",", ":"), ensure_ascii=False).encode()),
        per_use(lambda: json_dumps(BODY)),
    )
    report(
        "JSON body decoded as UTF-8 first",
        per_use(lambda: json.loads(ANSWER)),
        per_use(lambda: json_loads(ANSWER)),
    )

    async def loop_checks() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        return (
            per_use(lambda: asyncio.get_running_loop() is loop),
            per_use(lambda: runs_here(loop)),
        )

    plain, trick = asyncio.run(loop_checks())
    # Asked by the session cache and by the learned limits on every call.
    report("runs_here instead of get_running_loop (x2)", plain, trick, per_call=2)
    private, plain_attr = _WithPrivate(), _WithPlain()
    object.__setattr__(plain_attr, "_state", 1)
    report(
        "runtime state outside pydantic private attrs",
        per_use(lambda: private._state),
        per_use(lambda: plain_attr._state),  # type: ignore[attr-defined]
        per_call=6,
    )
    plain, trick = asyncio.run(frames())
    report("an awaitable returned, not awaited (x2)", plain, trick, per_call=2)


if __name__ == "__main__":
    main()
