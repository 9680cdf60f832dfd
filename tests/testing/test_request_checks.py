"""FakeProvider refuses what the live APIs refuse, and accepts everything they were seen accept."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from tests.conftest import WIRE_DIR, wire_missing

from lionpride.testing import FakeProvider, Reply
from lionpride.testing._forced import forced_tool_call, structured_text
from lionpride.testing._plan import Format, detect_format
from lionpride.testing._request_checks import check_request

RECORDED = (
    sorted([*WIRE_DIR.glob("*.json"), *WIRE_DIR.glob("conversations/*.json")])
    if WIRE_DIR.is_dir()
    else []
)


def recorded_requests() -> list[tuple[str, Format, Any, str]]:
    """Every recorded native request (first and, for round trips, next): format, body, path."""
    found = []
    for path in RECORDED:
        record = json.loads(path.read_text(encoding="utf-8"))
        requests = [("request", record["request"])]
        if "next" in record:
            requests.append(("next", record["next"]["request"]))
        for label, request in requests:
            route = request["path"].split("?", 1)[0]
            fmt = detect_format(route)
            if fmt is not None:
                found.append((f"{path.stem}:{label}", fmt, request["body"], route))
    return found


RECORDED_REQUESTS = recorded_requests()


def test_the_recordings_are_there() -> None:
    """The shared recordings are present, so the acceptance test below is not vacuous."""
    if not WIRE_DIR.is_dir():
        pytest.skip(wire_missing())
    assert len(RECORDED_REQUESTS) >= 50
    assert {fmt for _, fmt, _, _ in RECORDED_REQUESTS} == {"openai", "anthropic", "gemini"}


@pytest.mark.parametrize(
    ("fmt", "body", "route"),
    [pytest.param(fmt, body, route, id=name) for name, fmt, body, route in RECORDED_REQUESTS]
    or [pytest.param(None, None, None, marks=pytest.mark.skip(reason=wire_missing()))],
)
def test_every_recorded_request_is_accepted(fmt: Format, body: Any, route: str) -> None:
    """A request the live API was recorded accepting passes the checks."""
    rejection = check_request(fmt, body, route)
    assert rejection is None, rejection.message


# -- malformed requests -------------------------------------------------------------------------

OPENAI: dict[str, Any] = {
    "model": "gpt-test",
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
}
OPENAI_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ],
}
ANTHROPIC: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 2048,
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
    "tools": [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ],
}
ANTHROPIC_CALL = {
    "role": "assistant",
    "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    ],
}
ANTHROPIC_RESULT = {
    "role": "user",
    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}],
}
GEMINI: dict[str, Any] = {
    "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "parametersJsonSchema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                    },
                }
            ]
        }
    ],
}
GEMINI_CALL = {
    "role": "model",
    "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
}
GEMINI_RESULT = {
    "role": "user",
    "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "Sunny"}}}],
}
BASES: dict[Format, dict[str, Any]] = {"openai": OPENAI, "anthropic": ANTHROPIC, "gemini": GEMINI}


def changed(fmt: Format, **fields: Any) -> dict[str, Any]:
    """The format's valid base request with ``fields`` replaced (``None`` removes one)."""
    body = copy.deepcopy(BASES[fmt])
    for name, value in fields.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def after_call(*turns: dict[str, Any]) -> list[dict[str, Any]]:
    """Gemini contents: the question, the model's call of get_weather, then ``turns``."""
    return [GEMINI["contents"][0], GEMINI_CALL, *turns]


def user(text: str = "Hi") -> dict[str, Any]:
    """A plain user turn (OpenAI and Anthropic)."""
    return {"role": "user", "content": text}


def tool_message(call_id: str) -> dict[str, Any]:
    """An OpenAI tool message answering ``call_id``."""
    return {"role": "tool", "tool_call_id": call_id, "content": "Sunny"}


