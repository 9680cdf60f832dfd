"""iModel.invoke_stream (and Endpoint.stream) against raw aiohttp on one FakeProvider: CPU µs
per stream and the ratios.

Both sides POST the same chat-completion request with ``stream: true`` and read a 60-chunk SSE
reply to the end: raw aiohttp iterates the body's lines and JSON-decodes each ``data:`` event;
lionpride decodes the SSE, assembles chunks and the final NormalizedResponse.

The Responses endpoint is measured the same way: the same Responses body with ``stream: true``,
typed events (no ``[DONE]``: raw aiohttp reads to the end), against ``iModel.invoke_stream``.

Run: ``.venv/bin/python -m bench.bench_stream`` (target: ratio <= 1.3 at concurrency 16).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
from pydantic import SecretStr

from bench._server import fake_provider_process, run_concurrently
from lionpride.services import iModel
from lionpride.services.providers.oai_chat import OAIChatEndpoint, create_oai_chat

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me a story."}]}
CHUNKS = 60
CONCURRENCY = 16
HEADERS = {"Authorization": "Bearer k"}


async def measure(fn: Callable[[], Awaitable[None]], total: int) -> float:
    """CPU microseconds per stream of ``fn`` (after a warm-up)."""
    await run_concurrently(fn, 100, CONCURRENCY)
    cpu = time.process_time()
    await run_concurrently(fn, total, CONCURRENCY)
    return (time.process_time() - cpu) / total * 1e6


async def read_events(
    session: aiohttp.ClientSession, url: str, body: dict[str, object], counts: list[int]
) -> None:
    """What raw aiohttp does for a stream: iterate the lines, JSON-decode each event's data
    (up to ``[DONE]`` where the API sends one); count the events into ``counts``."""
    events = 0
    async with session.post(url, json=body, headers=HEADERS) as resp:
        async for line in resp.content:
            if line.startswith(b"data: "):
                data = line[6:].strip()
                if data == b"[DONE]":
                    break
                json.loads(data)
                events += 1
    counts.append(events)


async def main(total: int = 1000) -> dict[str, float]:
    """Measure raw aiohttp and Endpoint.stream(); print and return the figures."""
    with fake_provider_process(stream_chunks=CHUNKS) as url:
        base = f"{url}/v1"
        # The same body the endpoint sends for a stream (it asks OpenAI for the usage chunk).
        raw_body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
        connector = aiohttp.TCPConnector(limit=1000)
        async with aiohttp.ClientSession(connector=connector) as session:
            counts: list[int] = []

            async def raw() -> None:
                await read_events(session, f"{base}/chat/completions", raw_body, counts)

            config = create_oai_chat("openai", base_url=base, api_key=SecretStr("k"))
            endpoint = OAIChatEndpoint(config=config)
            payload = endpoint.create_payload(BODY)
            texts: list[int] = []

            async def lion() -> None:
                pieces = 0
                async for chunk in endpoint.stream(payload):
                    if chunk.content:
                        pieces += 1
                texts.append(pieces)

            model = iModel(provider="openai", base_url=base, api_key=SecretStr("k"))

            async def imodel() -> None:
                pieces = 0
                async for chunk in model.invoke_stream(**BODY):
                    if chunk.content:
                        pieces += 1
                texts.append(pieces)

            r = await measure(raw, total)
            m = await measure(lion, total)
            i = await measure(imodel, total)
            await endpoint.aclose()
            await model.aclose()
    assert min(counts) >= CHUNKS and min(texts) >= CHUNKS, (min(counts), min(texts))
    print(
        f"{CHUNKS}-chunk streams, concurrency {CONCURRENCY}: raw aiohttp {r:7.1f} µs/stream, "
        f"Endpoint.stream {m:7.1f} µs/stream (ratio {m / r:.2f}), "
        f"iModel.invoke_stream {i:7.1f} µs/stream (ratio {i / r:.2f})"
    )
    figures = {"raw": r, "stream": m, "invoke_stream": i, "ratio": i / r}
    figures.update(await responses_streams(total))
    return figures


RESPONSES_BODY = {"model": "gpt-5-mini", "input": "Tell me a story."}


async def responses_streams(total: int) -> dict[str, float]:
    """Raw aiohttp against iModel.invoke_stream on the Responses endpoint."""
    with fake_provider_process(stream_chunks=CHUNKS) as url:
        base = f"{url}/v1"
        raw_body = {**RESPONSES_BODY, "stream": True}
        connector = aiohttp.TCPConnector(limit=1000)
        async with aiohttp.ClientSession(connector=connector) as session:
            counts: list[int] = []

            async def raw() -> None:
                await read_events(session, f"{base}/responses", raw_body, counts)

            model = iModel(
                provider="openai", endpoint="responses", base_url=base, api_key=SecretStr("k")
            )
            texts: list[int] = []

            async def imodel() -> None:
                pieces = 0
                async for chunk in model.invoke_stream(**RESPONSES_BODY):
                    if chunk.content:
                        pieces += 1
                texts.append(pieces)

            r = await measure(raw, total)
            i = await measure(imodel, total)
            await model.aclose()
    assert min(counts) >= CHUNKS and min(texts) >= CHUNKS, (min(counts), min(texts))
    print(
        f"Responses {CHUNKS}-chunk streams, concurrency {CONCURRENCY}: raw aiohttp "
        f"{r:7.1f} µs/stream, iModel.invoke_stream {i:7.1f} µs/stream (ratio {i / r:.2f})"
    )
    return {"responses_raw": r, "responses_invoke_stream": i, "responses_ratio": i / r}


if __name__ == "__main__":
    asyncio.run(main())
