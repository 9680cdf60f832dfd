"""Assembles Anthropic Messages streams.

The sequence is ``message_start`` → (``content_block_start`` → ``content_block_delta``* →
``content_block_stop``)+ → ``message_delta`` → ``message_stop``, with ``ping`` events anywhere.
Text deltas become chunk ``content``, thinking deltas chunk ``reasoning``, and the
``input_json_delta`` fragments of a ``tool_use`` block become ``tool_call_delta`` chunks; the
fragments split keys and values anywhere, so a block's input is parsed only at its
``content_block_stop``. ``message_delta`` carries the stop reason and the final cumulative
usage (``message_start``'s output count is a placeholder). An ``event: error`` raises the typed
error from :meth:`MessageStreamAssembler.feed`.

The finished stream is rebuilt into the equivalent message body and handed to
:func:`~lionpride.services.providers.anthropic_messages.normalize_message`, so a streamed and a
plain reply normalize identically.
"""

from __future__ import annotations

from typing import Any

from lionpride import errors
from lionpride.services.providers.anthropic_messages._normalize import (
    ERROR_STATUS,
    normalize_message,
)
from lionpride.services.providers.anthropic_messages._request import STRUCTURED_OUTPUT_TOOL
from lionpride.services.providers.common import decode_object, incomplete_stream, parse_arguments
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.streaming.sse import SSEEvent
from lionpride.services.types.endpoint import StreamAssembler
from lionpride.services.types.response import NormalizedResponse

__all__ = ["MessageStreamAssembler"]

#: Block types whose ``input`` streams as ``input_json_delta`` fragments.
_INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


class _Block:
    """One content block being streamed: the start object and its joined fragments."""

    __slots__ = ("block", "call_index", "closed", "parts", "signature")

    def __init__(self, block: dict[str, Any], call_index: int | None) -> None:
        self.block = block
        self.call_index = call_index
        self.parts: list[str] = []
        self.signature: list[str] = []
        self.closed = False

    def close(self) -> dict[str, Any]:
        """Write the joined fragments into the block (once) and return it."""
        if self.closed:
            return self.block
        self.closed = True
        block = self.block
        kind = block.get("type")
        if kind == "text":
            block["text"] = block.get("text", "") + "".join(self.parts)
        elif kind == "thinking":
            block["thinking"] = block.get("thinking", "") + "".join(self.parts)
            if self.signature:
                block["signature"] = "".join(self.signature)
        elif kind in _INPUT_BLOCKS and self.parts:
            block["input"] = parse_arguments("".join(self.parts))
        return block