def with_content(content: Any, role: str = "user") -> list[dict[str, Any]]:
    """Messages whose only turn has ``content``."""
    return [{"role": role, "content": content}]


NUMBER = {"type": "number"}


def closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object schema with no other properties; all of them required unless told."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def strict_tool(parameters: dict[str, Any]) -> dict[str, Any]:
    """A strict OpenAI function tool named get_weather."""
    function = {"name": "get_weather", "parameters": parameters, "strict": True}
    return {"type": "function", "function": function}


def strict_format(schema: dict[str, Any]) -> dict[str, Any]:
    """A strict OpenAI json_schema response format named answer."""
    return {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }


MALFORMED: list[tuple[str, Format, dict[str, Any], str]] = [
    # OpenAI chat completions
    ("oa-no-model", "openai", changed("openai", model=None), "must provide a model"),
    (
        "oa-schema-name-pattern",
        "openai",
        changed(
            "openai",
            response_format={"type": "json_schema", "json_schema": {"name": "Page[int]"}},
        ),
        "Invalid 'response_format.json_schema.name': string does not match pattern",
    ),
    ("oa-no-messages", "openai", changed("openai", messages=None), "'messages'"),
    ("oa-empty-messages", "openai", changed("openai", messages=[]), "empty array"),
    (
        "oa-bad-role",
        "openai",
        changed("openai", messages=[{"role": "model", "content": "Hi"}]),
        "Invalid value: 'model'. Supported values are: 'system'",
    ),
    (
        "oa-user-without-content",
        "openai",
        changed("openai", messages=[{"role": "user"}]),
        "Missing required parameter: 'messages[0].content'",
    ),
    (
        "oa-empty-content-array",
        "openai",
        changed("openai", messages=with_content([])),
        "Invalid 'messages[0].content': empty array",
    ),
    (
        "oa-anthropic-image-block",
        "openai",
        changed("openai", messages=with_content([{"type": "image", "source": {}}])),
        "Invalid value: 'image'",
    ),
    (
        "oa-image-in-system",
        "openai",
        changed(
            "openai",
            messages=[
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                },
                user(),
            ],
        ),
        "'image_url' are not allowed in messages with role 'system'",
    ),
    (
        "oa-image-url-as-string",
        "openai",
        changed("openai", messages=with_content([{"type": "image_url", "image_url": "https://x"}])),
        "Invalid type for 'messages[0].content[0].image_url': expected an object",
    ),
    (
        "oa-arguments-as-object",
        "openai",
        changed(
            "openai",
            messages=[
                user(),
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                        }
                    ],
                },
                tool_message("call_1"),
            ],
        ),
        "'messages[1].tool_calls[0].function.arguments': expected a string, but got an object",
    ),
    (
        "oa-tool-without-call",
        "openai",
        changed("openai", messages=[user(), tool_message("call_1")]),
        "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'",
    ),
    (
        "oa-tool-answers-unknown-id",
        "openai",
        changed("openai", messages=[user(), OPENAI_CALL, tool_message("call_9")]),
        "must be a response to a preceeding message",
    ),
    (
        "oa-call-left-unanswered",
        "openai",
        changed("openai", messages=[user(), OPENAI_CALL, user("And?")]),
        "did not have response messages: call_1",
    ),
    (
        "oa-tool-without-call-id",
        "openai",
        changed("openai", messages=[user(), {"role": "tool", "content": "x"}]),
        "'messages[1].tool_call_id'",
    ),
    (
        "oa-anthropic-shaped-tool",
        "openai",
        changed("openai", tools=[{"name": "get_weather", "input_schema": {"type": "object"}}]),
        "Missing required parameter: 'tools[0].type'",
    ),
    (
        "oa-bad-tool-name",
        "openai",
        changed("openai", tools=[{"type": "function", "function": {"name": "get weather"}}]),
        "'tools[0].function.name': string does not match pattern",
    ),
    (
        "oa-responses-shaped-tool",
        "openai",
        changed("openai", tools=[{"type": "function", "name": "get_weather", "parameters": {}}]),
        "Missing required parameter: 'tools[0].function'",
    ),
    (
        "oa-responses-shaped-tool-choice",
        "openai",
        changed("openai", tool_choice={"type": "function", "name": "get_weather"}),
        "Missing required parameter: 'tool_choice.function.name'",
    ),
    (
        "oa-strict-tool-open-object",
        "openai",
        changed("openai", tools=[strict_tool({"type": "object", "properties": {}})]),
        "Invalid schema for function 'get_weather': In context=(), 'additionalProperties' is "
        "required to be supplied and to be false.",
    ),
    (
        "oa-strict-tool-optional-property",
        "openai",
        changed("openai", tools=[strict_tool(closed({"where": closed({"lat": NUMBER}, [])}))]),
        "In context=('properties', 'where'), 'required' is required to be supplied and to be an "
        "array including every key in properties. Missing 'lat'.",
    ),
    (
        "oa-strict-format-in-defs",
        "openai",
        changed(
            "openai",
            response_format=strict_format(
                {
                    **closed({"p": {"$ref": "#/$defs/P"}}),
                    "$defs": {"P": {"type": "object", "properties": {"x": NUMBER}}},
                }
            ),
        ),
        "Invalid schema for response_format 'answer': In context=('$defs', 'P'), "
        "'additionalProperties' is required",
    ),
    (
        "oa-strict-format-array-root",
        "openai",
        changed("openai", response_format=strict_format({"type": "array", "items": NUMBER})),
        "schema must be a JSON Schema of 'type: \"object\"'",
    ),
    ("oa-tool-choice-any", "openai", changed("openai", tool_choice="any"), "Invalid value: 'any'"),
    (
        "oa-required-without-tools",
        "openai",
        changed("openai", tools=None, tool_choice="required"),
        "'tool_choice' is only allowed when 'tools' are specified",
    ),
    (
        "oa-parallel-without-tools",
        "openai",
        changed("openai", tools=None, parallel_tool_calls=False),
        "'parallel_tool_calls' is only allowed when 'tools' are specified",
    ),
    (
        "oa-schema-without-name",
        "openai",
        changed(
            "openai",
            response_format={"type": "json_schema", "json_schema": {"schema": {}}},
        ),
        "'response_format.json_schema.name'",
    ),
    (
        "oa-json-object-without-json",
        "openai",
        changed("openai", response_format={"type": "json_object"}),
        "must contain the word 'json'",
    ),
    (
        "oa-stream-options-without-stream",
        "openai",
        changed("openai", stream_options={"include_usage": True}),
        "'stream_options' parameter is only allowed when 'stream' is enabled",
    ),
    (
        "oa-temperature-too-high",
        "openai",
        changed("openai", temperature=3),
        "Expected a value <= 2, but got 3",
    ),
    ("oa-zero-max-tokens", "openai", changed("openai", max_tokens=0), "Expected a value >= 1"),
    # Anthropic messages
    (
        "an-no-max-tokens",
        "anthropic",
        changed("anthropic", max_tokens=None),
        "max_tokens: Field required",
    ),
    ("an-no-model", "anthropic", changed("anthropic", model=None), "model: Field required"),
    ("an-empty-messages", "anthropic", changed("anthropic", messages=[]), "at least one message"),
    (
        "an-tool-role",
        "anthropic",
        changed("anthropic", messages=[user(), {"role": "tool", "content": "x"}]),
        "messages.1.role: Input should be 'user' or 'assistant', got 'tool'",
    ),
    (
        "an-empty-user-content",
        "anthropic",
        changed("anthropic", messages=[user(""), {"role": "assistant", "content": "Hi"}]),
        "messages.0: all messages must have non-empty content",
    ),
    (
        "an-empty-text-block",
        "anthropic",
        changed("anthropic", messages=with_content([{"type": "text", "text": ""}])),
        "text content blocks must be non-empty",
    ),
    (
        "an-trailing-space-prefill",
        "anthropic",
        changed("anthropic", messages=[user(), {"role": "assistant", "content": "Sure, "}]),
        "final assistant content cannot end with trailing whitespace",
    ),
    (
        "an-openai-image-part",
        "anthropic",
        changed(
            "anthropic",
            messages=with_content([{"type": "image_url", "image_url": {"url": "https://x"}}]),
        ),
        "messages.0.content.0: Input tag 'image_url' found using 'type' does not match",
    ),
    (
        "an-bad-image-media-type",
        "anthropic",
        changed(
            "anthropic",
            messages=with_content(
                [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/bmp", "data": "AA=="},
                    }
                ]
            ),
        ),
        "source.base64.media_type: Input should be 'image/jpeg'",
    ),
    (
        "an-input-as-json-string",
        "anthropic",
        changed(
            "anthropic",
            messages=[
                user(),
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": "{}"}
                    ],
                },
                ANTHROPIC_RESULT,
            ],
        ),
        "messages.1.content.0.input: Input should be a valid dictionary",
    ),
    (
        "an-result-without-use",
        "anthropic",
        changed(
            "anthropic", messages=[user(), {"role": "assistant", "content": "Ok"}, ANTHROPIC_RESULT]
        ),
        "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1",
    ),
    (
        "an-use-without-result",
        "anthropic",
        changed("anthropic", messages=[user(), ANTHROPIC_CALL, user("And?")]),
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: "
        "toolu_1",
    ),
    (
        "an-result-after-text",
        "anthropic",
        changed(
            "anthropic",
            messages=[
                user(),
                ANTHROPIC_CALL,
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Here:"},
                        *ANTHROPIC_RESULT["content"],
                    ],
                },
            ],
        ),
        "messages.2: Did not find 1 `tool_result` block(s) at the beginning of this message",
    ),
    (
        "an-openai-shaped-tool",
        "anthropic",
        changed("anthropic", tools=OPENAI["tools"]),
        "tools.0: Input tag 'function' found using 'type' does not match",
    ),
    (
        "an-schema-not-object",
        "anthropic",
        changed("anthropic", tools=[{"name": "f", "input_schema": {"type": "string"}}]),
        "tools.0.custom.input_schema.type: Input should be 'object'",
    ),
    (
        "an-duplicate-tools",
        "anthropic",
        changed("anthropic", tools=ANTHROPIC["tools"] * 2),
        "Tool names must be unique",
    ),
    (
        "an-tool-choice-string",
        "anthropic",
        changed("anthropic", tool_choice="auto"),
        "tool_choice: Input should be a valid dictionary",
    ),
    (
        "an-tool-choice-required",
        "anthropic",
        changed("anthropic", tool_choice={"type": "required"}),
        "tool_choice: Input tag 'required'",
    ),
    (
        "an-thinking-forced-tool",
        "anthropic",
        changed(
            "anthropic",
            tool_choice={"type": "any"},
            thinking={"type": "enabled", "budget_tokens": 1024},
        ),
        "Thinking may not be enabled when tool_choice forces tool use.",
    ),
    (
        "an-small-budget",
        "anthropic",
        changed("anthropic", thinking={"type": "enabled", "budget_tokens": 500}),
        "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
    ),
    (
        "an-budget-over-max",
        "anthropic",
        changed("anthropic", thinking={"type": "enabled", "budget_tokens": 4096}),
        "`max_tokens` must be greater than `thinking.budget_tokens`",
    ),
    (
        "an-thinking-dropped-before-tools",
        "anthropic",
        changed(
            "anthropic",
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[user(), ANTHROPIC_CALL, ANTHROPIC_RESULT],
        ),
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        "`tool_use`",
    ),
    (
        "an-thinking-dropped-before-split-results",
        "anthropic",
        changed(
            "anthropic",
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[user(), ANTHROPIC_CALL, ANTHROPIC_RESULT, user("Go on.")],
        ),
        "When `thinking` is enabled, a final `assistant` message must start with a thinking block",
    ),
    (
        "an-temperature-with-thinking",
        "anthropic",
        changed("anthropic", thinking={"type": "enabled", "budget_tokens": 1024}, temperature=0.2),
        "`temperature` may only be set to 1 when thinking is enabled",
    ),
    ("an-temperature-range", "anthropic", changed("anthropic", temperature=1.5), "between 0 and 1"),
    (
        "an-system-list-of-strings",
        "anthropic",
        changed("anthropic", system=["Be brief."]),
        "system.0: Input should be a valid dictionary",
    ),
    # Gemini generateContent
    ("ge-no-contents", "gemini", changed("gemini", contents=None), "contents is not specified"),
    (
        "ge-openai-messages",
        "gemini",
        changed("gemini", contents=[{"role": "user", "content": "Hi"}]),
        "Unknown name \"content\" at 'contents[0]'",
    ),
    (
        "ge-assistant-role",
        "gemini",
        changed(
            "gemini",
            contents=[GEMINI["contents"][0], {"role": "assistant", "parts": [{"text": "Hi"}]}],
        ),
        "Please use a valid role: user, model.",
    ),
    (
        "ge-empty-parts",
        "gemini",
        changed("gemini", contents=[{"role": "user", "parts": []}]),
        "contents[0].parts: contents.parts must not be empty",
    ),
    (
        "ge-typed-part",
        "gemini",
        changed("gemini", contents=[{"role": "user", "parts": [{"type": "text", "text": "Hi"}]}]),
        "Unknown name \"type\" at 'contents[0].parts[0]'",
    ),
    (
        "ge-empty-part",
        "gemini",
        changed("gemini", contents=[{"role": "user", "parts": [{"thought": True}]}]),
        "required oneof field 'data' must have one initialized field",
    ),
    (
        "ge-two-data-fields",
        "gemini",
        changed(
            "gemini",
            contents=[
                {
                    "role": "user",
                    "parts": [{"text": "Hi", "inlineData": {"mimeType": "a/b", "data": "AA=="}}],
                }
            ],
        ),
        "Oneof field 'data' is already set",
    ),
    (
        "ge-inline-without-mime",
        "gemini",
        changed("gemini", contents=[{"role": "user", "parts": [{"inlineData": {"data": "AA"}}]}]),
        "inline_data.mime_type: mime_type is required",
    ),
    (
        "ge-call-first",
        "gemini",
        changed("gemini", contents=[GEMINI_CALL, GEMINI_RESULT]),
        "function call turn comes immediately after a user turn or after a function response",
    ),
    (
        "ge-response-without-call",
        "gemini",
        changed("gemini", contents=[GEMINI["contents"][0], GEMINI_RESULT]),
        "function response turn comes immediately after a function call turn",
    ),
    (
        "ge-response-count",
        "gemini",
        changed(
            "gemini",
            contents=after_call({"role": "user", "parts": GEMINI_RESULT["parts"] * 2}),
        ),
        "number of function response parts is equal to the number of function call parts",
    ),
    (
        "ge-response-not-an-object",
        "gemini",
        changed(
            "gemini",
            contents=after_call(
                {
                    "role": "user",
                    "parts": [{"functionResponse": {"name": "get_weather", "response": "Sunny"}}],
                }
            ),
        ),
        "function_response.response' (type.googleapis.com/google.protobuf.Struct)",
    ),
    (
        "ge-openai-shaped-tool",
        "gemini",
        changed("gemini", tools=OPENAI["tools"]),
        "Unknown name \"type\" at 'tools[0]'",
    ),
    (
        "ge-anthropic-shaped-declaration",
        "gemini",
        changed("gemini", tools=[{"functionDeclarations": ANTHROPIC["tools"]}]),
        "Unknown name \"input_schema\" at 'tools[0].function_declarations[0]'",
    ),
    (
        "ge-bad-function-name",
        "gemini",
        changed("gemini", tools=[{"functionDeclarations": [{"name": "1st tool"}]}]),
        "Invalid function name '1st tool'",
    ),
    (
        "ge-mode-required",
        "gemini",
        changed("gemini", toolConfig={"functionCallingConfig": {"mode": "REQUIRED"}}),
        "Invalid value at 'tool_config.function_calling_config.mode'",
    ),
]


