"""The per-provider stream assemblers, fed events directly and through ``Endpoint.stream()``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.services.providers.anthropic_messages import normalize_message
from lionpride.services.providers.anthropic_messages._stream import MessageStreamAssembler
from lionpride.services.providers.gemini import messages_to_contents, normalize_generate_content
from lionpride.services.providers.gemini._stream import GeminiStreamAssembler
from lionpride.services.providers.match import match_endpoint
from lionpride.services.providers.oai_chat import normalize_chat_completion
from lionpride.services.providers.oai_chat._stream import ChatStreamAssembler
from lionpride.services.providers.oai_responses._stream import ResponsesStreamAssembler
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.streaming.sse import SSEEvent
from lionpride.services.types.endpoint import Endpoint, StreamAssembler
from lionpride.services.types.response import NormalizedResponse, ToolCall, Usage
from lionpride.testing import FakeProvider, Reply

PROMPT = [{"role": "user", "content": "Tell me about the sea."}]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.0-flash"}


def ev(obj: Any, event: str = "message") -> SSEEvent:
    """An SSE event carrying ``obj`` as JSON (a str is sent verbatim)."""
    return SSEEvent(event, obj if isinstance(obj, str) else json.dumps(obj))


def feed_all(assembler: StreamAssembler, events: list[SSEEvent]) -> list[StreamChunk]:
    """Feed every event and return all chunks produced."""
    return [chunk for event in events for chunk in assembler.feed(event)]


def same_response(streamed: NormalizedResponse, plain: NormalizedResponse) -> None:
    """Assert two responses agree on everything but the raw body."""
    assert streamed.data == plain.data
    assert streamed.tool_calls == plain.tool_calls
    assert streamed.usage == plain.usage
    assert streamed.finish_reason == plain.finish_reason
    assert streamed.metadata == plain.metadata


# -- OpenAI-compatible ----------------------------------------------------------------------


def oai(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> SSEEvent:
    """One chat-completion chunk with a single choice (or ``choices=[]`` via ``top``)."""
    body: dict[str, Any] = {"id": "chatcmpl-1", "model": "gpt-x", "object": "chat.completion.chunk"}
    if delta is not None:
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    body.update(top)
    return ev(body)


def test_oai_parallel_tool_call_fragments_join_by_index() -> None:
    """Interleaved fragments of two calls are joined per index and parsed at the end."""
    asm = ChatStreamAssembler("openai")

    def call(index: int, **fn: str) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, "function": fn}]}

    events = [
        oai({"role": "assistant", "content": None}),
        oai({"tool_calls": [{"index": 0, "id": "c0", "function": {"name": "a", "arguments": ""}}]}),
        oai({"tool_calls": [{"index": 1, "id": "c1", "function": {"name": "b", "arguments": ""}}]}),
        oai(call(0, arguments='{"ci')),
        oai(call(1, arguments="{}")),
        oai(call(0, arguments='ty": "Par')),
        oai(call(0, arguments='is"}')),
        oai({}, "tool_calls"),
        ev("[DONE]"),
    ]
    chunks = feed_all(asm, events)
    assert asm.done
    deltas = [c.tool_call_delta for c in chunks]
    assert deltas[2] == {"index": 0, "id": "c0", "name": "a", "arguments": '{"ci'}
    assert "".join(d["arguments"] for d in deltas if d and d["index"] == 0) == '{"city": "Paris"}'
    response = asm.finish()
    assert response.tool_calls == [
        ToolCall(id="c0", name="a", arguments={"city": "Paris"}),
        ToolCall(id="c1", name="b", arguments={}),
    ]
    assert response.finish_reason == "tool_calls"
    assert response.data == ""


def test_oai_usage_chunk_with_empty_choices_and_a_chunk_after_it() -> None:
    """Usage comes from the ``choices: []`` chunk; a later moderation chunk changes nothing."""
    asm = ChatStreamAssembler("openai")
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": 3,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 1},
    }
    events = [
        oai({"role": "assistant", "content": ""}, usage=None),
        oai({"content": "Hi"}, usage=None),
        oai({"content": " there"}, usage=None),
        oai({}, "stop", usage=None),
        oai(None, choices=[], usage=usage),
        oai(None, choices=[], moderation={"flagged": False}),
        ev("[DONE]"),
    ]
    chunks = feed_all(asm, events)
    assert [c.content for c in chunks] == ["Hi", " there"]
    response = asm.finish()
    assert response.usage == Usage(
        input_tokens=9, output_tokens=3, total_tokens=12, cached_tokens=4, reasoning_tokens=1
    )
    assert response.metadata["usage"] == usage
    assert (response.data, response.finish_reason) == ("Hi there", "stop")


def test_oai_groq_usage_under_x_groq_and_reasoning_deltas() -> None:
    """``x_groq.usage`` counts when top-level usage is absent; reasoning deltas are kept."""
    asm = ChatStreamAssembler("groq")
    events = [
        oai({"reasoning": "Think", "channel": "analysis"}),
        oai({"reasoning_content": "ing."}),
        oai({"content": "Done."}),
        oai({}, "stop", x_groq={"id": "r", "usage": {"prompt_tokens": 2, "completion_tokens": 5}}),
        ev("[DONE]"),
    ]
    chunks = feed_all(asm, events)
    assert [(c.content, c.reasoning) for c in chunks] == [
        ("", "Think"),
        ("", "ing."),
        ("Done.", ""),
    ]
    response = asm.finish()
    assert response.metadata["reasoning"] == "Thinking."
    assert response.usage == Usage(input_tokens=2, output_tokens=5, total_tokens=7)


def test_oai_assembled_response_equals_plain_normalizer() -> None:
    """The assembled response equals what the plain normalizer makes of the equivalent body."""
    asm = ChatStreamAssembler("openai")
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    head = {"system_fingerprint": "fp_1", "service_tier": "default"}
    feed_all(
        asm,
        [
            oai({"role": "assistant", "content": "", "refusal": None}, **head),
            oai({"content": "Hello"}, **head),
            oai({}, "stop", **head),
            oai(None, choices=[], usage=usage, **head),
            ev("[DONE]"),
        ],
    )
    plain = {
        "id": "chatcmpl-1",
        "model": "gpt-x",
        "choices": [{"message": {"content": "Hello"}, "finish_reason": "stop"}],
        "usage": usage,
        **head,
    }
    same_response(asm.finish(), normalize_chat_completion(plain, "openai"))


@pytest.mark.parametrize(
    ("event", "obj", "expected", "message"),
    [
        (
            "error",
            {"error": {"message": "bad tool", "code": "tool_use_failed", "status_code": 400}},
            errors.BadRequestError,
            "bad tool",
        ),
        (
            "message",
            {"id": "g", "error": {"code": 400, "message": "Token limit reached"}, "choices": []},
            errors.BadRequestError,
            "Token limit reached",
        ),
        (
            "message",
            {"error": {"code": 429, "message": "slow down"}, "choices": []},
            errors.RateLimitError,
            "slow down",
        ),
        ("error", {"message": "upstream died"}, errors.ServerError, "upstream died"),
    ],
)
def test_oai_error_inside_stream_raises_typed_error(
    event: str, obj: dict[str, Any], expected: type[Exception], message: str
) -> None:
    """Groq's error event and OpenRouter's error field raise the mapped error from feed."""
    asm = ChatStreamAssembler("groq")
    asm.feed(oai({"content": "partial"}))
    with pytest.raises(expected, match=message):
        asm.feed(ev(obj, event))


def test_oai_null_error_field_is_no_error() -> None:
    """A chunk with ``"error": null`` is an ordinary chunk."""
    asm = ChatStreamAssembler("openrouter")
    chunks = asm.feed(oai({"content": "ok"}, error=None))
    assert [c.content for c in chunks] == ["ok"]


def test_oai_stream_cut_before_any_end_is_a_connection_error() -> None:
    """A body that ends with neither [DONE] nor a finish reason does not pass as whole."""
    asm = ChatStreamAssembler("openai")
    asm.feed(oai({"content": "Half a sent"}))
    with pytest.raises(errors.ConnectionError, match="DONE"):
        asm.finish()


def test_oai_non_json_event_is_invalid_response() -> None:
    """An event whose data is not JSON raises InvalidResponseError."""
    with pytest.raises(errors.InvalidResponseError, match="not JSON"):
        ChatStreamAssembler("openai").feed(ev("{oops"))


@pytest.mark.parametrize(
    ("make", "provider"),
    [
        (lambda: ChatStreamAssembler("groq"), "groq"),
        (MessageStreamAssembler, "anthropic"),
        (GeminiStreamAssembler, "gemini"),
        (lambda: ResponsesStreamAssembler("openai"), "openai"),
    ],
    ids=["chat", "messages", "gemini", "responses"],
)
@pytest.mark.parametrize("data", ["{oops", "[1, 2]", '"text"'])
def test_every_assembler_refuses_event_data_that_is_not_a_json_object(
    make: Any, provider: str, data: str
) -> None:
    """Each provider's assembler raises InvalidResponseError, naming its provider, for event
    data that is not JSON or is JSON but not an object."""
    with pytest.raises(errors.InvalidResponseError, match=rf"^{provider}: stream event is not"):
        make().feed(SSEEvent("message", data))


# -- Anthropic ------------------------------------------------------------------------------


def anth(kind: str, **data: Any) -> SSEEvent:
    """One Messages API stream event, named as the real service names it."""
    return ev({"type": kind, **data}, kind)


def message_start(usage: dict[str, Any] | None = None) -> SSEEvent:
    """The ``message_start`` event with a placeholder output count."""
    usage = usage or {"input_tokens": 10, "output_tokens": 1, "service_tier": "standard"}
    message = {"id": "msg_1", "model": "claude-x", "content": [], "stop_reason": None}
    return anth("message_start", message={**message, "usage": usage})


def test_anthropic_input_json_split_anywhere_is_parsed_at_block_stop() -> None:
    """Tool input fragments split at every character are joined and parsed at the block end."""
    arguments = {"from_currency": "USD", "to": ["EUR", 1.5], "nested": {"q": 'a "b"'}}
    text = json.dumps(arguments)
    asm = MessageStreamAssembler()
    events = [
        message_start(),
        anth("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        anth("ping"),
        anth("content_block_delta", index=0, delta={"type": "text_delta", "text": "Let me"}),
        anth("content_block_delta", index=0, delta={"type": "text_delta", "text": " check."}),
        anth("content_block_stop", index=0),
        anth(
            "content_block_start",
            index=1,
            content_block={"type": "tool_use", "id": "tu_1", "name": "rate", "input": {}},
        ),
        anth(
            "content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": ""}
        ),
        *(
            anth(
                "content_block_delta",
                index=1,
                delta={"type": "input_json_delta", "partial_json": c},
            )
            for c in text
        ),
        anth("content_block_stop", index=1),
        anth("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 30}),
        anth("message_stop"),
    ]
    chunks = feed_all(asm, events)
    assert asm.done
    assert "".join(c.content for c in chunks) == "Let me check."
    fragments = [c.tool_call_delta for c in chunks if c.tool_call_delta]
    assert fragments[0] == {"index": 0, "id": "tu_1", "name": "rate", "arguments": ""}
    assert "".join(f["arguments"] for f in fragments) == text
    response = asm.finish()
    assert response.tool_calls == [ToolCall(id="tu_1", name="rate", arguments=arguments)]
    assert response.finish_reason == "tool_calls"
    # message_delta's output count wins; input and service tier come from message_start.
    assert response.usage == Usage(input_tokens=10, output_tokens=30, total_tokens=40)
    assert response.metadata["usage"]["service_tier"] == "standard"


def test_anthropic_thinking_signature_redacted_and_server_tools() -> None:
    """Thinking goes to reasoning, signatures to chunk metadata, server tools to metadata."""
    asm = MessageStreamAssembler()
    server = {"type": "server_tool_use", "id": "srv_1", "name": "bash", "input": {}}
    events = [
        message_start(),
        anth("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
        anth("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Hm"}),
        anth(
            "content_block_delta", index=0, delta={"type": "signature_delta", "signature": "c2ln"}
        ),
        anth("content_block_stop", index=0),
        anth(
            "content_block_start", index=1, content_block={"type": "redacted_thinking", "data": "x"}
        ),
        anth("content_block_stop", index=1),
        anth("content_block_start", index=2, content_block=server),
        anth(
            "content_block_delta",
            index=2,
            delta={"type": "input_json_delta", "partial_json": '{"c'},
        ),
        anth(
            "content_block_delta",
            index=2,
            delta={"type": "input_json_delta", "partial_json": 'md": "ls"}'},
        ),
        anth("content_block_stop", index=2),
        anth("content_block_start", index=3, content_block={"type": "text", "text": ""}),
        anth("content_block_delta", index=3, delta={"type": "text_delta", "text": "A"}),
        anth("content_block_stop", index=3),
        anth("content_block_start", index=4, content_block={"type": "text", "text": ""}),
        anth("content_block_delta", index=4, delta={"type": "text_delta", "text": "B"}),
        anth("content_block_stop", index=4),
        anth("ping"),
        anth("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 7}),
        anth("message_stop"),
    ]
    chunks = feed_all(asm, events)
    assert [c.reasoning for c in chunks if c.reasoning] == ["Hm"]
    assert [c.metadata["signature"] for c in chunks if "signature" in c.metadata] == ["c2ln"]
    assert not any(c.tool_call_delta for c in chunks)
    response = asm.finish()
    assert response.data == "AB"
    assert response.tool_calls == []
    assert response.metadata["reasoning"] == "Hm"
    assert response.metadata["server_tool_calls"] == [{"name": "bash", "arguments": {"cmd": "ls"}}]
    blocks = response.raw_response["content"]
    assert blocks[0] == {"type": "thinking", "thinking": "Hm", "signature": "c2ln"}
    assert blocks[1] == {"type": "redacted_thinking", "data": "x"}
    same_response(response, normalize_message(response.raw_response))


def test_anthropic_usage_falls_back_to_message_start() -> None:
    """Without usage in message_delta, message_start's usage is used."""
    asm = MessageStreamAssembler()
    feed_all(
        asm,
        [
            message_start({"input_tokens": 3, "output_tokens": 4}),
            anth("message_delta", delta={"stop_reason": "end_turn"}),
            anth("message_stop"),
        ],
    )
    assert asm.finish().usage == Usage(input_tokens=3, output_tokens=4, total_tokens=7)


