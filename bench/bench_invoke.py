"""iModel.invoke against raw aiohttp on the same FakeProvider: CPU µs per call and the ratio.

Chat completions, then the Responses endpoint (both sides posting the same Responses body),
then the canonical request (OpenAI chat) sent to Anthropic and to Gemini against the same call
written in each one's native format: the cost of translation.

Run: ``.venv/bin/python -m bench.bench_invoke`` (targets: ratio <= 1.5 against raw aiohttp at
concurrency 1 and 64; canonical / native <= 1.15).
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

SYSTEM = "Answer briefly; call get_weather for weather questions."
QUESTION = "What's the weather in Paris?"
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
#: One realistic request (system prompt, a question, a tool, an output limit), canonical...
CANONICAL = {
    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather.",
                "parameters": PARAMETERS,
            },
        }
    ],
    "max_tokens": 256,
}
#: ... and written natively for each provider.
NATIVE = {
    "anthropic": {
        "system": SYSTEM,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [{"name": "get_weather", "description": "Weather.", "input_schema": PARAMETERS}],
        "max_tokens": 256,
    },
    "gemini": {
        "systemInstruction": {"parts": [{"text": SYSTEM}]},
        "contents": [{"role": "user", "parts": [{"text": QUESTION}]}],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather.",
                        "parametersJsonSchema": PARAMETERS,
                    }
                ]
            }
        ],
        "generationConfig": {"maxOutputTokens": 256},
    },
}
MODELS = {"anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}


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
        await translation(url, total, results)
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


async def translation(url: str, total: int, results: dict[str, float]) -> None:
    """Canonical against native requests to Anthropic and Gemini, at concurrency 64."""
    for provider, name in MODELS.items():
        base = f"{url}/v1beta" if provider == "gemini" else f"{url}/v1"
        model = iModel(provider=provider, model=name, base_url=base, api_key=SecretStr("k"))

        async def canonical(model: iModel = model) -> None:
            await model.invoke(**CANONICAL)

        async def native(model: iModel = model, body: dict = NATIVE[provider]) -> None:  # type: ignore[type-arg]
            await model.invoke(**body)

        c = n = float("inf")
        for _ in range(ROUNDS):
            n = min(n, await measure(native, total, 64))
            c = min(c, await measure(canonical, total, 64))
        results[f"{provider}_native"], results[f"{provider}_canonical"] = n, c
        print(
            f"{provider:>9}: native {n:7.1f} µs/call, canonical {c:7.1f} µs/call, ratio {c / n:.2f}"
        )
        await model.aclose()


if __name__ == "__main__":
    asyncio.run(main())