@pytest.mark.parametrize(
    ("fmt", "body", "expected"),
    [pytest.param(fmt, body, expected, id=name) for name, fmt, body, expected in MALFORMED],
)
def test_malformed_request_is_refused(fmt: Format, body: dict[str, Any], expected: str) -> None:
    """Each malformed request is refused with a message naming what is wrong."""
    rejection = check_request(fmt, body)
    assert rejection is not None
    assert expected in rejection.message


@pytest.mark.parametrize("fmt", ["openai", "anthropic", "gemini"])
def test_the_base_requests_are_accepted(fmt: Format) -> None:
    """The table's valid starting points pass, so each refusal is the mutation's doing."""
    assert check_request(fmt, BASES[fmt]) is None


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        ("openai", changed("openai", messages=[user(), OPENAI_CALL, tool_message("call_1")])),
        ("anthropic", changed("anthropic", messages=[user(), ANTHROPIC_CALL, ANTHROPIC_RESULT])),
        ("gemini", changed("gemini", contents=after_call(GEMINI_RESULT))),
        # Thinking kept before the tool call it led to.
        (
            "anthropic",
            changed(
                "anthropic",
                thinking={"type": "enabled", "budget_tokens": 1024},
                messages=[
                    user(),
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "thinking", "thinking": "Look it up.", "signature": "c2ln"},
                            *ANTHROPIC_CALL["content"],
                        ],
                    },
                    ANTHROPIC_RESULT,
                ],
            ),
        ),
        # The API merges consecutive turns of one role.
        ("anthropic", changed("anthropic", messages=[user(), user("Again")])),
        # A prefilled final assistant turn, and an assistant turn first.
        (
            "anthropic",
            changed("anthropic", messages=[user(), {"role": "assistant", "content": "{"}]),
        ),
        (
            "anthropic",
            changed("anthropic", messages=[{"role": "assistant", "content": "Hi"}, user()]),
        ),
        # snake_case field names are the same fields to the Gemini API.
        (
            "gemini",
            {
                "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                "system_instruction": {"parts": [{"text": "Be brief."}]},
                "tool_config": {"function_calling_config": {"mode": "ANY"}},
                "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": {}}]}],
            },
        ),
        # Strict schemas that keep the rules, and a loose one without strict.
        ("openai", changed("openai", tools=[strict_tool(closed({"w": closed({"lat": NUMBER})}))])),
        (
            "openai",
            changed(
                "openai",
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": False},
                },
            ),
        ),
        # Tool types other OpenAI-compatible services add, and Anthropic's dated server tools.
        ("openai", changed("openai", tools=[{"type": "browser_search"}])),
        (
            "anthropic",
            changed("anthropic", tools=[{"type": "web_search_20250305", "name": "web_search"}]),
        ),
    ],
)
def test_what_the_apis_accept_passes(fmt: Format, body: dict[str, Any]) -> None:
    """Requests the live APIs accept pass, including their less obvious spellings."""
    rejection = check_request(fmt, body)
    assert rejection is None, rejection.message


