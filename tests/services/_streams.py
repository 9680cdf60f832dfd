"""Endpoints on a FakeProvider and whole-stream reads, for the tests of retried streams."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import SecretStr
from tests.services.test_fault_matrix import Retries

from lionpride.services.providers.match import match_endpoint
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.endpoint import Endpoint
from lionpride.services.utilities.resilience import no_backoff
from lionpride.testing import FakeProvider

MESSAGES = [{"role": "user", "content": "Hello there"}]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.0-flash"}


def endpoint(fp: FakeProvider, provider: str = "openai", **kwargs: Any) -> Endpoint:
    """An endpoint for ``provider`` on ``fp``, with the default retries unless overridden."""
    return match_endpoint(
        provider, base_url=fp.base_url(provider), api_key=SecretStr("k"), **kwargs
    )


def payload(ep: Endpoint, provider: str = "openai") -> dict[str, Any]:
    """A validated request for ``provider``."""
    return ep.create_payload({"model": MODELS[provider], "messages": MESSAGES})


async def read_stream(
    ep: Endpoint, provider: str = "openai", **kwargs: Any
) -> tuple[list[StreamChunk], BaseException | None]:
    """Read a whole stream; return the chunks that came out and the error that ended it."""
    chunks: list[StreamChunk] = []
    try:
        async with asyncio.timeout(20):  # a hang fails the test, never the run
            async for chunk in ep.stream(payload(ep, provider), **kwargs):
                chunks.append(chunk)
    except Exception as exc:
        return chunks, exc
    return chunks, None


async def read_with_retries(
    ep: Endpoint, provider: str = "openai", **kwargs: Any
) -> tuple[list[StreamChunk], BaseException | None, Retries]:
    """:func:`read_stream` without backoff sleeps; also return the retries it announced."""
    observer = Retries()
    with no_backoff():
        chunks, error = await read_stream(ep, provider, on_retry=observer, **kwargs)
    return chunks, error, observer


def anthropic_event(kind: str, **data: Any) -> str:
    """One Anthropic SSE event of type ``kind``."""
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"


MESSAGE_START = anthropic_event(
    "message_start",
    message={
        "id": "msg_1",
        "model": "claude-x",
        "content": [],
        "usage": {"input_tokens": 5, "output_tokens": 1},
    },
)
BLOCK_START = anthropic_event(
    "content_block_start", index=0, content_block={"type": "text", "text": ""}
)
#: The first text delta of an Anthropic stream: the caller's first chunk.
HEL = anthropic_event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hel"})
#: The events of an Anthropic stream up to and including its first text chunk.
TO_FIRST_CHUNK = [MESSAGE_START, BLOCK_START, HEL]