@pytest.mark.parametrize(
    ("kind", "expected", "status"),
    [
        ("overloaded_error", errors.OverloadedError, 529),
        ("rate_limit_error", errors.RateLimitError, 429),
        ("api_error", errors.ServerError, 500),
        ("invalid_request_error", errors.BadRequestError, 400),
    ],
)
def test_anthropic_error_event_raises_typed_error(
    kind: str, expected: type[errors.APIStatusError], status: int
) -> None:
    """An ``event: error`` raises the error its type names, with the provider's message."""
    asm = MessageStreamAssembler()
    asm.feed(message_start())
    with pytest.raises(expected, match=r"^Overloaded now$") as info:
        asm.feed(anth("error", error={"type": kind, "message": "Overloaded now"}))
    assert type(info.value) is expected and info.value.status_code == status


def test_anthropic_stream_cut_before_message_stop_is_a_connection_error() -> None:
    """A body that ends inside a block does not pass for a whole message."""
    asm = MessageStreamAssembler()
    feed_all(
        asm,
        [
            message_start(),
            anth("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            anth("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hal"}),
        ],
    )
    assert not asm.done
    with pytest.raises(errors.ConnectionError, match="message_stop"):
        asm.finish()


# -- Gemini ---------------------------------------------------------------------------------


def gem(parts: list[dict[str, Any]], usage: dict[str, Any], finish: str | None = None) -> SSEEvent:
    """One streamed GenerateContentResponse chunk."""
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    body = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "g-1"}
    return ev({**body, "responseId": "r1"})