def test_interleaved_thinking_lets_the_budget_exceed_max_tokens() -> None:
    """With the interleaved-thinking beta the budget may exceed max_tokens, as the API allows."""
    body = changed("anthropic", thinking={"type": "enabled", "budget_tokens": 4096})
    assert check_request("anthropic", body) is not None
    headers = {"anthropic-beta": "interleaved-thinking-2025-05-14"}
    assert check_request("anthropic", body, "/v1/messages", headers) is None


def test_anthropic_constrained_decoding_refuses_limits_it_has_no_grammar_for() -> None:
    """A minimum in a structured-output schema or a maxLength in a strict tool is refused, as
    the API refuses them; the same limits in a plain tool, and minItems 1, pass."""
    bounded = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0}, "tags": {"type": "array"}},
    }
    structured = changed(
        "anthropic", output_config={"format": {"type": "json_schema", "schema": bounded}}
    )
    rejection = check_request("anthropic", structured)
    assert rejection is not None
    assert rejection.message == (
        "output_config.format.schema: For 'integer' type, property 'minimum' is not supported"
    )
    named = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 9}}}
    tool = {"name": "f", "input_schema": named, "strict": True}
    rejection = check_request("anthropic", changed("anthropic", tools=[tool]))
    assert rejection is not None and "property 'maxLength' is not supported" in rejection.message
    loose = {"name": "f", "input_schema": bounded}
    assert check_request("anthropic", changed("anthropic", tools=[loose])) is None
    bounded["properties"] = {"tags": {"type": "array", "minItems": 1}}
    assert check_request("anthropic", structured) is None


