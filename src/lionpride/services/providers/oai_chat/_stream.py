"""Assembles OpenAI-style chat-completion streams (OpenAI, Groq, OpenRouter, vLLM, ...).

Every event is ``data: {chunk}``; ``data: [DONE]`` ends the stream. Text, reasoning and
tool-call fragments arrive in ``choices[0].delta``; tool-call fragments are joined by their
``index`` (the first carries ``id`` and ``name``, later ones only ``arguments``). Usage comes in
whichever chunk has a non-null ``usage`` (OpenAI's final ``choices: []`` chunk, Groq's finish
chunk, or Groq's ``x_groq.usage``). Errors delivered inside the 200 stream (Groq's ``event:
error``, OpenRouter's ``error`` field) raise the typed error from :meth:`feed`.

The finished stream is turned into the equivalent non-streamed body and handed to
:func:`~lionpride.services.providers.oai_chat.normalize_chat_completion`, so a streamed and a
plain reply normalize identically.
"""

from __future__ import annotations

from typing import Any

from lionpride.services.providers.common import decode_object, incomplete_stream
from lionpride.services.providers.oai_chat._normalize import (
    normalize_chat_completion,
    raise_body_error,
)
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.streaming.sse import SSEEvent
from lionpride.services.types.endpoint import StreamAssembler
from lionpride.services.types.response import NormalizedResponse

__all__ = ["ChatStreamAssembler"]

#: Top-level chunk keys a plain chat completion also has (copied into the assembled body).
_HEAD_KEYS = ("id", "created", "model", "system_fingerprint", "service_tier")


class _ToolCall:
    """One streamed tool call: id and name from the first fragment, arguments joined."""

    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str = ""
        self.arguments: list[str] = []


class ChatStreamAssembler(StreamAssembler):
    """Turns chat-completion chunks into :class:`StreamChunk` objects and one response.

    Args:
        provider: The provider's name, used in errors and passed to the normalizer.
    """

    __slots__ = (
        "_calls",
        "_finish",
        "_first",
        "_last",
        "_reasoning",
        "_refusal",
        "_text",
        "_usage",
        "done",
        "provider",
    )

    #: True once ``[DONE]`` arrived.
    done: bool

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._refusal: list[str] = []
        self._calls: dict[int, _ToolCall] = {}
        self._usage: dict[str, Any] | None = None
        self._finish: str | None = None
        # The first and latest chunk objects: their ids and model fill the assembled body.
        self._first: dict[str, Any] | None = None
        self._last: dict[str, Any] | None = None
        self.done = False

    def feed(self, event: SSEEvent) -> list[StreamChunk]:
        """Consume one event; return the text, reasoning or tool-call chunk it carries.

        Raises:
            APIStatusError: The typed error for an error event or an ``error`` field.
            InvalidResponseError: An event whose data is not a JSON object.
        """
        data = event.data
        if data == "[DONE]" or self.done:
            # Anything after [DONE] (read in the same piece) is not part of the reply.
            self.done = True
            return []
        obj = decode_object(data, self.provider)
        if event.event == "error" or ("error" in obj and obj["error"] is not None):
            self._raise(obj)
        if self._first is None:
            self._first = obj
        self._last = obj
        usage = obj.get("usage")
        if usage is None and "x_groq" in obj:
            usage = (obj["x_groq"] or {}).get("usage")
        if usage:
            self._usage = usage
        choices = obj.get("choices")
        if not choices:
            return []
        choice = choices[0]
        if choice.get("index", 0) != 0:
            # n > 1: the response (like the plain normalizer) follows the first choice only.
            choice = next((c for c in choices if c.get("index", 0) == 0), None)
            if choice is None:
                return []
        finish = choice.get("finish_reason")
        if finish:
            self._finish = finish
        delta = choice.get("delta")
        if not delta:
            return []
        if len(delta) == 1:
            # The hot path: a delta holding only a piece of text.
            content = delta.get("content")
            if content and content.__class__ is str:
                self._text.append(content)
                return [StreamChunk(content)]
        return self._slow_delta(delta)

    def _slow_delta(self, delta: dict[str, Any]) -> list[StreamChunk]:
        """A delta with several keys: role, reasoning, tool-call fragments, refusal, ..."""
        out: list[StreamChunk] = []
        content = delta.get("content")
        reasoning = delta.get("reasoning") or delta.get("reasoning_content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        elif not isinstance(content, str):
            content = ""
        if not isinstance(reasoning, str):
            reasoning = ""
        if content:
            self._text.append(content)
        if reasoning:
            self._reasoning.append(reasoning)
        if content or reasoning:
            out.append(StreamChunk(content, reasoning=reasoning))
        refusal = delta.get("refusal")
        if refusal:
            self._refusal.append(refusal)
            out.append(StreamChunk(metadata={"refusal": refusal}))
        for fragment in delta.get("tool_calls") or ():
            index = fragment.get("index", len(self._calls))
            call = self._calls.get(index)
            if call is None:
                call = self._calls[index] = _ToolCall()
            if fragment.get("id"):
                call.id = fragment["id"]
            fn = fragment.get("function") or {}
            if fn.get("name") and not call.name:
                call.name = fn["name"]
            args = fn.get("arguments") or ""
            if args:
                call.arguments.append(args)
            out.append(
                StreamChunk(
                    tool_call_delta={
                        "index": index,
                        "id": call.id,
                        "name": call.name,
                        "arguments": args,
                    }
                )
            )
        return out

    def _raise(self, obj: dict[str, Any]) -> None:
        """Raise the typed error an error event or ``error`` field carries."""
        if obj.get("error") is None:
            # An error event whose data is the error object itself.
            obj = {"error": obj}
        raise_body_error(obj, self.provider)

    def body(self) -> dict[str, Any]:
        """The plain chat completion equivalent to everything fed so far."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._text)}
        if self._calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": "".join(call.arguments)},
                }
                for _, call in sorted(self._calls.items())
            ]
        if self._reasoning:
            message["reasoning"] = "".join(self._reasoning)
        if self._refusal:
            message["refusal"] = "".join(self._refusal)
        first, last = self._first or {}, self._last or {}
        body: dict[str, Any] = {"object": "chat.completion"}
        for key in _HEAD_KEYS:
            value = first.get(key)
            if value is None:
                value = last.get(key)
            if value is not None:
                body[key] = value
        body["choices"] = [{"index": 0, "message": message, "finish_reason": self._finish}]
        body["usage"] = self._usage
        return body

    def finish(self) -> NormalizedResponse:
        """Assemble the response, normalized exactly like a plain reply.

        Raises:
            ConnectionError: The body ended with neither ``[DONE]`` nor a finish reason.
        """
        if not self.done and self._finish is None:
            raise incomplete_stream(self.provider, "[DONE] or a finish_reason")
        return normalize_chat_completion(self.body(), self.provider)