def test_gemini_cumulative_usage_thoughts_and_whole_function_calls() -> None:
    """The last usage wins, thoughts are reasoning, and function calls arrive whole."""
    asm = GeminiStreamAssembler()
    call = {"functionCall": {"name": "get_capital", "args": {"country": "France"}}}
    events = [
        gem(
            [{"text": "Pondering", "thought": True}],
            {"promptTokenCount": 15, "totalTokenCount": 15},
        ),
        gem([{"text": "13\n1"}], {"promptTokenCount": 15, "candidatesTokenCount": 2}),
        gem([{"text": "4\n15"}, call], {"promptTokenCount": 13, "candidatesTokenCount": 4}),
        gem(
            [{"text": ""}],
            {"promptTokenCount": 13, "candidatesTokenCount": 8, "totalTokenCount": 21},
            "STOP",
        ),
    ]
    chunks = feed_all(asm, events)
    assert not asm.done
    assert [c.content for c in chunks if c.content] == ["13\n1", "4\n15"]
    assert [c.reasoning for c in chunks if c.reasoning] == ["Pondering"]
    deltas = [c.tool_call_delta for c in chunks if c.tool_call_delta]
    made_up = deltas[0]["id"]  # the API gave none: the delta and the response share one
    assert made_up.startswith("call_")
    assert deltas == [
        {"index": 0, "id": made_up, "name": "get_capital", "arguments": '{"country": "France"}'}
    ]
    response = asm.finish()
    assert response.data == "13\n14\n15"
    assert response.metadata["reasoning"] == "Pondering"
    assert response.usage == Usage(input_tokens=13, output_tokens=8, total_tokens=21)
    assert response.tool_calls == [
        ToolCall(id=made_up, name="get_capital", arguments={"country": "France"})
    ]
    assert response.metadata["provider_state"]["calls"] == {made_up: {"issued": False}}
    assert response.metadata["native_finish_reason"] == "STOP"
    assert response.finish_reason == "tool_calls"
    same_response(response, normalize_generate_content(response.raw_response, frozenset({made_up})))


