"""Assembles Gemini ``streamGenerateContent?alt=sse`` streams.

Every event is a whole ``GenerateContentResponse``. Text parts are split anywhere and are
appended (``thought`` parts go to reasoning); ``functionCall`` parts are never split and each
becomes one tool call (and one ``tool_call_delta`` chunk holding the whole call).
``usageMetadata`` is cumulative, so the last chunk's wins, and the finish reason is the last
one sent. There is no end marker: the stream ends at end of body, so
:attr:`GeminiStreamAssembler.done` stays False, and a body that ends before any chunk carried a
``finishReason`` (or a blocked prompt's ``promptFeedback``) was cut short. An ``error`` object
in a chunk raises the typed error from :meth:`GeminiStreamAssembler.feed`.

The finished stream is rebuilt into the equivalent plain response and handed to
:func:`~lionpride.services.providers.gemini.normalize_generate_content`, so a streamed and a
plain reply normalize identically.
"""

from __future__ import annotations

import json
from typing import Any

from lionpride import errors
from lionpride.services.providers.common import decode_object, incomplete_stream
from lionpride.services.providers.gemini._normalize import (
    made_up_call_id,
    normalize_generate_content,
)
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.streaming.sse import SSEEvent
from lionpride.services.types.endpoint import StreamAssembler
from lionpride.services.types.response import NormalizedResponse

__all__ = ["GeminiStreamAssembler"]


class GeminiStreamAssembler(StreamAssembler):
    """Turns streamed GenerateContentResponse chunks into chunks and one response."""

    __slots__ = (
        "_calls", "_candidate", "_finish", "_last", "_made_up", "_reasoning", "_signature",
        "_text", "_usage",
    )  # fmt: skip

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[dict[str, Any]] = []
        self._usage: dict[str, Any] | None = None
        self._finish: str | None = None
        # The latest chunk and candidate: ids, model version, safety ratings, ...
        self._last: dict[str, Any] | None = None
        self._candidate: dict[str, Any] = {}
        self._made_up: set[str] = set()  # call ids made up here (the API gave none)
        self._signature: str | None = None  # the thought signature of the answer's text

    def feed(self, event: SSEEvent) -> list[StreamChunk]:
        """Consume one chunk; return its text, thought and function-call chunks.

        Raises:
            APIStatusError: The typed error of a chunk holding an ``error`` object.
            InvalidResponseError: An event whose data is not a JSON object.
        """
        obj = decode_object(event.data, "gemini")
        if obj.get("error") is not None:
            _raise(obj)
        self._last = obj
        usage = obj.get("usageMetadata")
        if usage is not None:
            self._usage = usage
        candidates = obj.get("candidates")
        if not candidates:
            return []
        candidate = candidates[0]
        self._candidate = candidate
        finish = candidate.get("finishReason")
        if finish:
            self._finish = finish
        parts = (candidate.get("content") or {}).get("parts")
        if not parts:
            return []
        if len(parts) == 1 and "thoughtSignature" not in parts[0]:
            # The usual chunk: one text part.
            text = parts[0].get("text")
            if text and not parts[0].get("thought"):
                self._text.append(text)
                return [StreamChunk(text)]
        return self._parts(parts)

    def _parts(self, parts: list[dict[str, Any]]) -> list[StreamChunk]:
        """Thought parts, function calls, or several parts in one chunk."""
        out: list[StreamChunk] = []
        for part in parts:
            call = part.get("functionCall")
            if call is not None:
                index = len(self._calls)
                if not call.get("id"):
                    # Made up now, so that the delta and the final response name it alike.
                    call = {**call, "id": made_up_call_id()}
                    part = {**part, "functionCall": call}
                    self._made_up.add(call["id"])
                self._calls.append(part)
                delta = {
                    "index": index,
                    "id": call["id"],
                    "name": call.get("name"),
                    "arguments": json.dumps(call.get("args") or {}),
                }
                out.append(StreamChunk(tool_call_delta=delta))
                continue
            if part.get("thoughtSignature") and not part.get("thought"):
                self._signature = part["thoughtSignature"]
            text = part.get("text")
            if not text:
                continue
            if part.get("thought"):
                self._reasoning.append(text)
                out.append(StreamChunk(reasoning=text))
            else:
                self._text.append(text)
                out.append(StreamChunk(text))
        return out

    def body(self) -> dict[str, Any]:
        """The plain GenerateContentResponse equivalent to everything fed so far."""
        parts: list[dict[str, Any]] = []
        if self._reasoning:
            parts.append({"text": "".join(self._reasoning), "thought": True})
        if self._text or self._signature:
            text: dict[str, Any] = {"text": "".join(self._text)}
            if self._signature:
                text["thoughtSignature"] = self._signature
            parts.append(text)
        parts += self._calls
        content: dict[str, Any] = {"role": "model"}
        if parts:
            content["parts"] = parts
        candidate = {**self._candidate, "content": content}
        candidate.pop("finishReason", None)
        if self._finish is not None:
            candidate["finishReason"] = self._finish
        body = {k: v for k, v in (self._last or {}).items() if k != "usageMetadata"}
        body["candidates"] = [candidate]
        if self._usage is not None:
            body["usageMetadata"] = self._usage
        return body

    def finish(self) -> NormalizedResponse:
        """Assemble the response, normalized exactly like a plain reply.

        Raises:
            ConnectionError: The body ended before a chunk with a finish reason (or a
                ``promptFeedback.blockReason``) arrived: a stream cut short must not pass
                for a whole one.
        """
        if self._last is None:
            raise incomplete_stream("gemini", "its first chunk")
        if self._finish is None and not (self._last.get("promptFeedback") or {}).get("blockReason"):
            raise incomplete_stream("gemini", "a finishReason")
        return normalize_generate_content(self.body(), frozenset(self._made_up))


def _raise(obj: dict[str, Any]) -> None:
    """Raise the typed error a chunk's ``error`` object carries."""
    err = obj["error"]
    info = err if isinstance(err, dict) else {"message": str(err)}
    code = info.get("code")
    status = code if isinstance(code, int) and code >= 400 else 500
    raise errors.error_for_status(
        status, str(info.get("message") or info), body=obj, provider="gemini"
    )