class MessageStreamAssembler(StreamAssembler):
    """Turns Messages API stream events into :class:`StreamChunk` objects and one response."""

    __slots__ = ("_blocks", "_calls", "_delta", "_message", "_usage", "done")

    #: True once ``message_stop`` arrived.
    done: bool

    def __init__(self) -> None:
        self._message: dict[str, Any] = {}
        self._blocks: dict[int, _Block] = {}
        self._calls = 0
        self._delta: dict[str, Any] = {}
        self._usage: dict[str, Any] | None = None
        self.done = False

    def feed(self, event: SSEEvent) -> list[StreamChunk]:
        """Consume one event; return the text, thinking or tool-input chunk it carries.

        Raises:
            APIStatusError: The typed error of an ``error`` event.
            InvalidResponseError: An event whose data is not JSON.
        """
        kind = event.event
        if kind == "ping" or self.done:
            # Anything after message_stop (read in the same piece) is not part of the reply.
            return []
        obj = decode_object(event.data, "anthropic")
        kind = obj.get("type", kind)
        if kind == "content_block_delta":
            return self._on_delta(obj)
        if kind == "content_block_start":
            return self._on_start(obj)
        if kind == "content_block_stop":
            return self._on_stop(obj)
        if kind == "message_start":
            self._message = dict(obj.get("message") or {})
        elif kind == "message_delta":
            self._delta.update(obj.get("delta") or {})
            if obj.get("usage"):
                self._usage = obj["usage"]
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            _raise(obj)
        return []

    def _on_start(self, obj: dict[str, Any]) -> list[StreamChunk]:
        block = dict(obj.get("content_block") or {})
        call_index = None
        if block.get("type") == "tool_use" and block.get("name") != STRUCTURED_OUTPUT_TOOL:
            call_index, self._calls = self._calls, self._calls + 1
        self._blocks[obj.get("index", len(self._blocks))] = _Block(block, call_index)
        if call_index is not None:
            delta = {"index": call_index, "id": block.get("id"), "name": block.get("name")}
            return [StreamChunk(tool_call_delta={**delta, "arguments": ""})]
        # Text already in the start object (allowed, not seen so far) is a delta too; the
        # block keeps it, and close() appends the joined deltas to it.
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [StreamChunk(block["text"])]
        if kind == "thinking" and block.get("thinking"):
            return [StreamChunk(reasoning=block["thinking"])]
        return []

    def _on_delta(self, obj: dict[str, Any]) -> list[StreamChunk]:
        delta = obj.get("delta") or {}
        state = self._blocks.get(obj.get("index", -1))
        if state is None:
            raise errors.InvalidResponseError(
                f"anthropic: content_block_delta for unknown block {obj.get('index')!r}",
                status_code=200,
                provider="anthropic",
            )
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text", "")
            state.parts.append(text)
            return [StreamChunk(text)] if text else []
        if kind == "thinking_delta":
            thinking = delta.get("thinking", "")
            state.parts.append(thinking)
            return [StreamChunk(reasoning=thinking)] if thinking else []
        if kind == "input_json_delta":
            fragment = delta.get("partial_json", "")
            if fragment:
                state.parts.append(fragment)
            if state.call_index is None or not fragment:
                # The structured-output tool's input is the answer: its fragments are text.
                structured = state.block.get("name") == STRUCTURED_OUTPUT_TOOL
                return [StreamChunk(fragment)] if structured and fragment else []
            block = state.block
            call = {"index": state.call_index, "id": block.get("id"), "name": block.get("name")}
            return [StreamChunk(tool_call_delta={**call, "arguments": fragment})]
        if kind == "signature_delta":
            signature = delta.get("signature", "")
            state.signature.append(signature)
            return [StreamChunk(metadata={"signature": signature})]
        return []

    def _on_stop(self, obj: dict[str, Any]) -> list[StreamChunk]:
        state = self._blocks.get(obj.get("index", -1))
        if state is None:
            return []
        block = state.close()
        if block.get("type") == "server_tool_use":
            call = {"name": block.get("name"), "arguments": block.get("input")}
            return [StreamChunk(metadata={"server_tool_call": call})]
        return []

    def body(self) -> dict[str, Any]:
        """The plain message body equivalent to everything fed so far."""
        message = {**self._message, **self._delta}
        message["content"] = [self._blocks[i].close() for i in sorted(self._blocks)]
        start_usage = self._message.get("usage")
        if self._usage is None:
            message["usage"] = start_usage
        else:
            # message_delta's usage is final and cumulative; message_start may hold more keys.
            message["usage"] = {**(start_usage or {}), **self._usage}
        return message

    def finish(self) -> NormalizedResponse:
        """Assemble the response, normalized exactly like a plain reply.

        Raises:
            ConnectionError: The body ended with neither ``message_stop`` nor a stop reason.
        """
        if not self.done and not self._delta.get("stop_reason"):
            raise incomplete_stream("anthropic", "message_stop")
        return normalize_message(self.body())


def _raise(obj: dict[str, Any]) -> None:
    """Raise the typed error an ``error`` event carries."""
    err = obj.get("error")
    info = err if isinstance(err, dict) else {"message": str(err or obj)}
    status = ERROR_STATUS.get(str(info.get("type")), 500)
    raise errors.error_for_status(
        status, str(info.get("message") or info), body=obj, provider="anthropic"
    )
