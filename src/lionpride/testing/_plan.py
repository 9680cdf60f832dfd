"""What a generated reply says, decided from the request alone.

The FakeProvider reads a request (model, prompt text, output limit, stream flags) and settles
the reply's text, tool calls, finish reason and token counts in a :class:`Plan`;
:mod:`lionpride.testing._wire_formats` then writes the plan in the provider's format.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DEFAULT_SENTENCE",
    "Format",
    "Plan",
    "arguments_json",
    "content_type",
    "detect_format",
    "gemini_model",
    "make_plan",
    "split_sse_events",
    "split_text",
    "tool_call_tokens",
]

Format = Literal["openai", "anthropic", "gemini"]

DEFAULT_SENTENCE = (
    "Hello from FakeProvider, a local stand-in that speaks the OpenAI, Anthropic and Gemini "
    "wire formats."
)

_WORD = re.compile(r"\s*\S+")
_SSE_EVENT_END = re.compile(r"\r\n\r\n|\n\n|\r\r")

_FINISH: dict[Format, tuple[str, str, str]] = {
    # (plain stop, tool calls, max tokens reached)
    "openai": ("stop", "tool_calls", "length"),
    "anthropic": ("end_turn", "tool_use", "max_tokens"),
    "gemini": ("STOP", "STOP", "MAX_TOKENS"),
}


def detect_format(path: str) -> Format | None:
    """Tell the wire format from a request path (without query), or ``None``."""
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith((":generateContent", ":streamGenerateContent")):
        return "gemini"
    return None


def gemini_model(path: str) -> str:
    """The model a Gemini path names: ``.../models/{model}:generateContent``."""
    return path.rsplit("/", 1)[-1].split(":", 1)[0]


def content_type(fmt: Format, *, stream: bool, error: bool = False) -> str:
    """The content type each service sends for a body of this kind."""
    if stream and not error:
        return "text/event-stream"
    return "application/json; charset=UTF-8" if fmt == "gemini" else "application/json"


@dataclass(slots=True)
class Plan:
    """What one generated reply says, independent of how it is written."""

    fmt: Format
    model: str
    seq: int
    text: str
    pieces: list[str]
    tool_calls: list[dict[str, Any]]
    truncated: bool
    input_tokens: int
    output_tokens: int
    usage_override: dict[str, Any] | None
    stream: bool
    sse: bool
    include_usage: bool

    @property
    def finish_reason(self) -> str:
        """The native finish reason."""
        stop, tools, length = _FINISH[self.fmt]
        if self.truncated:
            return length
        return tools if self.tool_calls else stop

    def prompt_details(self) -> list[dict[str, Any]]:
        """Gemini's ``promptTokensDetails``: the prompt's tokens by modality (all text here)."""
        return [{"modality": "TEXT", "tokenCount": self.input_tokens}]

    def usage(self) -> dict[str, Any]:
        """The final usage in the provider's native shape, with any override applied."""
        total = self.input_tokens + self.output_tokens
        native: dict[str, Any]
        if self.fmt == "openai":
            native = {
                "prompt_tokens": self.input_tokens,
                "completion_tokens": self.output_tokens,
                "total_tokens": total,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            }
        elif self.fmt == "anthropic":
            native = {
                "input_tokens": self.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": self.output_tokens,
                "service_tier": "standard",
            }
        else:
            native = {
                "promptTokenCount": self.input_tokens,
                "candidatesTokenCount": self.output_tokens,
                "totalTokenCount": total,
                "promptTokensDetails": self.prompt_details(),
            }
        if self.usage_override:
            native.update(self.usage_override)
        return native