# -- Gemini 3 thought signatures ---------------------------------------------------------------

GEMINI_3 = "/v1beta/models/gemini-3-flash-preview:generateContent"


def signed(content: dict[str, Any], signature: str = "c2ln") -> dict[str, Any]:
    """``content`` with ``signature`` on its first part."""
    first, *rest = content["parts"]
    return {**content, "parts": [{**first, "thoughtSignature": signature}, *rest]}


PARALLEL_CALLS = {"role": "model", "parts": GEMINI_CALL["parts"] * 2}
PARALLEL_RESULTS = {"role": "user", "parts": GEMINI_RESULT["parts"] * 2}


@pytest.mark.parametrize(
    ("route", "contents", "refused"),
    [
        pytest.param(GEMINI_3, after_call(GEMINI_RESULT), True, id="unsigned-current-turn"),
        pytest.param(
            GEMINI_3,
            [GEMINI["contents"][0], signed(GEMINI_CALL), GEMINI_RESULT],
            False,
            id="signed-current-turn",
        ),
        pytest.param(
            GEMINI_3,
            [GEMINI["contents"][0], signed(PARALLEL_CALLS), PARALLEL_RESULTS],
            False,
            id="parallel-calls-sign-the-first-only",
        ),
        pytest.param(
            GEMINI_3,
            [*after_call(GEMINI_RESULT), GEMINI["contents"][0]],
            False,
            id="earlier-turns-are-not-checked",
        ),
        pytest.param(
            GEMINI_3,
            [
                GEMINI["contents"][0],
                signed(GEMINI_CALL),
                GEMINI_RESULT,
                GEMINI_CALL,
                GEMINI_RESULT,
            ],
            True,
            id="every-step-of-the-turn",
        ),
        pytest.param(
            GEMINI_3,
            [
                GEMINI["contents"][0],
                signed(GEMINI_CALL, "skip_thought_signature_validator"),
                GEMINI_RESULT,
            ],
            False,
            id="documented-placeholder",
        ),
        pytest.param(
            "/v1beta/models/gemini-2.5-flash:generateContent",
            after_call(GEMINI_RESULT),
            False,
            id="gemini-2.5-does-not-require",
        ),
        pytest.param(
            "/v1beta/models/gemini-3-pro-image-preview:generateContent",
            after_call(GEMINI_RESULT),
            False,
            id="gemini-3-pro-image-does-not-require",
        ),
    ],
)
def test_gemini_3_requires_signatures_in_the_current_turn(
    route: str, contents: list[dict[str, Any]], refused: bool
) -> None:
    """Gemini 3 refuses a function call of the current turn that lost its thought signature."""
    rejection = check_request("gemini", changed("gemini", contents=contents), route)
    if refused:
        assert rejection is not None
        assert "Function call is missing a thought_signature" in rejection.message
    else:
        assert rejection is None, rejection.message


