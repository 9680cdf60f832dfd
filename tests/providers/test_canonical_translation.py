"""The canonical request's translation rules that the recorded conversations do not cover."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import pytest
from pydantic import BaseModel, Field, SecretStr

from lionpride import errors
from lionpride.services.providers.anthropic_messages import (
    AnthropicMessagesEndpoint,
    normalize_message,
)
from lionpride.services.providers.gemini import GeminiEndpoint, normalize_generate_content
from lionpride.services.providers.oai_chat import OAIChatEndpoint
from lionpride.services.types.endpoint import Endpoint
from lionpride.services.types.tool import Tool

USER = [{"role": "user", "content": "Hi"}]
T = TypeVar("T")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def anthropic() -> AnthropicMessagesEndpoint:
    """An Anthropic endpoint (no HTTP is made)."""
    return AnthropicMessagesEndpoint(api_key=SecretStr("k"))


def gemini() -> GeminiEndpoint:
    """A Gemini endpoint (no HTTP is made)."""
    return GeminiEndpoint(api_key=SecretStr("k"))


def openai() -> OAIChatEndpoint:
    """An OpenAI chat endpoint (no HTTP is made)."""
    return OAIChatEndpoint(api_key=SecretStr("k"))


def payload(ep: Endpoint, **request: Any) -> dict[str, Any]:
    """The payload ``ep`` would send for ``request``."""
    return ep.create_payload(request)


# -- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "model", "name", "value"),
    [
        (anthropic, "claude-sonnet-4-5", "seed", 7),
        (anthropic, "claude-sonnet-4-5", "logprobs", True),
        (anthropic, "claude-sonnet-4-5", "n", 2),
        (gemini, "gemini-2.5-flash", "user", "u1"),
        (gemini, "gemini-2.5-flash", "parallel_tool_calls", False),
        (gemini, "gemini-2.5-flash", "logit_bias", {"1": 1.0}),
    ],
)
def test_parameter_without_equivalent_names_itself_and_the_provider(
    make: Any, model: str, name: str, value: Any
) -> None:
    """A canonical parameter a provider cannot express is a ValidationError, never dropped."""
    with pytest.raises(errors.ValidationError, match=rf"{name}.*{make().provider}"):
        payload(make(), model=model, messages=USER, **{name: value})


def test_anthropic_takes_the_neutral_values_of_what_it_lacks() -> None:
    """logprobs=False and zero penalties ask for what the Messages API does anyway: they are
    not sent, while a value that asks for something is still refused."""
    out = payload(
        anthropic(),
        model="claude-sonnet-4-5",
        messages=USER,
        logprobs=False,
        presence_penalty=0,
        frequency_penalty=0.0,
    )
    assert not {"logprobs", "presence_penalty", "frequency_penalty"} & out.keys()
    with pytest.raises(errors.ValidationError, match=r"presence_penalty.*anthropic"):
        payload(anthropic(), model="claude-sonnet-4-5", messages=USER, presence_penalty=0.5)


@pytest.mark.parametrize("make", [anthropic, gemini, openai])
def test_typo_names_the_parameter_and_points_to_extra_body(make: Any) -> None:
    """An unknown top-level name is refused with a hint for fields newer than the library."""
    with pytest.raises(errors.ValidationError, match=r"'temprature'.*extra_body"):
        payload(make(), model="m", messages=USER, temprature=0.2)


def test_anthropic_sampling_stop_user_and_token_names() -> None:
    """stop, user and max_completion_tokens take their Messages API names."""
    out = payload(
        anthropic(),
        model="claude-sonnet-4-5",
        messages=USER,
        stop="END",
        user="u1",
        max_completion_tokens=99,
        temperature=0.5,
    )
    assert out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "u1"}
    assert out["max_tokens"] == 99 and "max_completion_tokens" not in out
    assert out["temperature"] == 0.5


def test_gemini_generation_config_from_canonical_parameters() -> None:
    """Sampling parameters go into generationConfig; a native value there wins."""
    out = payload(
        gemini(),
        model="gemini-2.5-flash",
        messages=USER,
        max_tokens=50,
        stop=["a", "b"],
        temperature=0.3,
        top_p=0.9,
        seed=4,
        generationConfig={"temperature": 0.1},
    )
    assert out["generationConfig"] == {
        "maxOutputTokens": 50,
        "stopSequences": ["a", "b"],
        "temperature": 0.1,
        "topP": 0.9,
        "seed": 4,
    }


# -- tools -----------------------------------------------------------------------------------


def get_time(zone: str) -> str:
    """The time in a zone.

    Args:
        zone: An IANA zone name.
    """
    return "12:00"


@pytest.mark.parametrize("make", [anthropic, gemini, openai])
def test_tools_as_tool_objects_and_functions_become_plain_dicts(make: Any) -> None:
    """A Tool and a bare function reach every provider's translation as OpenAI dicts."""
    out = payload(
        make(),
        model="m-1",
        messages=USER,
        tools=[Tool(func_callable=get_time, config=None), get_time, WEATHER],
    )
    if make is anthropic:
        names = [tool["name"] for tool in out["tools"]]
        assert out["tools"][0]["input_schema"]["properties"]["zone"]["type"] == "string"
    elif make is gemini:
        declarations = out["tools"][0]["functionDeclarations"]
        names = [d["name"] for d in declarations]
        assert declarations[0]["parametersJsonSchema"]["required"] == ["zone"]
    else:
        names = [tool["function"]["name"] for tool in out["tools"]]
        assert out["tools"][0]["function"]["description"] == "The time in a zone."
    assert names == ["get_time", "get_time", "get_weather"]