def make_plan(
    fmt: Format,
    *,
    path: str,
    sse_requested: bool,
    body: Any,
    text: str,
    tool_calls: list[dict[str, Any]] | None,
    usage: dict[str, Any] | None,
    stream_chunks: int,
    seq: int,
) -> Plan:
    """Decide the reply to ``body``: text cut to the output limit, tokens, stream mode.

    Args:
        fmt: The wire format.
        path: The request path without query (Gemini names the model there).
        sse_requested: Whether the query asked for ``alt=sse`` (Gemini only).
        body: The parsed request body (anything that is not a dict counts as empty).
        text: The reply text before the output limit is applied.
        tool_calls: ``[{"name": ..., "arguments": {...}}]`` to put in the reply.
        usage: Provider-native usage numbers that replace the computed ones.
        stream_chunks: How many pieces to stream the text in.
        seq: The reply's sequence number, used in its ids.
    """
    request = body if isinstance(body, dict) else {}
    calls = list(tool_calls or ())
    limit = _output_limit(fmt, request)
    words = _WORD.findall(text)
    truncated = limit is not None and len(words) > limit
    if truncated:
        text = "".join(words[: max(0, limit or 0)])
    output_tokens = len(text.split()) + sum(tool_call_tokens(call) for call in calls)
    if fmt == "gemini":
        model = gemini_model(path)
        stream = path.endswith(":streamGenerateContent")
    else:
        model = str(request.get("model", "fake-model"))
        stream = request.get("stream") is True
    options = request.get("stream_options")
    return Plan(
        fmt=fmt,
        model=model,
        seq=seq,
        text=text,
        pieces=split_text(text, stream_chunks),
        tool_calls=calls,
        truncated=truncated,
        input_tokens=math.ceil(_input_chars(fmt, request) / 4),
        output_tokens=output_tokens,
        usage_override=usage,
        stream=stream,
        sse=stream and (fmt != "gemini" or sse_requested),
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )


def split_text(text: str, parts: int) -> list[str]:
    """Split ``text`` into at most ``parts`` pieces whose concatenation is ``text``.

    Pieces break between words when there are enough words, else between characters.
    """
    if not text:
        return []
    units: list[str] = _WORD.findall(text)
    if units:
        units[-1] += text[sum(map(len, units)) :]
    if len(units) < parts:
        units = list(text)
    count = max(1, min(parts, len(units)))
    bounds = [len(units) * i // count for i in range(count + 1)]
    return ["".join(units[bounds[i] : bounds[i + 1]]) for i in range(count)]


def split_sse_events(body: str) -> list[str]:
    """Split a raw SSE body after each blank line, keeping every byte (separators included)."""
    pieces: list[str] = []
    start = 0
    for match in _SSE_EVENT_END.finditer(body):
        pieces.append(body[start : match.end()])
        start = match.end()
    if start < len(body):
        pieces.append(body[start:])
    return pieces


def _output_limit(fmt: Format, request: dict[str, Any]) -> int | None:
    if fmt == "gemini":
        config = request.get("generationConfig")
        value = config.get("maxOutputTokens") if isinstance(config, dict) else None
    elif fmt == "openai":
        value = request.get("max_completion_tokens", request.get("max_tokens"))
    else:
        value = request.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _input_chars(fmt: Format, request: dict[str, Any]) -> int:
    """Characters of text in the prompt: strings and text parts only."""
    if fmt == "gemini":
        system = request.get("systemInstruction")
        turns = [system] if isinstance(system, dict) else []
        contents = request.get("contents")
        turns += contents if isinstance(contents, list) else []
        return sum(_text_chars(t.get("parts")) for t in turns if isinstance(t, dict))
    messages = request.get("messages")
    total = _text_chars(request.get("system")) if fmt == "anthropic" else 0
    if isinstance(messages, list):
        total += sum(_text_chars(m.get("content")) for m in messages if isinstance(m, dict))
    return total


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        return 0
    return sum(
        len(part["text"])
        for part in content
        if isinstance(part, dict)
        and isinstance(part.get("text"), str)
        and part.get("type", "text") == "text"
    )


def tool_call_tokens(call: dict[str, Any]) -> int:
    """A rough size of one tool call: a token per four characters of name plus arguments."""
    return math.ceil((len(call["name"]) + len(arguments_json(call))) / 4)


def arguments_json(call: dict[str, Any]) -> str:
    """A tool call's arguments as compact JSON."""
    return json.dumps(call.get("arguments") or {}, separators=(",", ":"))