def test_gemini_stream_keeps_the_text_thought_signature_for_the_next_turn() -> None:
    """A signature on the answer's last (empty) text part survives assembly and goes back
    on the text of the replayed turn."""
    asm = GeminiStreamAssembler()
    feed_all(
        asm,
        [
            gem([{"text": "Paris."}], {"promptTokenCount": 3}),
            gem([{"text": "", "thoughtSignature": "sig-t"}], {"promptTokenCount": 3}, "STOP"),
        ],
    )
    message = asm.finish().to_message()
    assert message["content"] == "Paris."
    assert message["provider_state"] == {"provider": "gemini", "text_signature": "sig-t"}
    contents, _ = messages_to_contents([{"role": "user", "content": "Capital?"}, message])
    assert contents[1] == {
        "role": "model",
        "parts": [{"text": "Paris.", "thoughtSignature": "sig-t"}],
    }


def test_gemini_finish_reason_from_last_chunk_that_has_one() -> None:
    """A trailing chunk without a finish reason keeps the earlier one (MAX_TOKENS, no parts)."""
    asm = GeminiStreamAssembler()
    feed_all(
        asm,
        [
            gem([{"text": "Once"}], {"promptTokenCount": 1}),
            ev({"candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}]}),
            ev(
                {
                    "candidates": [{"content": {"role": "model"}}],
                    "usageMetadata": {"totalTokenCount": 9},
                }
            ),
        ],
    )
    response = asm.finish()
    assert (response.data, response.finish_reason) == ("Once", "length")
    assert response.usage is not None and response.usage.total_tokens == 9


@pytest.mark.parametrize(
    ("code", "expected"), [(429, errors.RateLimitError), (503, errors.ServerError)]
)
def test_gemini_error_chunk_raises_typed_error(
    code: int, expected: type[errors.APIStatusError]
) -> None:
    """A chunk holding an error object raises the error its code maps to."""
    asm = GeminiStreamAssembler()
    asm.feed(gem([{"text": "a"}], {}))
    with pytest.raises(expected, match=r"^quota$") as info:
        asm.feed(ev({"error": {"code": code, "message": "quota", "status": "X"}}))
    assert info.value.status_code == code


def test_gemini_empty_stream_is_a_connection_error() -> None:
    """A body with no chunk at all does not pass for an empty answer."""
    with pytest.raises(errors.ConnectionError):
        GeminiStreamAssembler().finish()


# -- through Endpoint.stream() --------------------------------------------------------------


def endpoint(provider: str, fp: FakeProvider, **kwargs: Any) -> Endpoint:
    """An endpoint for ``provider`` on the FakeProvider, retries off."""
    return match_endpoint(
        provider,
        base_url=fp.base_url(provider),
        api_key=SecretStr("k"),
        retry_config=None,
        **kwargs,
    )


def payload(ep: Endpoint, provider: str) -> dict[str, Any]:
    """A validated request for ``provider``."""
    return ep.create_payload({"model": MODELS[provider], "messages": PROMPT})


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_default_stream_arrives_in_pieces_and_matches_plain_reply(provider: str) -> None:
    """FakeProvider's stream comes as many chunks whose text and response equal the plain call."""
    async with FakeProvider(stream_chunks=12) as fp, endpoint(provider, fp) as ep:
        request = payload(ep, provider)
        chunks = [chunk async for chunk in ep.stream(request)]
        plain = await ep.call(request)
    *deltas, final = chunks
    assert len(deltas) >= 12
    assert all(c.content for c in deltas)
    assert "".join(c.content for c in deltas) == plain.data
    assert final.response is not None
    assert final.response.data == plain.data
    assert final.response.usage == plain.usage and plain.usage is not None
    assert final.response.finish_reason == plain.finish_reason == "stop"
    assert final.response.metadata.keys() == plain.metadata.keys()


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_streamed_tool_calls_match_plain_reply(provider: str) -> None:
    """Generated tool calls assemble to the same calls, usage and finish as the plain reply."""
    calls = [
        {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}},
        {"name": "get_time", "arguments": {}},
    ]
    async with FakeProvider() as fp, endpoint(provider, fp) as ep:
        fp.script(Reply(text="", tool_calls=calls), Reply(text="", tool_calls=calls))
        request = payload(ep, provider)
        chunks = [chunk async for chunk in ep.stream(request)]
        plain = await ep.call(request)
    streamed = chunks[-1].response
    assert streamed is not None
    named = [{"name": c.name, "arguments": c.arguments} for c in streamed.tool_calls]
    assert named == calls == [{"name": c.name, "arguments": c.arguments} for c in plain.tool_calls]
    assert streamed.usage == plain.usage
    assert streamed.finish_reason == plain.finish_reason == "tool_calls"


async def test_breaking_out_early_releases_the_connection() -> None:
    """Leaving the loop early closes the response, so a one-connection pool serves the next call."""
    async with (
        FakeProvider(stream_chunks=8) as fp,
        endpoint("openai", fp, client_kwargs={"limit": 1}) as ep,
    ):
        request = payload(ep, "openai")
        # The first stream stalls after two events: only closing it frees the one connection.
        fp.script(Reply(stall_after=2))
        async for chunk in ep.stream(request):
            assert not chunk.is_final
            break
        async with asyncio.timeout(5):
            chunks = [chunk async for chunk in ep.stream(request)]
        assert chunks[-1].is_final
        assert len(fp.requests) == 2


async def test_idle_stream_raises_timeout_error_quickly(fake_provider: FakeProvider) -> None:
    """A stream that goes silent raises TimeoutError after the idle timeout, not the total one."""
    fake_provider.script(Reply(stall_after=2))
    loop = asyncio.get_running_loop()
    async with endpoint("anthropic", fake_provider) as ep:
        request = payload(ep, "anthropic")
        start = loop.time()
        seen: list[StreamChunk] = []
        with pytest.raises(errors.TimeoutError, match="idle"):
            async for chunk in ep.stream(request, idle_timeout=0.3):
                seen.append(chunk)
        elapsed = loop.time() - start
    assert 0.25 <= elapsed < 1.0
    assert not any(c.is_final for c in seen)


_CONTENT_CHUNK = (
    "data: "
    + json.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
        }
    )
    + "\n\n"
)