# -- over HTTP ----------------------------------------------------------------------------------


@pytest.fixture
async def fp() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as provider:
        yield provider


def url_for(fp: FakeProvider, fmt: Format) -> str:
    """The generate URL of ``fmt`` on ``fp``."""
    if fmt == "openai":
        return fp.base_url("openai") + "/chat/completions"
    if fmt == "anthropic":
        return fp.base_url("anthropic") + "/messages"
    return fp.base_url("gemini") + "/models/gemini-test:generateContent"


async def test_refusals_have_each_providers_error_body(fp: FakeProvider) -> None:
    """A refused request gets HTTP 400 with the error body of the provider its path names."""
    async with aiohttp.ClientSession() as session:
        replies = {}
        for fmt, body in [
            ("openai", changed("openai", messages=[user(), tool_message("call_1")])),
            ("anthropic", changed("anthropic", max_tokens=None)),
            ("gemini", changed("gemini", contents=None)),
        ]:
            async with session.post(url_for(fp, fmt), json=body) as resp:
                assert resp.status == 400
                replies[fmt] = await resp.json()
    assert replies["openai"] == {
        "error": {
            "message": "Invalid parameter: messages with role 'tool' must be a response to a "
            "preceeding message with 'tool_calls'.",
            "type": "invalid_request_error",
            "param": "messages.[1].role",
            "code": None,
        }
    }
    assert replies["anthropic"] == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
        "request_id": "req_fake",
    }
    assert replies["gemini"] == {
        "error": {
            "code": 400,
            "message": "* GenerateContentRequest.contents: contents is not specified\n",
            "status": "INVALID_ARGUMENT",
        }
    }


