"""The events of one Claude Code CLI run folded into stream chunks and one response.

The CLI (``--output-format stream-json --verbose --include-partial-messages``) prints a
``system``/``init`` event, ``stream_event`` lines that each wrap one raw Messages API stream
event (token deltas), whole ``assistant`` and ``user`` messages, ``system``/``api_retry``
events before each of its own retries, and a final ``result``. A failed API call ends with a
synthetic ``assistant`` message carrying a top-level ``error`` and a ``result`` with
``is_error`` and ``api_error_status``: that becomes the typed error of the status, raised by
:meth:`ClaudeCodeRun.finish`, and its text is never a text chunk.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from lionpride import errors
from lionpride.errors import ClaudeCodeError
from lionpride.services.providers._claude_code_request import ClaudeCodeRequest
from lionpride.services.providers.anthropic_messages import anthropic_usage
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.backend import RetryObserver
from lionpride.services.types.response import FinishReason, NormalizedResponse

__all__ = ["ClaudeCodeError", "ClaudeCodeRun"]

#: What the ``init`` event says about the session, kept in the response's metadata.
_INIT_KEYS = ("tools", "mcp_servers", "permissionMode", "claude_code_version", "cwd")
#: What the ``result`` event reports besides the text, kept in the response's metadata.
_RESULT_KEYS = ("permission_denials", "modelUsage", "terminal_reason", "stop_reason")


class ClaudeCodeRun:
    """Accumulates one run's events (and an ``auto_finish`` follow-up's) into chunks and,
    at the end, the response.

    Args:
        req: The run's request.
        on_retry: Told of each retry the CLI makes (attempt, typed error, delay in seconds).
    """

    __slots__ = (
        "api_error",
        "blocks",
        "init",
        "model",
        "next_tool",
        "on_retry",
        "req",
        "result",
        "retries",
        "session_id",
        "streamed",
        "texts",
        "thinking",
        "tool_results",
        "tool_uses",
        "totals",
        "usage",
    )

    def __init__(self, req: ClaudeCodeRequest, on_retry: RetryObserver | None = None) -> None:
        self.req = req
        self.on_retry = on_retry
        self.session_id: str | None = None
        self.model: str | None = None
        self.init: dict[str, Any] = {}
        self.texts: list[str] = []
        self.thinking: list[str] = []
        self.tool_uses: list[dict[str, Any]] = []
        self.tool_results: list[dict[str, Any]] = []
        self.retries: list[dict[str, Any]] = []
        self.api_error: str | None = None
        self.result: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self.totals: dict[str, float] = {}
        # Ids of messages whose content already arrived as stream_event deltas; the tool
        # call number of each tool_use block (by block index) of the message being streamed.
        self.streamed: set[str] = set()
        self.blocks: dict[int, int] = {}
        self.next_tool = 0

    def feed(self, event: dict[str, Any]) -> list[StreamChunk]:
        """Record one event and return the chunks it makes (possibly none)."""
        kind = event.get("type")
        self.session_id = event.get("session_id") or self.session_id
        if kind == "system":
            return self._system(event)
        if kind == "stream_event":
            inner = event.get("event")
            return self._delta(inner) if isinstance(inner, dict) else []
        if kind == "assistant" and event.get("error"):
            # The CLI's own rendering of an API failure: the result event types it.
            self.api_error = _message_text(event.get("message"))
            return []
        if kind in ("assistant", "user"):
            message = event.get("message")
            if not isinstance(message, dict):
                return []
            blocks = message.get("content")
            if isinstance(blocks, str):
                blocks = [{"type": "text", "text": blocks}]
            quiet = message.get("id") in self.streamed  # its chunks were the deltas
            return [
                c
                for b in blocks or ()
                if isinstance(b, dict)
                for c in self._block(b, event, quiet=quiet)
            ]
        if kind == "result":
            self._result(event)
        return []

    def _system(self, event: dict[str, Any]) -> list[StreamChunk]:
        subtype = event.get("subtype")
        if subtype == "init":
            self.model = event.get("model") or self.model
            self.init = {key: event[key] for key in _INIT_KEYS if key in event}
            meta = {"event": "system", "session_id": self.session_id, "model": self.model}
            return [StreamChunk(metadata=meta)]
        if subtype == "api_retry":
            retry = {
                key: event.get(key)
                for key in ("attempt", "max_retries", "retry_delay_ms", "error_status", "error")
            }
            self.retries.append(retry)
            if self.on_retry is not None:
                delay = event.get("retry_delay_ms")
                seconds = delay / 1000 if isinstance(delay, int | float) else 0.0
                # The CLI's wait (a 429's retry-after) is the error's: a model's limits
                # pause for it, so that the calls queued behind this run back off too.
                status = event.get("error_status")
                error = _api_error(status, f"{event.get('error')}", event, seconds or None)
                attempt = event.get("attempt")
                self.on_retry(
                    attempt if isinstance(attempt, int) else len(self.retries), error, seconds
                )
            return [StreamChunk(metadata={"event": "api_retry", **retry})]
        return []

    def _delta(self, inner: dict[str, Any]) -> list[StreamChunk]:
        """One raw Messages API stream event: text, thinking and tool input, token by token."""
        kind = inner.get("type")
        if kind == "message_start":
            message = inner.get("message")
            if isinstance(message, dict) and message.get("id"):
                self.streamed.add(str(message["id"]))
            self.blocks.clear()
            return []
        index = inner.get("index")
        if kind == "content_block_start" and isinstance(index, int):
            block = inner.get("content_block") or {}
            if block.get("type") != "tool_use":
                return []
            # Each block's whole ``assistant`` event comes before the next block starts, so
            # the tool calls recorded so far number the ones before this one.
            self.next_tool = max(self.next_tool, len(self.tool_uses))
            self.blocks[index] = self.next_tool
            self.next_tool += 1
            delta = {
                "index": self.blocks[index],
                "id": block.get("id"),
                "name": block.get("name"),
                "arguments": "",
            }
            return [StreamChunk(tool_call_delta=delta, metadata={"event": "tool_use"})]
        if kind != "content_block_delta" or not isinstance(index, int):
            return []
        delta = inner.get("delta") or {}
        dtype = delta.get("type")
        if dtype == "text_delta" and delta.get("text"):
            return [StreamChunk(content=delta["text"], metadata={"event": "text"})]
        if dtype == "thinking_delta" and delta.get("thinking"):
            return [StreamChunk(reasoning=delta["thinking"], metadata={"event": "thinking"})]
        if dtype == "input_json_delta" and delta.get("partial_json") and index in self.blocks:
            piece = {"index": self.blocks[index], "arguments": delta["partial_json"]}
            return [StreamChunk(tool_call_delta=piece, metadata={"event": "tool_use"})]
        return []

    def _block(
        self, block: dict[str, Any], event: dict[str, Any], *, quiet: bool
    ) -> list[StreamChunk]:
        kind = block.get("type")
        chunk: StreamChunk | None = None
        if kind == "text" and block.get("text"):
            self.texts.append(block["text"])
            chunk = StreamChunk(content=block["text"], metadata={"event": "text"})
        elif kind == "thinking" and block.get("thinking"):
            self.thinking.append(block["thinking"])
            chunk = StreamChunk(reasoning=block["thinking"], metadata={"event": "thinking"})
        elif kind == "tool_use":
            use = {"id": block.get("id"), "name": block.get("name"), "input": block.get("input")}
            delta = {
                "index": len(self.tool_uses),
                "id": use["id"],
                "name": use["name"],
                "arguments": json.dumps(use["input"] or {}),
            }
            self.tool_uses.append(use)
            meta = {"event": "tool_use", "input": use["input"]}
            chunk = StreamChunk(tool_call_delta=delta, metadata=meta)
        elif kind == "tool_result":
            res = {
                "tool_use_id": block.get("tool_use_id"),
                "content": block.get("content"),
                "is_error": bool(block.get("is_error")),
            }
            if "tool_use_result" in event:
                res["tool_use_result"] = event["tool_use_result"]
            self.tool_results.append(res)
            # A tool result is never streamed as deltas: always its own chunk.
            return [StreamChunk(metadata={"event": "tool_result", **res})]
        return [chunk] if chunk is not None and not quiet else []

    def _result(self, event: dict[str, Any]) -> None:
        # A follow-up run (auto_finish) adds its cost, turns and tokens to the first one's.
        self.result = event
        for key in ("total_cost_usd", "num_turns", "duration_ms", "duration_api_ms"):
            value = event.get(key)
            if isinstance(value, int | float):
                self.totals[key] = self.totals.get(key, 0) + value
        usage = event.get("usage")
        if isinstance(usage, dict):
            merged = dict(self.usage or {})
            for key, value in usage.items():
                prev = merged.get(key)
                both_numbers = isinstance(value, int) and isinstance(prev, int)
                merged[key] = prev + value if both_numbers else value
            self.usage = merged

    def finish(self) -> NormalizedResponse:
        """The assembled response.

        Raises:
            APIStatusError: The CLI reported that the API failed: the typed error of
                ``api_error_status`` (``AuthenticationError``, ``RateLimitError``...) with
                the CLI's message.
            ConnectionError: The CLI could not reach the API.
            APIError: Another API failure the CLI reported without a status.
            ClaudeCodeError: The run reported no result.
        """
        event = self.result
        if event is None:
            raise ClaudeCodeError("the Claude Code CLI ended without a result event")
        subtype = str(event.get("subtype") or "")
        is_error = bool(event.get("is_error")) or subtype.startswith("error")
        result = event.get("result")
        status = event.get("api_error_status")
        if is_error and (isinstance(status, int) or self.api_error is not None):
            message = result if isinstance(result, str) and result else self.api_error
            raise _api_error(status, message or "the API call failed", event)
        text = result.strip() if isinstance(result, str) else (self.texts[-1] if self.texts else "")
        finish: FinishReason = "stop"
        if subtype == "error_max_turns":
            finish = "length"
        elif is_error:
            finish = "error"
        metadata: dict[str, Any] = {
            "session_id": self.session_id,
            "model": self.model,
            "usage": self.usage,
            "total_cost_usd": self.totals.get("total_cost_usd"),
            "num_turns": self.totals.get("num_turns"),
            "duration_ms": self.totals.get("duration_ms"),
            "duration_api_ms": self.totals.get("duration_api_ms"),
            "is_error": is_error,
            "subtype": subtype or None,
            "tool_uses": self.tool_uses,
            "tool_results": self.tool_results,
            "thinking_log": self.thinking,
            "api_retries": self.retries,
            **self.init,
            **{key: event[key] for key in _RESULT_KEYS if key in event},
        }
        if self.req.cli_include_summary:
            metadata["summary"] = self._summary(text)
        error = None
        if is_error:
            # The CLI's own words: ``errors`` (max turns, an unknown session), else the text.
            details = event.get("errors")
            if isinstance(details, list) and details:
                error = "; ".join(map(str, details))
            else:
                error = text or subtype
        return NormalizedResponse(
            status="error" if is_error else "success",
            data=text,
            error=error or None,
            usage=anthropic_usage(self.usage),
            finish_reason=finish,
            metadata=metadata,
            raw_response=event,
        )

    def _summary(self, text: str) -> dict[str, Any]:
        files: dict[str, list[str]] = {"read": [], "written": [], "edited": []}
        kinds = {"Read": "read", "Write": "written", "Edit": "edited", "MultiEdit": "edited"}
        for use in self.tool_uses:
            kind = kinds.get(str(use.get("name")))
            path = (use.get("input") or {}).get("file_path")
            if kind and isinstance(path, str) and path not in files[kind]:
                files[kind].append(path)
        return {
            "tool_counts": dict(Counter(str(u.get("name")) for u in self.tool_uses)),
            "files": files,
            "result_preview": text[:200],
        }


#: How the CLI words an API call that never reached the server (2.1.197).
_UNREACHABLE = "Unable to connect to API"


def _api_error(
    status: Any, message: str, event: dict[str, Any], retry_after: float | None = None
) -> errors.APIError | errors.ConnectionError:
    """The typed error of an API failure the CLI reported: by status; without one, a
    ``ConnectionError`` when the API could not be reached, else a plain ``APIError``."""
    if isinstance(status, int) and status >= 400:
        return errors.error_for_status(
            status, message, body=event, provider="claude_code", retry_after=retry_after
        )
    if _UNREACHABLE in message:
        return errors.ConnectionError(message)
    return errors.APIError(message, body=event, provider="claude_code", retryable=True)


def _message_text(message: Any) -> str | None:
    """The text blocks of a Messages API message, joined."""
    blocks = message.get("content") if isinstance(message, dict) else None
    if not isinstance(blocks, list):
        return None
    parts = [b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str)]
    return "".join(parts) or None
