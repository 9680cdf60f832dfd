"""FakeProvider: a real loopback server speaking the OpenAI, Anthropic and Gemini formats."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.conftest import wire_files

from lionpride.testing import FakeClock, FakeProvider, Reply

PROMPT = "What is the capital of France?"  # 30 characters -> 8 input tokens
OPENAI_BODY: dict[str, Any] = {
    "model": "gpt-test",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}],
}
ANTHROPIC_BODY: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 1000,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
}
GEMINI_BODY: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
}
INPUT_TOKENS = math.ceil(len("Be brief." + PROMPT) / 4)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def fp() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as provider:
        yield provider


def sse_events(raw: bytes) -> list[dict[str, str]]:
    """Parse an SSE body into events with their ``event`` and joined ``data`` fields."""
    events = []
    text = raw.decode().replace("\r\n", "\n")
    for block in text.split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":") and ":" in line:
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value.removeprefix(" "))
        if "data" in fields:
            event = {"data": "\n".join(fields["data"])}
            if "event" in fields:
                event["event"] = fields["event"][0]
            events.append(event)
    return events


async def post(
    session: aiohttp.ClientSession, url: str, body: Any
) -> tuple[int, dict[str, str], bytes]:
    """POST JSON and return status, lower-cased headers and the raw body."""
    async with session.post(url, json=body) as resp:
        headers = {k.lower(): v for k, v in resp.headers.items()}
        return resp.status, headers, await resp.read()


def openai_url(fp: FakeProvider) -> str:
    return fp.base_url("openai") + "/chat/completions"


def anthropic_url(fp: FakeProvider) -> str:
    return fp.base_url("anthropic") + "/messages?beta=true"


def gemini_url(fp: FakeProvider, model: str = "gemini-test", stream: bool = False) -> str:
    action = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
    return f"{fp.base_url('gemini')}/models/{model}{action}"


# -- addresses --------------------------------------------------------------------------------


async def test_base_urls_follow_each_providers_layout(fp: FakeProvider) -> None:
    """Each provider name maps to the base path its client expects."""
    assert fp.url == f"http://127.0.0.1:{fp.port}"
    assert fp.base_url("openai") == fp.url + "/v1"
    assert fp.base_url("groq") == fp.url + "/openai/v1"
    assert fp.base_url("openrouter") == fp.url + "/api/v1"
    assert fp.base_url("anthropic") == fp.url + "/v1"
    assert fp.base_url("gemini") == fp.url + "/v1beta"
    assert fp.base_url("nvidia_nim") == fp.base_url("mistral") == fp.url + "/v1"


async def test_port_is_unavailable_before_start() -> None:
    """A provider that is not running has no port and stops harmlessly."""
    provider = FakeProvider()
    with pytest.raises(RuntimeError):
        _ = provider.port
    await provider.stop()


# -- OpenAI -------------------------------------------------------------------------------------


async def test_openai_plain_reply(fp: FakeProvider, session: aiohttp.ClientSession) -> None:
    """A plain chat completion echoes the model and counts prompt and reply tokens."""
    status, headers, raw = await post(session, openai_url(fp), OPENAI_BODY)
    reply = json.loads(raw)
    assert status == 200 and headers["content-type"] == "application/json"
    assert reply["id"] == "chatcmpl-fake-1" and reply["model"] == "gpt-test"
    choice = reply["choices"][0]
    text = choice["message"]["content"]
    assert text.startswith("Hello from FakeProvider") and choice["finish_reason"] == "stop"
    words = len(text.split())
    assert reply["usage"] == {
        "prompt_tokens": INPUT_TOKENS,
        "completion_tokens": words,
        "total_tokens": INPUT_TOKENS + words,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


async def test_openai_stream_matches_plain_text(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """Stream deltas concatenate to the plain text; usage comes in a final choices-less chunk."""
    _, _, plain_raw = await post(session, openai_url(fp), OPENAI_BODY)
    plain = json.loads(plain_raw)["choices"][0]["message"]["content"]
    body = {**OPENAI_BODY, "stream": True, "stream_options": {"include_usage": True}}
    status, headers, raw = await post(session, openai_url(fp), body)
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert raw.endswith(b"data: [DONE]\n\n") and b"\r\n" not in raw
    events = sse_events(raw)
    assert events[-1]["data"] == "[DONE]"
    chunks = [json.loads(e["data"]) for e in events[:-1]]
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "".join(d for d in deltas if d) == plain
    assert sum(1 for d in deltas if d) == fp.stream_chunks
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["usage"] is None
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == len(plain.split())


async def test_openai_stream_without_include_usage_has_no_usage(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """Without stream_options.include_usage no chunk carries usage."""
    _, _, raw = await post(session, openai_url(fp), {**OPENAI_BODY, "stream": True})
    chunks = [json.loads(e["data"]) for e in sse_events(raw)[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)


async def test_stream_arrives_incrementally(session: aiohttp.ClientSession) -> None:
    """Events are written one at a time, so the first arrives well before the last."""
    async with FakeProvider(stream_chunks=5, chunk_delay=0.03) as provider:
        body = {**OPENAI_BODY, "stream": True}
        arrivals = []
        async with session.post(openai_url(provider), json=body) as resp:
            async for line in resp.content:
                if line.startswith(b"data:"):
                    arrivals.append(time.monotonic())
    assert len(arrivals) == 5 + 3  # role chunk, 5 deltas, finish chunk, [DONE]
    assert arrivals[-1] - arrivals[0] >= 0.1


# -- Anthropic ----------------------------------------------------------------------------------


async def test_anthropic_plain_reply(fp: FakeProvider, session: aiohttp.ClientSession) -> None:
    """A plain message counts system and text blocks and ends its turn."""
    status, _, raw = await post(session, anthropic_url(fp), ANTHROPIC_BODY)
    reply = json.loads(raw)
    assert status == 200 and reply["id"] == "msg_fake_1" and reply["model"] == "claude-test"
    assert reply["type"] == "message" and reply["stop_reason"] == "end_turn"
    [block] = reply["content"]
    assert block["type"] == "text"
    assert reply["usage"] == {
        "input_tokens": INPUT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": len(block["text"].split()),
        "service_tier": "standard",
    }


async def test_anthropic_stream_event_sequence(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """The stream names every event and carries usage in message_start and message_delta."""
    _, _, plain_raw = await post(session, anthropic_url(fp), ANTHROPIC_BODY)
    plain = json.loads(plain_raw)["content"][0]["text"]
    _, headers, raw = await post(session, anthropic_url(fp), {**ANTHROPIC_BODY, "stream": True})
    assert headers["content-type"] == "text/event-stream"
    events = sse_events(raw)
    names = [e["event"] for e in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") == fp.stream_chunks
    data = [json.loads(e["data"]) for e in events]
    assert all(d["type"] == e["event"] for d, e in zip(data, events, strict=True))
    text = "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta")
    assert text == plain
    start_usage = data[0]["message"]["usage"]
    assert start_usage["input_tokens"] == INPUT_TOKENS
    assert start_usage["service_tier"] == "standard" and "cache_creation" in start_usage
    final = next(d for d in data if d["type"] == "message_delta")
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"] == {
        "input_tokens": INPUT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": len(plain.split()),
    }


# -- Gemini -------------------------------------------------------------------------------------


async def test_gemini_plain_reply(fp: FakeProvider, session: aiohttp.ClientSession) -> None:
    """generateContent takes the model from the path and reports usageMetadata."""
    status, headers, raw = await post(session, gemini_url(fp, "gemini-9"), GEMINI_BODY)
    reply = json.loads(raw)
    assert status == 200 and headers["content-type"] == "application/json; charset=UTF-8"
    assert reply["modelVersion"] == "gemini-9"
    candidate = reply["candidates"][0]
    assert candidate["finishReason"] == "STOP" and candidate["content"]["role"] == "model"
    text = candidate["content"]["parts"][0]["text"]
    words = len(text.split())
    assert reply["usageMetadata"] == {
        "promptTokenCount": INPUT_TOKENS,
        "candidatesTokenCount": words,
        "totalTokenCount": INPUT_TOKENS + words,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": INPUT_TOKENS}],
    }


async def test_gemini_sse_stream_has_cumulative_usage(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """streamGenerateContent?alt=sse uses CRLF framing and cumulative usage in every chunk."""
    _, _, plain_raw = await post(session, gemini_url(fp), GEMINI_BODY)
    plain = json.loads(plain_raw)["candidates"][0]["content"]["parts"][0]["text"]
    _, headers, raw = await post(session, gemini_url(fp, stream=True), GEMINI_BODY)
    assert headers["content-type"] == "text/event-stream"
    assert raw.count(b"\r\n\r\n") == fp.stream_chunks and raw.endswith(b"\r\n\r\n")
    chunks = [json.loads(e["data"]) for e in sse_events(raw)]
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == plain
    counts = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
    assert counts == sorted(counts) and counts[-1] == len(plain.split())
    assert all(c["usageMetadata"]["promptTokenCount"] == INPUT_TOKENS for c in chunks)
    assert [("finishReason" in c["candidates"][0]) for c in chunks][-2:] == [False, True]


async def test_gemini_stream_without_sse_is_a_json_array(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """streamGenerateContent without alt=sse answers one JSON array of responses."""
    url = f"{fp.base_url('gemini')}/models/gemini-test:streamGenerateContent"
    _, _, raw = await post(session, url, GEMINI_BODY)
    chunks = json.loads(raw)
    assert isinstance(chunks, list) and len(chunks) == fp.stream_chunks


# -- generated variations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "body", "finish"),
    [
        ("openai", {**OPENAI_BODY, "max_tokens": 3}, "length"),
        ("openai", {**OPENAI_BODY, "max_completion_tokens": 3}, "length"),
        ("anthropic", {**ANTHROPIC_BODY, "max_tokens": 3}, "max_tokens"),
        ("gemini", {**GEMINI_BODY, "generationConfig": {"maxOutputTokens": 3}}, "MAX_TOKENS"),
    ],
)
async def test_output_limit_cuts_the_reply(
    fp: FakeProvider, session: aiohttp.ClientSession, provider: str, body: Any, finish: str
) -> None:
    """An output limit below the reply length cuts the text and reports it in the finish."""
    url = {"openai": openai_url, "anthropic": anthropic_url, "gemini": gemini_url}[provider](fp)
    _, _, raw = await post(session, url, body)
    reply = json.loads(raw)
    if provider == "openai":
        text, reason = reply["choices"][0]["message"]["content"], reply["choices"][0]
        reason, used = reason["finish_reason"], reply["usage"]["completion_tokens"]
    elif provider == "anthropic":
        text, reason = reply["content"][0]["text"], reply["stop_reason"]
        used = reply["usage"]["output_tokens"]
    else:
        candidate = reply["candidates"][0]
        text, reason = candidate["content"]["parts"][0]["text"], candidate["finishReason"]
        used = reply["usageMetadata"]["candidatesTokenCount"]
    assert text == "Hello from FakeProvider," and reason == finish and used == 3


async def test_reply_text_setting_is_used(session: aiohttp.ClientSession) -> None:
    """reply_text replaces the default sentence; short texts still stream in pieces."""
    async with FakeProvider(reply_text="Paris.", stream_chunks=4) as provider:
        _, _, raw = await post(session, openai_url(provider), OPENAI_BODY)
        assert json.loads(raw)["choices"][0]["message"]["content"] == "Paris."
        _, _, raw = await post(session, openai_url(provider), {**OPENAI_BODY, "stream": True})
        chunks = [json.loads(e["data"]) for e in sse_events(raw)[:-1]]
        deltas = [c["choices"][0]["delta"].get("content") for c in chunks]
        pieces = [d for d in deltas if d]
        assert "".join(pieces) == "Paris." and len(pieces) == 4


async def test_scripted_tool_calls_in_each_format(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """A scripted tool call appears in each provider's own shape and finish reason."""
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    fp.script(*(Reply(text="", tool_calls=[call]) for _ in range(3)))
    _, _, raw = await post(session, openai_url(fp), OPENAI_BODY)
    choice = json.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    function = choice["message"]["tool_calls"][0]["function"]
    assert function["name"] == "get_weather" and json.loads(function["arguments"]) == {
        "city": "Paris"
    }
    _, _, raw = await post(session, anthropic_url(fp), ANTHROPIC_BODY)
    reply = json.loads(raw)
    assert reply["stop_reason"] == "tool_use"
    assert reply["content"] == [
        {
            "type": "tool_use",
            "id": "toolu_fake_2_0",
            "name": "get_weather",
            "input": {"city": "Paris"},
        }
    ]
    _, _, raw = await post(session, gemini_url(fp), GEMINI_BODY)
    candidate = json.loads(raw)["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    ]


async def test_streamed_tool_call_arguments_reassemble(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """Streamed tool-call argument fragments join to the call's JSON in OpenAI and Anthropic."""
    call = {"name": "lookup", "arguments": {"query": "capital of France", "limit": 3}}
    fp.script(Reply(text="", tool_calls=[call]), Reply(text="", tool_calls=[call]))
    _, _, raw = await post(session, openai_url(fp), {**OPENAI_BODY, "stream": True})
    chunks = [json.loads(e["data"]) for e in sse_events(raw)[:-1]]
    parts = [c["choices"][0]["delta"].get("tool_calls", [{}])[0] for c in chunks]
    arguments = "".join(p.get("function", {}).get("arguments", "") for p in parts)
    assert json.loads(arguments) == call["arguments"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    _, _, raw = await post(session, anthropic_url(fp), {**ANTHROPIC_BODY, "stream": True})
    data = [json.loads(e["data"]) for e in sse_events(raw)]
    fragments = [d["delta"]["partial_json"] for d in data if d["type"] == "content_block_delta"]
    assert fragments[0] == "" and len(fragments) > 2
    assert json.loads("".join(fragments)) == call["arguments"]


async def test_usage_override(fp: FakeProvider, session: aiohttp.ClientSession) -> None:
    """A scripted usage dict replaces the computed native numbers."""
    fp.script(Reply(usage={"prompt_tokens": 100, "total_tokens": 150}))
    _, _, raw = await post(session, openai_url(fp), OPENAI_BODY)
    usage = json.loads(raw)["usage"]
    assert usage["prompt_tokens"] == 100 and usage["total_tokens"] == 150


# -- scripted replies ---------------------------------------------------------------------------


async def test_scripted_status_headers_body_and_delay(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """A scripted reply sends its status, headers and JSON body after its delay."""
    fp.script(Reply(status=503, headers={"retry-after": "2"}, body={"oops": True}, delay=0.1))
    started = time.monotonic()
    status, headers, raw = await post(session, openai_url(fp), OPENAI_BODY)
    assert time.monotonic() - started >= 0.1
    assert status == 503 and headers["retry-after"] == "2" and json.loads(raw) == {"oops": True}
    status, _, _ = await post(session, openai_url(fp), OPENAI_BODY)
    assert status == 200 and fp.pending == 0


async def test_scripted_raw_body_is_sent_verbatim(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """A str body goes out byte for byte with the scripted content type."""
    fp.script(Reply(body="not json {", headers={"content-type": "text/plain"}))
    _, headers, raw = await post(session, openai_url(fp), OPENAI_BODY)
    assert raw == b"not json {" and headers["content-type"] == "text/plain"


@pytest.mark.parametrize(
    ("provider", "status", "expected"),
    [
        ("openai", 400, {"type": "invalid_request_error", "param": None, "code": None}),
        ("openai", 500, {"type": "server_error"}),
        ("anthropic", 529, {"type": "overloaded_error"}),
        ("anthropic", 500, {"type": "api_error"}),
        ("anthropic", 401, {"type": "authentication_error"}),
        ("gemini", 404, {"code": 404, "status": "NOT_FOUND"}),
        ("gemini", 503, {"code": 503, "status": "UNAVAILABLE"}),
    ],
)
async def test_scripted_error_bodies_follow_the_provider_shape(
    fp: FakeProvider,
    session: aiohttp.ClientSession,
    provider: str,
    status: int,
    expected: dict[str, Any],
) -> None:
    """A scripted error status without a body gets the provider's error shape."""
    fp.script(Reply(status=status))
    url = {"openai": openai_url, "anthropic": anthropic_url, "gemini": gemini_url}[provider](fp)
    body = {"openai": OPENAI_BODY, "anthropic": ANTHROPIC_BODY, "gemini": GEMINI_BODY}[provider]
    got, _, raw = await post(session, url, body)
    reply = json.loads(raw)
    assert got == status and reply["error"]["message"]
    assert expected.items() <= reply["error"].items()
    if provider == "anthropic":
        assert reply["type"] == "error" and reply["request_id"] == "req_fake"


async def test_script_path_filter(fp: FakeProvider, session: aiohttp.ClientSession) -> None:
    """A path-filtered script waits for a matching request; others get the default reply."""
    fp.script(Reply(status=418, body={}), path="/messages")
    status, _, _ = await post(session, openai_url(fp), OPENAI_BODY)
    assert status == 200 and fp.pending == 1
    status, _, _ = await post(session, anthropic_url(fp), ANTHROPIC_BODY)
    assert status == 418 and fp.pending == 0


async def test_drop_closes_without_a_response(
    fp: FakeProvider, session: aiohttp.ClientSession
) -> None:
    """A dropped reply closes the connection, which the client sees as a disconnect."""
    fp.script(Reply(drop=True))
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(session, openai_url(fp), OPENAI_BODY)
    status, _, _ = await post(session, openai_url(fp), OPENAI_BODY)
    assert status == 200


async def test_truncate_cuts_the_body(fp: FakeProvider, session: aiohttp.ClientSession) -> None:
    """A truncated reply announces the full length, sends a prefix and hangs up."""
    fp.script(Reply(truncate=12))
    async with session.post(openai_url(fp), json=OPENAI_BODY) as resp:
        assert resp.status == 200 and resp.content_length is not None
        assert resp.content_length > 12
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_stall_after_goes_silent(fp: FakeProvider, session: aiohttp.ClientSession) -> None:
    """A stalled stream sends its first chunks, then nothing until the client gives up."""
    fp.script(Reply(chunks=["data: 1\n\n", "data: 2\n\n", "data: 3\n\n"], stall_after=2))
    received = b""
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    async with session.post(openai_url(fp), json=OPENAI_BODY, timeout=timeout) as resp:
        with pytest.raises(asyncio.TimeoutError):
            async for piece in resp.content.iter_any():
                received += piece
    assert received == b"data: 1\n\ndata: 2\n\n"


async def test_stop_releases_a_stalled_stream(session: aiohttp.ClientSession) -> None:
    """Stopping the provider ends a stalled stream instead of hanging."""
    provider = FakeProvider()
    await provider.start()
    provider.script(Reply(chunks=["data: 1\n\n"], stall_after=1))
    async with session.post(openai_url(provider), json=OPENAI_BODY) as resp:
        assert await resp.content.readline() == b"data: 1\n"
        started = time.monotonic()
        await provider.stop()
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("path", wire_files())
async def test_from_wire_replays_byte_for_byte(
    fp: FakeProvider, session: aiohttp.ClientSession, path: Path
) -> None:
    """A recorded exchange replays with its status, content type and exact body bytes."""
    record = json.loads(path.read_text(encoding="utf-8"))
    reply = Reply.from_wire(record)
    expected = record["response"]
    if expected["headers"]["content-type"].startswith("text/event-stream"):
        body = expected["body_text"]
        events = max(body.count("\r\n\r\n"), body.count("\n\n"))
        assert reply.chunks is not None and len(reply.chunks) == events
        assert "".join(map(str, reply.chunks)) == body
    fp.script(reply)
    request = record["request"]
    async with session.post(fp.url + request["path"], json=request["body"]) as resp:
        assert resp.status == expected["status"]
        assert resp.headers["content-type"] == expected["headers"]["content-type"]
        assert await resp.read() == expected["body_text"].encode("utf-8")


# -- provider-side limits -----------------------------------------------------------------------


async def test_request_limit_answers_429(session: aiohttp.ClientSession) -> None:
    """With 5 requests per second the sixth immediate request gets a 429 and retry-after."""
    async with FakeProvider(limit_requests=5, window=1.0) as provider:
        results = [await post(session, openai_url(provider), OPENAI_BODY) for _ in range(6)]
        assert provider.count_429 == 1
    statuses = [status for status, _, _ in results]
    assert statuses == [200] * 5 + [429]
    first_headers = results[0][1]
    assert first_headers["x-ratelimit-limit-requests"] == "5"
    assert first_headers["x-ratelimit-remaining-requests"] == "4"
    _, headers, raw = results[-1]
    assert headers["retry-after"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("ms")
    error = json.loads(raw)["error"]
    assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"


async def test_token_limit_counts_input_and_output(session: aiohttp.ClientSession) -> None:
    """The token bucket charges prompt plus produced tokens and refuses what does not fit."""
    charge = INPUT_TOKENS + 15  # the default reply has 15 words
    async with FakeProvider(limit_tokens=charge * 2 + 1, window=60.0) as provider:
        results = [await post(session, openai_url(provider), OPENAI_BODY) for _ in range(3)]
    assert [status for status, _, _ in results] == [200, 200, 429]
    assert results[1][1]["x-ratelimit-remaining-tokens"] == "1"
    assert json.loads(results[2][2])["error"]["type"] == "tokens"
    assert int(results[2][1]["retry-after"]) == math.ceil((charge - 1) / ((charge * 2 + 1) / 60))


async def test_limits_refill_on_the_injected_clock(session: aiohttp.ClientSession) -> None:
    """A bucket refills L/window per second of the provider's clock, and reset refills it."""
    clock = FakeClock()
    async with FakeProvider(limit_requests=2, window=10.0, clock=clock) as provider:
        statuses = [(await post(session, openai_url(provider), OPENAI_BODY))[0] for _ in range(3)]
        await clock.advance(4.9)
        statuses.append((await post(session, openai_url(provider), OPENAI_BODY))[0])
        await clock.advance(0.1)
        statuses.append((await post(session, openai_url(provider), OPENAI_BODY))[0])
        provider.reset()
        statuses.append((await post(session, openai_url(provider), OPENAI_BODY))[0])
    assert statuses == [200, 200, 429, 429, 200, 200]
    assert provider.arrivals == [5.0]  # reset forgot the earlier arrivals


async def test_anthropic_and_gemini_429_shapes(session: aiohttp.ClientSession) -> None:
    """Limit refusals use Anthropic's headers and error type and Gemini's RetryInfo."""
    async with FakeProvider(limit_requests=1, window=30.0) as provider:
        await post(session, anthropic_url(provider), ANTHROPIC_BODY)
        status, headers, raw = await post(session, anthropic_url(provider), ANTHROPIC_BODY)
        assert status == 429 and headers["retry-after"] == "30"
        assert headers["anthropic-ratelimit-requests-limit"] == "1"
        assert headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")
        assert json.loads(raw)["error"]["type"] == "rate_limit_error"
        status, _, raw = await post(session, gemini_url(provider), GEMINI_BODY)
        error = json.loads(raw)["error"]
        assert status == 429 and error["status"] == "RESOURCE_EXHAUSTED"
        assert error["details"][0]["retryDelay"] == "30s"


async def test_scripted_replies_bypass_limits(session: aiohttp.ClientSession) -> None:
    """Scripted replies are served and recorded without touching the buckets."""
    async with FakeProvider(limit_requests=1, window=60.0) as provider:
        provider.script(Reply(), Reply())
        statuses = [(await post(session, openai_url(provider), OPENAI_BODY))[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert len(provider.requests) == 4 and provider.count_429 == 1


# -- records ------------------------------------------------------------------------------------


async def test_requests_are_recorded(fp: FakeProvider, session: aiohttp.ClientSession) -> None:
    """Each request is kept with method, path and query, lower-cased headers and parsed body."""
    headers = {"X-Api-Key": "k", "Anthropic-Version": "2023-06-01"}
    async with session.post(anthropic_url(fp), json=ANTHROPIC_BODY, headers=headers):
        pass
    async with session.post(fp.url + "/v1/raw", data=b"plain text"):
        pass
    first, second = fp.requests
    assert first.method == "POST" and first.path == "/v1/messages?beta=true"
    assert first.headers["anthropic-version"] == "2023-06-01" and first.headers["x-api-key"] == "k"
    assert first.body == ANTHROPIC_BODY
    assert second.body == "plain text"
    assert fp.arrivals == [first.time, second.time] and first.time <= second.time


async def test_unknown_path_is_404(fp: FakeProvider, session: aiohttp.ClientSession) -> None:
    """A path that names no known API gets an OpenAI-style 404."""
    status, _, raw = await post(session, fp.url + "/v1/audio/speech", {})
    assert status == 404 and json.loads(raw)["error"]["code"] == "model_not_found"


async def test_wait_for_requests_wakes_when_the_request_arrives(
    session: aiohttp.ClientSession,
) -> None:
    """wait_for_requests returns once the request reached the provider, while its answer
    is still held back by the latency, and refuses to wait on a stopped provider."""
    async with FakeProvider(latency=30.0) as provider:
        url = provider.base_url("openai") + "/chat/completions"
        call = asyncio.create_task(session.post(url, json=OPENAI_BODY))
        await asyncio.wait_for(provider.wait_for_requests(1), 10)
        assert len(provider.requests) == 1 and not call.done()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    with pytest.raises(RuntimeError, match="not running"):
        await provider.wait_for_requests(1)
