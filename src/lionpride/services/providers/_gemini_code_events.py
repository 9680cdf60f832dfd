"""The events of one Gemini CLI run folded into stream chunks and one response.

The CLI (``--output-format stream-json``) prints ``init`` (session id, model), ``message``
(``role`` user or assistant; assistant text comes as ``delta`` pieces), ``tool_use``
(``tool_name``, ``tool_id``, ``parameters``), ``tool_result`` (``tool_id``, ``status``,
``output`` or ``error``), ``error`` (a warning, or the reason of a failed run) and ``result``
(``status``, ``error``, ``stats`` with the token counts). A failed API call ends with a
``result`` whose ``status`` is ``"error"`` and whose message is ``[API Error: ...]``; the exit
status is the HTTP status mod 256. That becomes the typed error of the status, raised by
:meth:`GeminiCodeRun.finish`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lionpride import errors
from lionpride.errors import GeminiCodeError
from lionpride.services.providers._cli_process import EXIT_STATUS
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.response import NormalizedResponse, Usage

__all__ = ["GeminiCodeError", "GeminiCodeRun"]


#: ``"code": 429`` inside the message (the API's JSON error body, quoted by the CLI).
_STATUS_IN_MESSAGE = re.compile(r'"code"\s*:\s*([45]\d\d)\b')
_RETRY_AFTER = re.compile(r"retry after (\d+(?:\.\d+)?)s\b", re.IGNORECASE)
#: The CLI takes every 404 for an unknown model: it exits 1 and keeps only the API's message
#: ("models/x is not found for API version v1beta", or its own "Model not found").
_NOT_FOUND = re.compile(r"\bnot found\b", re.IGNORECASE)
#: How the CLI words an API it could not reach (0.61.0, Node's fetch failing).
_UNREACHABLE = "fetch failed"


class GeminiCodeRun:
    """Accumulates one run's events into chunks and, at the end, the response.

    Args:
        model: The model the run was asked for (the ``init`` event's wins).
    """

    __slots__ = (
        "delta_open",
        "failures",
        "model",
        "requested_model",
        "result",
        "session_id",
        "texts",
        "tool_results",
        "tool_uses",
        "warnings",
    )

    def __init__(self, model: str | None) -> None:
        self.requested_model = model
        self.session_id: str | None = None
        self.model: str | None = None
        self.texts: list[str] = []
        # Whether the next assistant delta continues the last text (no tool event between).
        self.delta_open = False
        self.tool_uses: list[dict[str, Any]] = []
        self.tool_results: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        # Messages of ``error`` events of severity "error": why a run without an error in
        # its result failed (an empty model response, say).
        self.failures: list[str] = []
        self.result: dict[str, Any] | None = None

    def feed(self, event: dict[str, Any]) -> list[StreamChunk]:
        """Record one event and return the chunks it makes (possibly none)."""
        kind = event.get("type")
        self.session_id = event.get("session_id") or self.session_id
        if kind in ("init", "system"):
            self.session_id = self.session_id or event.get("id")
            self.model = event.get("model") or self.model
            meta = {"event": "system", "session_id": self.session_id, "model": self.model}
            return [StreamChunk(metadata=meta)]
        if (kind == "message" and event.get("role") == "assistant") or kind == "assistant":
            return self._message(event)
        if kind in ("tool_use", "tool_call"):
            return [self._tool_use(event)]
        if kind == "tool_result":
            return [self._tool_result(event)]
        if kind == "error":
            message = str(event.get("message") or "")
            self.warnings.append(message)
            if event.get("severity") == "error":
                self.failures.append(message)
            meta = {"event": "warning", "severity": event.get("severity"), "message": message}
            return [StreamChunk(metadata=meta)]
        if kind in ("result", "response"):
            self.result = event
        return []

    def _message(self, event: dict[str, Any]) -> list[StreamChunk]:
        content = event.get("content")
        if isinstance(content, list):  # content blocks, as SPEC §5.4 allows
            chunks: list[StreamChunk] = []
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    chunks.append(self._tool_use(block))
                elif isinstance(block, dict) and isinstance(block.get("text"), str):
                    chunks += self._text(block["text"], delta=False)
            return chunks
        if not isinstance(content, str):
            return []
        return self._text(content, delta=bool(event.get("delta")))

    def _text(self, text: str, *, delta: bool) -> list[StreamChunk]:
        if not text:
            return []
        if delta and self.delta_open:
            self.texts[-1] += text
        else:
            self.texts.append(text)
        self.delta_open = delta
        return [StreamChunk(content=text, metadata={"event": "text"})]

    def _tool_use(self, event: dict[str, Any]) -> StreamChunk:
        self.delta_open = False
        params = event.get("parameters", event.get("input"))
        use = {
            "id": event.get("tool_id", event.get("id")),
            "name": event.get("tool_name", event.get("name")),
            "input": params,
        }
        delta = {
            "index": len(self.tool_uses),
            "id": use["id"],
            "name": use["name"],
            "arguments": json.dumps(params or {}),
        }
        self.tool_uses.append(use)
        return StreamChunk(tool_call_delta=delta, metadata={"event": "tool_use", "input": params})

    def _tool_result(self, event: dict[str, Any]) -> StreamChunk:
        self.delta_open = False
        error = event.get("error")
        content = event.get("output", event.get("content"))
        failed = event.get("status") == "error" or bool(event.get("is_error"))
        if isinstance(error, dict) and error.get("message") and (failed or content is None):
            # ``output`` of a failed call is a short summary ("File not found."); the
            # message says which file, and why.
            content = error["message"]
        res = {
            "tool_use_id": event.get("tool_id", event.get("tool_use_id")),
            "content": content,
            "is_error": failed,
        }
        if isinstance(error, dict) and error.get("type"):
            res["error_type"] = error["type"]
        self.tool_results.append(res)
        return StreamChunk(metadata={"event": "tool_result", **res})

    def finish(self) -> NormalizedResponse:
        """The assembled response.

        Raises:
            APIStatusError: The run failed on an API error: the typed error of its status
                (from the quoted error body, else from the exit status), with the CLI's
                message.
            ConnectionError: The CLI could not reach the API.
            APIError: An API error whose status neither says.
            GeminiCodeError: The run reported no result.
        """
        event = self.result
        if event is None:
            raise GeminiCodeError("the Gemini CLI ended without a result event")
        error = event.get("error")
        is_error = event.get("status") == "error" or bool(event.get("is_error")) or bool(error)
        answer = event.get("result", event.get("response"))
        text = answer.strip() if isinstance(answer, str) else "\n".join(self.texts)
        stats = event.get("stats", event.get("usage"))
        stats = stats if isinstance(stats, dict) else None
        metadata: dict[str, Any] = {
            "session_id": self.session_id,
            "model": self.model or self.requested_model,
            "usage": stats,
            "total_cost_usd": event.get("total_cost_usd"),
            "num_turns": event.get("num_turns"),
            "duration_ms": event.get("duration_ms", (stats or {}).get("duration_ms")),
            "is_error": is_error,
            "tool_uses": self.tool_uses,
            "tool_results": self.tool_results,
            "warnings": self.warnings,
        }
        message = None
        if is_error:
            detail = error.get("message") if isinstance(error, dict) else error
            # A result without an error says why in the error event before it.
            fallback = self.failures[-1] if self.failures else None
            message = str(detail or fallback or text or "the Gemini CLI reported an error")
            if message.startswith("[API Error"):
                raise _api_error(message, event)
        return NormalizedResponse(
            status="error" if is_error else "success",
            data=text,
            error=message,
            usage=_usage(stats),
            finish_reason="error" if is_error else "stop",
            metadata=metadata,
            raw_response=event,
        )


def _api_error(message: str, event: dict[str, Any]) -> errors.APIError | errors.ConnectionError:
    """The typed error of an API failure the CLI reported: the status quoted in the message,
    else the one the exit status gives, else a 404 for a message saying "not found"; without
    a status, a ``ConnectionError`` when the API could not be reached, else a plain
    ``APIError``."""
    found = _STATUS_IN_MESSAGE.search(message)
    code = event.get(EXIT_STATUS)
    status: int | None = None
    if found:
        status = int(found.group(1))
    elif isinstance(code, int) and 144 <= code <= 255:
        status = code + 256  # the CLI exits with the HTTP status mod 256: 400..511
    elif _UNREACHABLE in message:
        return errors.ConnectionError(message)
    elif _NOT_FOUND.search(message):
        status = 404
    wait = _RETRY_AFTER.search(message)
    retry_after = float(wait.group(1)) if wait else None
    if status is None:
        return errors.APIError(message, body=event, provider="gemini_code", retry_after=retry_after)
    return errors.error_for_status(
        status, message, body=event, provider="gemini_code", retry_after=retry_after
    )


def _usage(stats: dict[str, Any] | None) -> Usage | None:
    """Normalized token counts from the ``result`` event's ``stats``."""
    if not stats:
        return None

    def count(*keys: str) -> int:
        for key in keys:
            value = stats.get(key)
            if isinstance(value, int) and value >= 0:
                return value
        return 0

    # ``input_tokens`` includes the cached ones (``input`` is the uncached rest).
    inp = count("input_tokens", "inputTokens", "prompt_tokens")
    out = count("output_tokens", "outputTokens", "candidates_tokens")
    total = count("total_tokens", "totalTokens") or inp + out
    if not (inp or out or total):
        return None
    return Usage(
        input_tokens=inp,
        output_tokens=out,
        total_tokens=total,
        cached_tokens=min(count("cached", "cached_tokens"), inp),
    )
