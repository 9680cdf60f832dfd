"""Prompt-size estimates for token-bucket reservations.

The default estimate is deliberately an upper bound that costs almost nothing: one token per
four characters of text (rounded up per string) plus a few tokens of framing per message, and a
flat cost per image or document instead of the length of its base64 data. Reservations are
reconciled with the provider's real ``usage`` after the call, so erring high only delays
calls briefly; it never overruns the provider's meter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["IMAGE_TOKENS", "MESSAGE_OVERHEAD", "estimate_prompt_tokens", "estimate_text_tokens"]

#: Flat reservation per image, audio or document block.
IMAGE_TOKENS = 1600
#: Framing tokens per message (role markers and separators).
MESSAGE_OVERHEAD = 4

#: Keys whose string value is prompt text (``output``: a Responses function call's result).
_TEXT_KEYS = ("text", "content", "system", "input", "prompt", "arguments", "thinking", "output")
#: Prompt parts besides the messages, in any provider's format.
_OTHER_PARTS = frozenset(
    {"system", "systemInstruction", "prompt", "input", "instructions", "tools"}
)
_BLOB_TYPES = frozenset({"image", "image_url", "input_image", "document", "file", "input_audio"})


def estimate_text_tokens(text: str) -> int:
    """Upper-bound token count of one string (characters / 4, rounded up)."""
    return (len(text) + 3) // 4


def estimate_prompt_tokens(
    payload: dict[str, Any], count_text: Callable[[str], int] | None = None
) -> int:
    """Estimate the prompt tokens of a request in any supported provider format.

    Args:
        payload: The request.
        count_text: Counts one string's tokens (a tiktoken ``TokenCalculator.count_text``);
            the character heuristic when omitted.
    """
    count = count_text or estimate_text_tokens
    total = 0
    # OpenAI's and Anthropic's messages, Gemini's contents: each message is framed.
    for key in ("messages", "contents"):
        messages = payload.get(key)
        if isinstance(messages, list):
            total += MESSAGE_OVERHEAD * len(messages)
            for message in messages:
                # The common case, a message whose content is one string, without recursion.
                content = message.get("content") if isinstance(message, dict) else None
                if isinstance(content, str) and len(message) <= 2:
                    total += count(content)
                else:
                    total += _walk(message, count)
    if not _OTHER_PARTS.isdisjoint(payload):
        for key in _OTHER_PARTS.intersection(payload):
            total += _walk(payload[key], count)
    return total


def _walk(node: Any, count: Callable[[str], int]) -> int:
    if isinstance(node, str):
        return count(node)
    if isinstance(node, list):
        return sum(_walk(item, count) for item in node)
    if isinstance(node, dict):
        kind = node.get("type")
        if kind in _BLOB_TYPES or "inline_data" in node or "inlineData" in node:
            return IMAGE_TOKENS
        total = 0
        for key, value in node.items():
            if key in _TEXT_KEYS or isinstance(value, list | dict):
                total += _walk(value, count)
            elif key in ("name", "description") and isinstance(value, str):
                total += count(value)
        return total
    return 0
