"""Assembles OpenAI Responses streams: typed events, no ``[DONE]``.

Every event's data names its ``type``. Text arrives in ``response.output_text.delta``,
reasoning summaries in ``response.reasoning_summary_text.delta``, a function call opens with
``response.output_item.added`` (name and ``call_id``, empty arguments) and continues in
``response.function_call_arguments.delta`` events addressed by ``output_index``. The stream
ends with ``response.completed``, ``response.incomplete`` or ``response.failed``, whose
``response`` is the whole answer: it is normalized by
:func:`~lionpride.services.providers.oai_responses.normalize_responses`, so a streamed and a
plain reply give the same response. Other events (``response.created``, ``response.queued``,
web-search progress, annotations, ...) carry nothing to yield. An ``error`` event, or a
``response.failed``, raises the typed error.
"""

from __future__ import annotations

from typing import Any

from lionpride.services.providers.common import decode_object, incomplete_stream
from lionpride.services.providers.oai_responses._normalize import normalize_responses
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.streaming.sse import SSEEvent
from lionpride.services.types.endpoint import StreamAssembler
from lionpride.services.types.response import NormalizedResponse

__all__ = ["ResponsesStreamAssembler"]

_TEXT = "response.output_text.delta"
_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesStreamAssembler(StreamAssembler):
    """Turns typed Responses events into :class:`StreamChunk` objects and one response.

    Args:
        provider: The provider's name, used in errors and passed to the normalizer.
    """

    __slots__ = ("_calls", "_final", "_items", "provider")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        #: ``output_index`` of each function call → (its tool-call index, call_id, name).
        self._calls: dict[int, tuple[int, str | None, str]] = {}
        #: Finished items by ``output_index``, for a final response that lists none.
        self._items: dict[int, dict[str, Any]] = {}
        self._final: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """True once a final event (completed, incomplete, failed) arrived."""
        return self._final is not None

    def feed(self, event: SSEEvent) -> list[StreamChunk]:
        """Consume one event; return the text, reasoning or tool-call chunk it carries.

        Raises:
            APIStatusError: The typed error of an ``error`` event or a failed response.
            InvalidResponseError: An event whose data is not a JSON object.
        """
        if self._final is not None:
            return []
        obj = decode_object(event.data, self.provider)
        kind = obj.get("type")
        if kind == _TEXT:
            delta = obj.get("delta")
            return [StreamChunk(delta)] if delta else []
        if kind == "response.function_call_arguments.delta":
            return self._arguments(obj)
        if kind == "response.reasoning_summary_text.delta":
            delta = obj.get("delta")
            return [StreamChunk(reasoning=delta)] if delta else []
        if kind == "response.output_item.added":
            return self._added(obj)
        if kind == "response.output_item.done":
            item = obj.get("item")
            if isinstance(item, dict):
                self._items[obj.get("output_index", len(self._items))] = item
        elif kind in _FINAL:
            self._final = obj.get("response") or {}
            if kind == "response.failed":
                normalize_responses({**self._final, "status": "failed"}, self.provider)
        elif kind == "error" or event.event == "error":
            self._raise(obj)
        return []

    def _added(self, obj: dict[str, Any]) -> list[StreamChunk]:
        """A new output item: a function call opens with its name and ``call_id``."""
        item = obj.get("item") or {}
        if item.get("type") != "function_call":
            return []
        index = len(self._calls)
        call_id, name = item.get("call_id"), item.get("name") or ""
        self._calls[obj.get("output_index", index)] = (index, call_id, name)
        arguments = item.get("arguments") or ""
        delta = {"index": index, "id": call_id, "name": name, "arguments": arguments}
        return [StreamChunk(tool_call_delta=delta)]

    def _arguments(self, obj: dict[str, Any]) -> list[StreamChunk]:
        fragment = obj.get("delta") or ""
        known = self._calls.get(obj.get("output_index", -1))
        if not fragment or known is None:
            return []
        index, call_id, name = known
        delta = {"index": index, "id": call_id, "name": name, "arguments": fragment}
        return [StreamChunk(tool_call_delta=delta)]

    def _raise(self, obj: dict[str, Any]) -> None:
        """Raise the typed error an ``error`` event carries (its fields, or under ``error``)."""
        info = obj.get("error") if isinstance(obj.get("error"), dict) else obj
        normalize_responses({"status": "failed", "error": info}, self.provider)

    def finish(self) -> NormalizedResponse:
        """The final event's response, normalized like a plain reply.

        Raises:
            ConnectionError: The stream ended before its final event.
        """
        final = self._final
        if final is None:
            raise incomplete_stream(self.provider, "response.completed")
        if not final.get("output") and self._items:
            final = {**final, "output": [self._items[i] for i in sorted(self._items)]}
        return normalize_responses(final, self.provider)
