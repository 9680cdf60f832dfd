"""Provider edge cases found in review: blocked prompts, cut streams, trailing events, schemas."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.services.providers.anthropic_messages import (
    AnthropicMessagesEndpoint,
    CreateMessageRequest,
    normalize_message,
)
from lionpride.services.providers.anthropic_messages._stream import MessageStreamAssembler
from lionpride.services.providers.gemini import messages_to_contents, normalize_generate_content
from lionpride.services.providers.gemini._request import generate_content_request
from lionpride.services.providers.gemini._stream import GeminiStreamAssembler
from lionpride.services.providers.oai_chat import normalize_chat_completion
from lionpride.services.providers.oai_chat._stream import ChatStreamAssembler
from lionpride.services.streaming.sse import SSEEvent

BLOCKED = {
    "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
    "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
    "modelVersion": "gemini-1.5-flash-002",
}


def ev(obj: Any, event: str = "message") -> SSEEvent:
    """An SSE event carrying ``obj`` as JSON (a str is sent verbatim)."""
    return SSEEvent(event, obj if isinstance(obj, str) else json.dumps(obj))


def test_gemini_blocked_prompt_is_content_filter() -> None:
    """A reply with promptFeedback.blockReason and no candidates is filtered, not a success."""
    response = normalize_generate_content(BLOCKED)
    assert response.finish_reason == "content_filter"
    assert response.metadata["block_reason"] == "PROHIBITED_CONTENT"
    assert response.data == ""


def test_gemini_blocked_prompt_stream_is_content_filter() -> None:
    """A stream whose only chunk is a blocked prompt's feedback finishes as content_filter."""
    asm = GeminiStreamAssembler()
    assert asm.feed(ev(BLOCKED)) == []
    response = asm.finish()
    assert response.finish_reason == "content_filter"
    assert response.usage is not None and response.usage.input_tokens == 12


def test_gemini_stream_cut_before_finish_reason_is_connection_error() -> None:
    """A Gemini body that ends before any chunk carried finishReason was cut short."""
    asm = GeminiStreamAssembler()
    chunk = {
        "candidates": [{"content": {"parts": [{"text": "The capital is"}], "role": "model"}}],
        "usageMetadata": {"promptTokenCount": 5},
    }
    asm.feed(ev(chunk))
    with pytest.raises(errors.ConnectionError, match="finishReason"):
        asm.finish()


def test_openai_events_after_done_are_ignored() -> None:
    """A chunk read after ``[DONE]`` in the same piece does not change the reply."""
    asm = ChatStreamAssembler("openai")
    delta = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]}
    late = {"choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": None}]}
    asm.feed(ev(delta))
    asm.feed(ev("[DONE]"))
    assert asm.feed(ev(late)) == []
    assert asm.feed(ev({"error": {"message": "late", "code": 500}})) == []
    assert asm.finish().data == "Hi"


def test_anthropic_events_after_message_stop_are_ignored() -> None:
    """An error event after ``message_stop`` does not lose the finished message."""
    asm = MessageStreamAssembler()
    start = {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    text = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Y"}}
    stop_reason = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}
    for obj in (start, block, text, {"type": "content_block_stop", "index": 0}, stop_reason):
        asm.feed(ev(obj, obj["type"]))
    asm.feed(ev({"type": "message_stop"}, "message_stop"))
    late_error = {"type": "error", "error": {"type": "overloaded_error", "message": "late"}}
    assert asm.feed(ev(late_error, "error")) == []
    assert asm.finish().data == "Y"


@pytest.mark.parametrize(
    "block_type",
    [
        "bash_code_execution_tool_result",
        "code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "web_fetch_tool_result",
    ],
)
def test_anthropic_request_accepts_server_tool_result_blocks(block_type: str) -> None:
    """A pause_turn continuation sends server-tool result blocks back; the schema accepts them."""
    assistant = [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "x", "input": {}},
        {"type": block_type, "tool_use_id": "srvtoolu_1", "content": {}},
    ]
    request = CreateMessageRequest(
        model="claude-sonnet-4-5",
        messages=[
            {"role": "user", "content": "Run it."},
            {"role": "assistant", "content": assistant},
        ],
    )
    assert request.messages[1]["content"][1]["type"] == block_type


def test_anthropic_request_leaves_unknown_block_types_to_the_api() -> None:
    """A block type newer than the library is sent as it is: the API, not us, judges it."""
    ep = AnthropicMessagesEndpoint(api_key=SecretStr("k"))
    block = {"type": "brand_new_block", "data": 1}
    payload = ep.create_payload(
        {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": [block]}]}
    )
    assert payload["messages"] == [{"role": "user", "content": [block]}]


def test_gemini_tool_result_takes_function_name_from_tool_call_id() -> None:
    """An OpenAI-style tool message (id, no name) becomes a functionResponse with the name."""
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    contents, _ = messages_to_contents(messages)
    response = contents[2]["parts"][0]["functionResponse"]
    assert response == {"name": "get_weather", "response": {"content": "sunny"}}


def test_gemini_system_message_with_text_parts_becomes_plain_text() -> None:
    """A system message given as text parts becomes their text, not a JSON dump of them."""
    request = generate_content_request(
        {
            "model": "gemini-2.0-flash",
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": "Hi"},
            ],
        }
    )
    assert request["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


@pytest.mark.parametrize(
    ("normalize", "body", "native"),
    [
        (
            normalize_chat_completion,
            {"choices": [{"message": {"content": "x"}, "finish_reason": "something_new"}]},
            "something_new",
        ),
        (
            normalize_message,
            {"content": [{"type": "text", "text": "x"}], "stop_reason": "pause_turn"},
            "pause_turn",
        ),
        (
            normalize_message,
            {"content": [{"type": "text", "text": "x"}], "stop_reason": "something_new"},
            "something_new",
        ),
        (
            normalize_generate_content,
            {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "OTHER"}]},
            "OTHER",
        ),
    ],
)
def test_an_unknown_finish_reason_is_none_for_every_provider(
    normalize: Any, body: Any, native: str
) -> None:
    """No provider guesses: a reason outside the normalized five is None, the native kept."""
    response = normalize(body)
    assert response.finish_reason is None
    assert response.metadata["native_finish_reason"] == native


@pytest.mark.parametrize(
    ("native", "expected"),
    [
        ("LANGUAGE", "content_filter"),
        ("TOO_MANY_TOOL_CALLS", "error"),
        ("SAFETY", "content_filter"),
    ],
)
def test_gemini_finish_reasons_that_are_filters_or_errors(native: str, expected: str) -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": native}]}
    assert normalize_generate_content(body).finish_reason == expected