async def test_keep_alive_comments_do_not_hold_a_dead_stream_open(
    fake_provider: FakeProvider,
) -> None:
    """A proxy that sends only keep-alive comments after the last content is cut at the
    idle timeout, not held open for as long as it keeps talking."""
    keepalives: list[str | bytes] = [": OPENROUTER PROCESSING\n\n"] * 200  # 10 s of them
    fake_provider.script(Reply(chunks=[_CONTENT_CHUNK, *keepalives], chunk_delay=0.05))
    loop = asyncio.get_running_loop()
    async with endpoint("openai", fake_provider) as ep:
        request = payload(ep, "openai")
        seen: list[StreamChunk] = []
        start = loop.time()
        with pytest.raises(errors.TimeoutError, match="idle"):
            async for chunk in ep.stream(request, idle_timeout=0.3):
                seen.append(chunk)
        elapsed = loop.time() - start
    assert [c.content for c in seen] == ["Hi"]
    assert 0.25 <= elapsed < 2.0


async def test_the_callers_own_time_between_chunks_is_not_silence(
    fake_provider: FakeProvider,
) -> None:
    """A consumer slower than the idle timeout still reads the whole stream."""
    async with endpoint("openai", fake_provider) as ep:
        request = payload(ep, "openai")
        chunks = []
        async for chunk in ep.stream(request, idle_timeout=0.1):
            chunks.append(chunk)
            await asyncio.sleep(0.15)
    assert chunks[-1].is_final