def test_a_tools_entry_that_is_no_tool_is_refused_by_position() -> None:
    """A tools entry of the wrong kind is a ValidationError naming its index."""
    with pytest.raises(errors.ValidationError, match=r"tools\[1\]"):
        payload(openai(), model="m", messages=USER, tools=[WEATHER, 42])


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_anthropic_tool_choice(choice: Any, parallel: Any, expected: dict[str, Any]) -> None:
    """tool_choice and parallel_tool_calls=False map to the Messages API's tool_choice."""
    extra = {k: v for k, v in (("tool_choice", choice), ("parallel_tool_calls", parallel)) if v}
    extra.update({"parallel_tool_calls": parallel} if parallel is not None else {})
    out = payload(anthropic(), model="claude-sonnet-4-5", messages=USER, tools=[WEATHER], **extra)
    assert out["tool_choice"] == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_gemini_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    """tool_choice maps to toolConfig.functionCallingConfig."""
    out = payload(
        gemini(), model="gemini-2.5-flash", messages=USER, tools=[WEATHER], tool_choice=choice
    )
    assert out["toolConfig"] == {"functionCallingConfig": expected}


# -- content ---------------------------------------------------------------------------------

PDF = "data:application/pdf;base64,JVBERi0x"


def test_anthropic_pdf_becomes_a_document_and_audio_is_refused() -> None:
    """A file part is a base64 document block; input_audio has no Messages equivalent."""
    part = {"type": "file", "file": {"file_data": PDF, "filename": "a.pdf"}}
    out = payload(
        anthropic(), model="claude-sonnet-4-5", messages=[{"role": "user", "content": [part]}]
    )
    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
            "title": "a.pdf",
        }
    ]
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(errors.ValidationError, match=r"input_audio.*anthropic"):
        payload(anthropic(), model="c", messages=[{"role": "user", "content": [audio]}])


def test_gemini_audio_and_url_media() -> None:
    """input_audio is inline data; an https image is file data with its type."""
    parts = [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "mp3"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
    ]
    out = payload(gemini(), model="gemini-2.5-flash", messages=[{"role": "user", "content": parts}])
    assert out["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/mp3", "data": "AAAA"}},
        {"fileData": {"fileUri": "https://x.test/a.png", "mimeType": "image/png"}},
    ]


def test_native_requests_pass_unchanged() -> None:
    """A request already in the provider's format comes out as it went in."""
    native_anthropic = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}],
            },
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    assert payload(anthropic(), **native_anthropic) == native_anthropic
    native_gemini = {
        "model": "gemini-2.5-flash",
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": [{"name": "f"}]}, {"googleSearch": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {"maxOutputTokens": 5},
    }
    assert payload(gemini(), **native_gemini) == native_gemini