async def test_refusal_comes_before_scripts_and_is_recorded(fp: FakeProvider) -> None:
    """A body that is not JSON is refused, recorded, and leaves the script to the next request."""
    fp.script(Reply(text="Scripted."))
    url = url_for(fp, "openai")
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=b"not json") as resp:
            assert resp.status == 400
            assert "could not parse the JSON body" in (await resp.json())["error"]["message"]
        async with session.post(url, json=OPENAI) as resp:
            reply = await resp.json()
    assert reply["choices"][0]["message"]["content"] == "Scripted."
    assert len(fp.requests) == 2 and fp.pending == 0


async def test_the_model_in_a_gemini_path_reaches_the_checks(fp: FakeProvider) -> None:
    """FakeProvider reads the Gemini model from the path, so Gemini 3's own rules apply."""
    body = changed("gemini", contents=after_call(GEMINI_RESULT))
    base = fp.base_url("gemini") + "/models/"
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "gemini-3-pro-preview:generateContent", json=body) as resp:
            assert resp.status == 400
            assert "thought_signature" in (await resp.json())["error"]["message"]
        async with session.post(base + "gemini-2.5-pro:generateContent", json=body) as resp:
            assert resp.status == 200


def test_formats_without_checks_pass() -> None:
    """A route format these checks do not cover (embeddings, token counts) is left unchecked."""
    assert check_request("embeddings", None) is None  # type: ignore[arg-type]
    assert check_request("anthropic", {}, "/v1/messages/count_tokens") is None
    assert check_request("openai", {}, "/v1/embeddings") is None
    assert forced_tool_call("embeddings", {"tool_choice": "required"}) is None  # type: ignore[arg-type]
    assert structured_text("embeddings", {"response_format": {}}) is None  # type: ignore[arg-type]
