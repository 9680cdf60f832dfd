"""Prompt-size estimates used for token-bucket reservations."""

from __future__ import annotations

from lionpride.services.utilities.tokens import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD,
    estimate_prompt_tokens,
    estimate_text_tokens,
)


def test_text_is_a_quarter_of_its_characters_rounded_up() -> None:
    """One token per four characters, rounded up, so the estimate never falls short."""
    assert [estimate_text_tokens("x" * n) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]


def test_plain_and_structured_messages_count_the_same_text() -> None:
    """A string content and the same text as a text part estimate alike (plus framing)."""
    plain = {"messages": [{"role": "user", "content": "a" * 40}]}
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a" * 40}]}]}
    assert estimate_prompt_tokens(plain) == estimate_prompt_tokens(parts) == MESSAGE_OVERHEAD + 10


def test_images_cost_a_flat_amount_not_their_base64_length() -> None:
    """An inline image costs IMAGE_TOKENS whatever the size of its data."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    payload = {"messages": [{"role": "user", "content": [image]}]}
    assert estimate_prompt_tokens(payload) == MESSAGE_OVERHEAD + IMAGE_TOKENS


def test_system_tools_and_gemini_contents_are_counted() -> None:
    """Anthropic system prompts, tool schemas and Gemini contents all add to the estimate."""
    base = {"messages": [{"role": "user", "content": "hi"}]}
    with_system = {**base, "system": "s" * 80}
    assert estimate_prompt_tokens(with_system) == estimate_prompt_tokens(base) + 20
    tools = [{"name": "get_weather", "description": "d" * 40, "input_schema": {"type": "object"}}]
    assert estimate_prompt_tokens({**base, "tools": tools}) > estimate_prompt_tokens(base)
    gemini = {"contents": [{"role": "user", "parts": [{"text": "g" * 12}]}]}
    assert estimate_prompt_tokens(gemini) == MESSAGE_OVERHEAD + 3


def test_extra_message_fields_take_the_general_path() -> None:
    """A message with more than role and content (a tool call's arguments) is walked fully."""
    message = {
        "role": "assistant",
        "content": "ok",
        "tool_calls": [{"function": {"name": "f", "arguments": "x" * 40}}],
    }
    assert estimate_prompt_tokens({"messages": [message]}) >= MESSAGE_OVERHEAD + 1 + 10


def test_messages_and_contents_are_each_framed_when_both_are_there() -> None:
    """Both lists are walked as messages (framing per entry); anything else beside them isn't."""
    both = {
        "messages": [{"role": "user", "content": "hello world"}],
        "contents": [{"role": "user", "parts": [{"text": "hi there"}]}],
    }
    assert estimate_prompt_tokens(both) == (MESSAGE_OVERHEAD + 3) + (MESSAGE_OVERHEAD + 2)
    no_messages = {"messages": None, "contents": both["contents"]}
    assert estimate_prompt_tokens(no_messages) == MESSAGE_OVERHEAD + 2
    stray = {"messages": both["messages"], "contents": "some text here"}
    assert estimate_prompt_tokens(stray) == MESSAGE_OVERHEAD + 3


def test_subclasses_of_dict_and_str_take_the_plain_path() -> None:
    """A dict or str subclass counts as the plain message it is (only the content)."""
    from collections import OrderedDict

    class Text(str):
        pass

    ordered = {"messages": [OrderedDict(content="abc", text="defghijk")]}
    assert estimate_prompt_tokens(ordered) == MESSAGE_OVERHEAD + 1
    named = {"messages": [{"name": "bobby", "content": Text("abc")}]}
    assert estimate_prompt_tokens(named) == MESSAGE_OVERHEAD + 1