# -- response_format and reasoning_effort ----------------------------------------------------


class City(BaseModel):
    """A city and its country."""

    name: str
    country: str


def test_pydantic_response_format_becomes_a_json_schema_for_openai() -> None:
    """A pydantic class as response_format is sent as its json_schema."""
    out = payload(openai(), model="gpt-4o", messages=USER, response_format=City)
    assert out["response_format"]["type"] == "json_schema"
    assert out["response_format"]["json_schema"]["name"] == "City"
    assert out["response_format"]["json_schema"]["schema"]["required"] == ["name", "country"]


class Page(BaseModel, Generic[T]):
    """A page of items of one type."""

    items: list[T]


def test_a_generic_model_gets_a_name_the_api_takes() -> None:
    """A parametrized pydantic class (named 'Page[int]') is sent under a name of letters,
    digits, _ and -, the only ones a json_schema name may hold."""
    out = payload(openai(), model="gpt-4o", messages=USER, response_format=Page[int])
    assert out["response_format"]["json_schema"]["name"] == "Page_int_"


def test_anthropic_structured_output_native_or_forced_tool() -> None:
    """Models with structured output get output_config.format; older ones a forced tool whose
    input reads back as the answer's text."""
    native = payload(anthropic(), model="claude-sonnet-4-5", messages=USER, response_format=City)
    schema = native["output_config"]["format"]["schema"]
    assert schema["additionalProperties"] is False and schema["required"] == ["name", "country"]
    old = payload(
        anthropic(), model="claude-3-7-sonnet-latest", messages=USER, response_format=City
    )
    tool = old["tools"][-1]
    assert old["tool_choice"] == {"type": "tool", "name": tool["name"]}
    answer = normalize_message(
        {
            "content": [
                {
                    "type": "tool_use",
                    "id": "t",
                    "name": tool["name"],
                    "input": {"name": "Oslo", "country": "Norway"},
                }
            ],
            "stop_reason": "tool_use",
        }
    )
    assert answer.tool_calls == []
    assert City.model_validate_json(answer.data) == City(name="Oslo", country="Norway")


def test_anthropic_json_object_without_schema_is_refused() -> None:
    """JSON mode without a schema has no Messages equivalent."""
    with pytest.raises(errors.ValidationError, match=r"json_object.*anthropic"):
        payload(
            anthropic(),
            model="claude-sonnet-4-5",
            messages=USER,
            response_format={"type": "json_object"},
        )


@pytest.mark.parametrize(
    ("model", "effort", "thinking", "config"),
    [
        ("claude-sonnet-4-5", "high", {"type": "enabled", "budget_tokens": 2048}, None),
        ("claude-opus-4-6", "medium", {"type": "adaptive"}, {"effort": "medium"}),
        ("claude-opus-4-8", "minimal", {"type": "adaptive"}, {"effort": "low"}),
        ("claude-opus-4-8", "none", None, None),
    ],
)
def test_anthropic_reasoning_effort(
    model: str, effort: str, thinking: dict[str, Any] | None, config: dict[str, Any] | None
) -> None:
    """reasoning_effort is a budget before Claude 4.6 (under max_tokens), an effort after."""
    out = payload(anthropic(), model=model, messages=USER, max_tokens=4096, reasoning_effort=effort)
    assert out.get("thinking") == thinking
    assert out.get("output_config") == config


@pytest.mark.parametrize(
    ("model", "forcing", "named"),
    [
        ("claude-sonnet-4-5", {"tool_choice": "required"}, "tool_choice"),
        (
            "claude-opus-4-8",
            {"tool_choice": {"type": "function", "function": WEATHER["function"]}},
            "tool_choice",
        ),
        ("claude-3-7-sonnet-latest", {"response_format": City}, "response_format"),
    ],
)
def test_anthropic_reasoning_effort_with_a_forced_tool_is_refused(
    model: str, forcing: dict[str, Any], named: str
) -> None:
    """Thinking with a tool_choice that forces a tool is refused by the Messages API, so the
    translation names both instead of sending it."""
    with pytest.raises(errors.ValidationError, match=rf"reasoning_effort.*{named}.*forces"):
        payload(
            anthropic(),
            model=model,
            messages=USER,
            tools=[WEATHER],
            reasoning_effort="low",
            **forcing,
        )


def test_anthropic_reasoning_effort_needs_room_for_the_smallest_budget() -> None:
    """A max_tokens of 1024 or less leaves no room for a thinking budget (at least 1024 and
    below max_tokens): a ValidationError naming both, not a request the API refuses."""
    with pytest.raises(errors.ValidationError, match=r"reasoning_effort 'low'.*max_tokens.*100"):
        payload(
            anthropic(),
            model="claude-sonnet-4-5",
            messages=USER,
            max_tokens=100,
            reasoning_effort="low",
        )
    out = payload(
        anthropic(),
        model="claude-sonnet-4-5",
        messages=USER,
        max_tokens=1025,
        reasoning_effort="low",
    )
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 1024}


@pytest.mark.parametrize(
    ("model", "effort", "expected"),
    [
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-pro", "low", {"thinkingBudget": 1024}),
        ("gemini-3-pro-preview", "high", {"thinkingLevel": "high"}),
    ],
)
def test_gemini_reasoning_effort(model: str, effort: str, expected: dict[str, Any]) -> None:
    """reasoning_effort is a thinking budget on Gemini 2.x, a thinking level later."""
    out = payload(gemini(), model=model, messages=USER, reasoning_effort=effort)
    assert out["generationConfig"] == {"thinkingConfig": expected}


def test_gemini_pro_cannot_turn_thinking_off() -> None:
    """reasoning_effort 'none' on Gemini 2.5 Pro, which always thinks (a budget of 0 is
    refused there), is a ValidationError listing the efforts it takes."""
    with pytest.raises(errors.ValidationError, match=r"'none' is not one of minimal, low"):
        payload(gemini(), model="gemini-2.5-pro", messages=USER, reasoning_effort="none")


def test_gemini_json_object_and_schema() -> None:
    """response_format sets the JSON mime type, with the schema when there is one."""
    plain = payload(
        gemini(), model="gemini-2.5-flash", messages=USER, response_format={"type": "json_object"}
    )
    assert plain["generationConfig"] == {"responseMimeType": "application/json"}
    typed = payload(gemini(), model="gemini-2.5-flash", messages=USER, response_format=City)
    assert typed["generationConfig"]["responseJsonSchema"]["required"] == ["name", "country"]


# -- provider state --------------------------------------------------------------------------

THINKING = {"type": "thinking", "thinking": "hmm", "signature": "sig-a"}


def assistant_turn(provider: str) -> dict[str, Any]:
    """An answer with a tool call from ``provider``, as to_message() gives it."""
    if provider == "anthropic":
        raw = {
            "content": [
                THINKING,
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
            "stop_reason": "tool_use",
        }
        return normalize_message(raw).to_message()
    raw = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {
                                "id": "fc_1",
                                "name": "get_weather",
                                "args": {"city": "Oslo"},
                            },
                            "thoughtSignature": "sig-g",
                        }
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    return normalize_generate_content(raw).to_message()


def loop(provider: str) -> list[dict[str, Any]]:
    """A tool loop's messages after ``provider`` answered with a call."""
    turn = assistant_turn(provider)
    call_id = turn["tool_calls"][0]["id"]
    return [*USER, turn, {"role": "tool", "tool_call_id": call_id, "content": "Sunny"}]


def test_provider_state_goes_back_to_its_own_provider() -> None:
    """Thinking blocks and thought signatures, and Gemini's own call ids, are replayed."""
    out = payload(anthropic(), model="claude-sonnet-4-5", messages=loop("anthropic"))
    assert out["messages"][1]["content"][0] == THINKING
    out = payload(gemini(), model="gemini-2.5-flash", messages=loop("gemini"))
    call_part = out["contents"][1]["parts"][0]
    assert call_part["thoughtSignature"] == "sig-g"
    assert call_part["functionCall"]["id"] == "fc_1"
    assert out["contents"][2]["parts"][0]["functionResponse"]["id"] == "fc_1"


@pytest.mark.parametrize(
    ("source", "make"),
    [("anthropic", gemini), ("gemini", anthropic), ("anthropic", openai), ("gemini", openai)],
)
def test_provider_state_is_dropped_for_another_provider(source: str, make: Any) -> None:
    """State from one provider never reaches another's wire."""
    out = payload(make(), model="m", messages=loop(source))
    sent = repr(out)
    assert "provider_state" not in sent and "sig-" not in sent


def test_made_up_gemini_call_ids_never_reach_the_api() -> None:
    """A call id the library made up names the call in the loop but is not sent."""
    raw = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "get_weather", "args": {}}}],
                },
                "finishReason": "STOP",
            }
        ]
    }
    turn = normalize_generate_content(raw).to_message()
    call_id = turn["tool_calls"][0]["id"]
    assert call_id.startswith("call_")
    messages = [*USER, turn, {"role": "tool", "tool_call_id": call_id, "content": "Sunny"}]
    out = payload(gemini(), model="gemini-2.5-flash", messages=messages)
    assert "id" not in out["contents"][1]["parts"][0]["functionCall"]
    assert out["contents"][2]["parts"][0]["functionResponse"] == {
        "name": "get_weather",
        "response": {"content": "Sunny"},
    }


@pytest.mark.parametrize(
    ("model", "roles", "user_turn"),
    [
        ("claude-opus-4-8", ["user", "system", "assistant"], "a"),
        (
            "claude-sonnet-4-5",
            ["user", "assistant"],
            [{"type": "text", "text": "a"}, {"type": "text", "text": "Be terse."}],
        ),
    ],
)
def test_anthropic_mid_conversation_system_sits_behind_the_user_turn(
    model: str, roles: list[str], user_turn: Any
) -> None:
    """A later system message goes behind its user turn: inline where the model takes it
    (Claude 4.8 on), as that turn's last text before."""
    messages = [
        {"role": "user", "content": "a"},
        {"role": "system", "content": "Be terse."},
        {"role": "assistant", "content": "b"},
    ]
    out = payload(anthropic(), model=model, messages=messages)
    assert [m["role"] for m in out["messages"]] == roles
    assert out["messages"][0]["content"] == user_turn
    assert "system" not in out


def test_anthropic_system_parts_keep_their_cache_control() -> None:
    """A leading system message's text part with cache_control becomes a system block that
    keeps it (after a native system prompt), instead of text that loses the cache breakpoint."""
    cached = {"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}
    messages = [
        {"role": "system", "content": [cached]},
        {"role": "developer", "content": "Be terse."},
        *USER,
    ]
    out = payload(anthropic(), model="claude-sonnet-4-5", messages=messages, system="Native.")
    assert out["system"] == [
        {"type": "text", "text": "Native."},
        cached,
        {"type": "text", "text": "Be terse."},
    ]
    plain = payload(anthropic(), model="claude-sonnet-4-5", messages=messages[1:])
    assert plain["system"] == "Be terse."


def test_gemini_tool_result_media_follow_the_function_responses() -> None:
    """An image in a tool message goes in a user turn behind the turn of function responses
    (every result still in that one turn), instead of being dropped for its text."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": "snap", "arguments": "{}"}}
        for i in (1, 2)
    ]
    messages = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "a"}, image]},
        {"role": "tool", "tool_call_id": "c2", "content": "b"},
        {"role": "user", "content": "Compare them."},
    ]
    contents = payload(gemini(), model="gemini-2.5-flash", messages=messages)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "user", "user"]
    assert [p["functionResponse"]["response"] for p in contents[2]["parts"]] == [
        {"content": "a"},
        {"content": "b"},
    ]
    assert contents[3]["parts"] == [{"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}}]
    assert contents[4]["parts"] == [{"text": "Compare them."}]


@pytest.mark.parametrize("make", [anthropic, gemini])
def test_assistant_refusal_part_is_sent_as_text(make: Any) -> None:
    """An assistant content part of type refusal (as OpenAI writes a refusal) is sent as text,
    not as a part the provider does not know."""
    refusal = {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]}
    messages = [*USER, refusal, {"role": "user", "content": "Why?"}]
    out = payload(make(), model="m-1", messages=messages)
    if make is anthropic:
        assert out["messages"][1]["content"] == [{"type": "text", "text": "I can't."}]
    else:
        assert out["contents"][1] == {"role": "model", "parts": [{"text": "I can't."}]}


@pytest.mark.parametrize("make", [anthropic, gemini])
@pytest.mark.parametrize(
    ("request_part", "named"),
    [
        ({"stop": 5}, "stop"),
        ({"messages": [*USER, {"role": "assistant", "tool_calls": {"id": "c1"}}]}, "tool_calls"),
        ({"messages": [*USER, {"role": "assistant", "tool_calls": ["c1"]}]}, "tool_calls"),
        ({"messages": [{"role": "user", "content": [{"type": "file", "file": "a.pdf"}]}]}, "file"),
    ],
)
def test_malformed_canonical_fields_are_validation_errors(
    make: Any, request_part: dict[str, Any], named: str
) -> None:
    """A canonical field of the wrong shape is a ValidationError naming it, never a bare
    TypeError or AttributeError out of the translation."""
    request = {"model": "m-1", "messages": USER, **request_part}
    with pytest.raises(errors.ValidationError, match=rf"\b{named}\b must be"):
        payload(make(), **request)


@pytest.mark.parametrize(
    ("make", "choice"),
    [(anthropic, "any"), (gemini, "any"), (gemini, {"type": "any"})],
)
def test_a_tool_choice_of_no_known_form_is_named_with_its_value(make: Any, choice: Any) -> None:
    """A tool_choice the translation cannot read is a ValidationError that shows the value,
    not 'unknown parameter tool_choice' or a complaint about its type."""
    with pytest.raises(errors.ValidationError, match=r"tool_choice.*'any'"):
        payload(make(), model="m-1", messages=USER, tools=[WEATHER], tool_choice=choice)


@pytest.mark.parametrize("make", [anthropic, gemini])
def test_a_speaker_name_is_refused_where_the_api_has_none(make: Any) -> None:
    """A message's name (who speaks) has no field in the Messages or Gemini API: a
    ValidationError naming the message, not a name silently left out."""
    messages = [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Yo", "name": "bo"}]
    with pytest.raises(errors.ValidationError, match=rf"messages\[1\]\.name.*{make().provider}"):
        payload(make(), model="m-1", messages=messages)


class Reading(BaseModel):
    """A bounded reading, with a field named like a schema keyword."""

    minimum: int = Field(ge=0, le=100, description="Lowest value.")
    tags: list[str] = Field(min_length=2)


def test_anthropic_constrained_decoding_gets_no_limits_it_cannot_enforce() -> None:
    """Native structured output and strict tools carry no minimum, maximum or minItems above
    1 (the API refuses them there): they move into the description; a forced tool keeps them."""
    strict_tool = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    strict_tool["function"]["parameters"] = Reading.model_json_schema()
    native = payload(
        anthropic(),
        model="claude-sonnet-4-5",
        messages=USER,
        response_format=Reading,
        tools=[strict_tool],
    )
    for schema in (native["output_config"]["format"]["schema"], native["tools"][0]["input_schema"]):
        field = schema["properties"]["minimum"]
        assert "minimum" not in field and "maximum" not in field
        assert field["description"] == "Lowest value.\n\n{maximum: 100, minimum: 0}"
        assert "minItems" not in schema["properties"]["tags"]
        assert schema["properties"]["tags"]["description"] == "{minItems: 2}"
    old = payload(
        anthropic(), model="claude-3-7-sonnet-latest", messages=USER, response_format=Reading
    )
    kept = old["tools"][-1]["input_schema"]["properties"]["minimum"]
    assert (kept["minimum"], kept["maximum"]) == (0, 100)


def test_anthropic_tool_keeps_its_cache_control() -> None:
    """A cache_control beside a function tool's function (a cache breakpoint after the tools)
    goes on the Messages API tool, not lost with the OpenAI wrapper."""
    cached = {**WEATHER, "cache_control": {"type": "ephemeral"}}
    out = payload(anthropic(), model="claude-sonnet-4-5", messages=USER, tools=[WEATHER, cached])
    assert "cache_control" not in out["tools"][0]
    assert out["tools"][1]["cache_control"] == {"type": "ephemeral"}
