"""Claude Code through its CLI: ``claude -p <prompt> --output-format stream-json --verbose``.

No HTTP: each call spawns the ``claude`` executable (looked up at call time, never at import)
in the request's workspace, reads its newline-delimited JSON events as they arrive while
draining stderr into a bounded buffer, and turns them into a :class:`NormalizedResponse`
(``call``) or into :class:`StreamChunk` objects (``stream``). Runs once per call: a CLI run
may have edited files before failing, so nothing is retried unless the caller configures it.

Failures:
    * the executable is missing → :class:`~lionpride.errors.ConfigurationError` naming
      ``claude`` and how to install it;
    * the CLI exits non-zero without reporting a result, prints a line that is not a JSON
      object, or ends without a ``result`` event → :class:`ClaudeCodeError` (an
      :class:`~lionpride.errors.ExecutionError`, not retryable) with the stderr tail;
    * a ``result`` event with ``is_error`` → a response with ``status="error"`` (not raised);
    * the call's deadline or ``idle_timeout`` passes → :class:`~lionpride.errors.TimeoutError`.

On every exit (success, error, timeout, cancellation, a consumer leaving the stream early)
the process group is terminated, then killed after a grace period, in a shielded cleanup
(the subprocess machinery, shared with the Gemini CLI, lives in ``_cli_process``). The
request model and the messages → prompt conversion live in ``_claude_code_request``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from lionpride.services.providers._claude_code_request import (
    ClaudeCodeRequest,
    request_from_messages,
)
from lionpride.services.providers._claude_code_request import (
    PermissionMode as PermissionMode,  # re-exported: it was defined here
)
from lionpride.services.providers._cli_endpoint import CLIEndpoint
from lionpride.services.providers._cli_process import (
    CLIError,
    CLIRun,
)
from lionpride.services.providers.anthropic_messages import anthropic_usage
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.response import FinishReason, NormalizedResponse

__all__ = [
    "ClaudeCodeEndpoint",
    "ClaudeCodeError",
    "ClaudeCodeRequest",
    "create_claude_code_config",
]

_INSTALL_HINT = (
    "install it with `npm install -g @anthropic-ai/claude-code` "
    "(https://docs.claude.com/en/docs/claude-code), or pass cli_path=... to the endpoint"
)
#: Seconds a CLI may take to exit after printing its result before it is stopped.
_EXIT_GRACE = 5.0
_FINISH_PROMPT = (
    "You ran out of turns. Do not use any tool: reply now with your final answer to the "
    "original request, based on what you have done so far."
)


class ClaudeCodeError(CLIError):
    """The CLI failed without reporting a result: non-zero exit or unreadable output.

    Not retryable by default, since a run may have changed files before it failed.

    Attributes:
        returncode: The exit status, when the process ended.
        stderr: The last part of what the CLI wrote to stderr.
    """

    default_message = "Claude Code CLI failed"


def create_claude_code_config(name: str = "claude_code_cli", **kwargs: Any) -> dict[str, Any]:
    """Config dict for the Claude Code CLI: no URL, no API key, no retries, 1 h timeout.

    Other keyword arguments are config fields (``timeout``, ``tags``) or default request
    parameters (``model``, ``allowed_tools``, ``repo``...).
    """
    return {
        "provider": "claude_code",
        "name": name,
        "endpoint": "query_cli",
        "auth_type": "none",
        "content_type": None,
        "request_options": ClaudeCodeRequest,
        "timeout": 3600.0,
        "max_retries": 0,
        **kwargs,
        "tags": kwargs.get("tags") or ("llm", "claude_code", "cli"),
    }


class ClaudeCodeEndpoint(CLIEndpoint):
    """Claude Code agent runs as a backend (``provider="claude_code"``).

    Args:
        config: A config dict or :class:`EndpointConfig`; built by
            :func:`create_claude_code_config` from ``kwargs`` when omitted.
        cli_path: The ``claude`` executable (a path, or a name looked up on ``PATH``);
            default ``claude`` on ``PATH``, resolved when a call is made.
        **kwargs: Config fields or default request parameters.

    Requests take ``prompt`` or ``messages``: with ``resume`` or ``continue_conversation``
    only the last message is sent (the session already holds the rest); otherwise every
    non-system message is joined with newlines and ``continue_conversation`` is forced off. A
    leading system message becomes ``system_prompt`` unless one is given. The response's
    ``metadata["session_id"]`` names the CLI session; pass it back as ``resume=`` to go on.
    Stream chunks are tagged in ``metadata["event"]``: ``system`` (with ``session_id``),
    ``text``, ``thinking`` (in ``reasoning``), ``tool_use`` (in ``tool_call_delta``) or
    ``tool_result``.
    """

    config_factory = staticmethod(create_claude_code_config)
    request_model = ClaudeCodeRequest
    executable_name = "claude"
    cli_label = "Claude Code CLI `claude`"
    install_hint = _INSTALL_HINT

    def _from_messages(self, messages: Any, request: dict[str, Any]) -> dict[str, Any]:
        return request_from_messages(messages, request)

    def _new_run(self, req: ClaudeCodeRequest) -> _Run:
        return _Run(req)

    async def _events(
        self, req: ClaudeCodeRequest, deadline: float, limit: float, idle: float | None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every event of the run; with ``auto_finish``, of the follow-up run too."""
        session_id: str | None = None
        subtype: str | None = None
        async with aclosing(self._run_cli(req, deadline, limit, idle)) as events:
            async for event in events:
                session_id = event.get("session_id") or session_id
                if event.get("type") == "result":
                    subtype = event.get("subtype")
                yield event
        if req.auto_finish and subtype == "error_max_turns" and session_id:
            follow = req.model_copy(
                update={
                    "prompt": _FINISH_PROMPT,
                    "resume": session_id,
                    "continue_conversation": False,
                    "max_turns": 1,
                    "auto_finish": False,
                }
            )
            async with aclosing(self._run_cli(follow, deadline, limit, idle)) as events:
                async for event in events:
                    yield event

    def _run_cli(
        self, req: ClaudeCodeRequest, deadline: float, limit: float, idle: float | None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """One CLI run's JSON events (the process starts on first iteration)."""
        env = None
        if req.max_thinking_tokens is not None:
            env = {"MAX_THINKING_TOKENS": str(req.max_thinking_tokens)}
        run = CLIRun(
            name=self.name,
            label="Claude Code CLI",
            install_hint=_INSTALL_HINT,
            error=ClaudeCodeError,
            final_types=("result",),
            exit_grace=_EXIT_GRACE,  # read per run, so that tests can shorten it
        )
        return self._spawn(run, req, deadline, limit, idle, env)


# -- events → response -----------------------------------------------------------------------


class _Run:
    """Accumulates one run's events into chunks and, at the end, the response."""

    __slots__ = (
        "model",
        "req",
        "result",
        "session_id",
        "texts",
        "thinking",
        "tool_results",
        "tool_uses",
        "totals",
        "usage",
    )

    def __init__(self, req: ClaudeCodeRequest) -> None:
        self.req = req
        self.session_id: str | None = None
        self.model: str | None = None
        self.texts: list[str] = []
        self.thinking: list[str] = []
        self.tool_uses: list[dict[str, Any]] = []
        self.tool_results: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self.totals: dict[str, float] = {}

    def feed(self, event: dict[str, Any]) -> list[StreamChunk]:
        """Record one event and return the chunks it makes (possibly none)."""
        kind = event.get("type")
        self.session_id = event.get("session_id") or self.session_id
        if kind == "system" and event.get("subtype") == "init":
            self.model = event.get("model") or self.model
            meta = {"event": "system", "session_id": self.session_id, "model": self.model}
            return [StreamChunk(metadata=meta)]
        if kind in ("assistant", "user"):
            message = event.get("message")
            blocks = message.get("content") if isinstance(message, dict) else None
            if isinstance(blocks, str):
                blocks = [{"type": "text", "text": blocks}]
            return [c for b in blocks or () if isinstance(b, dict) for c in self._block(b)]
        if kind == "result":
            self._result(event)
        return []

    def _block(self, block: dict[str, Any]) -> list[StreamChunk]:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            self.texts.append(block["text"])
            return [StreamChunk(content=block["text"], metadata={"event": "text"})]
        if kind == "thinking" and block.get("thinking"):
            self.thinking.append(block["thinking"])
            return [StreamChunk(reasoning=block["thinking"], metadata={"event": "thinking"})]
        if kind == "tool_use":
            use = {"id": block.get("id"), "name": block.get("name"), "input": block.get("input")}
            delta = {
                "index": len(self.tool_uses),
                "id": use["id"],
                "name": use["name"],
                "arguments": json.dumps(use["input"] or {}),
            }
            self.tool_uses.append(use)
            return [
                StreamChunk(
                    tool_call_delta=delta, metadata={"event": "tool_use", "input": use["input"]}
                )
            ]
        if kind == "tool_result":
            res = {
                "tool_use_id": block.get("tool_use_id"),
                "content": block.get("content"),
                "is_error": bool(block.get("is_error")),
            }
            self.tool_results.append(res)
            return [StreamChunk(metadata={"event": "tool_result", **res})]
        return []

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
            ClaudeCodeError: The run reported no result.
        """
        event = self.result
        if event is None:
            raise ClaudeCodeError("the Claude Code CLI ended without a result event")
        subtype = str(event.get("subtype") or "")
        is_error = bool(event.get("is_error")) or subtype.startswith("error")
        result = event.get("result")
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
        }
        if self.req.cli_include_summary:
            metadata["summary"] = self._summary(text)
        error = None
        if is_error:
            details = event.get("errors")
            error = text or (
                "; ".join(map(str, details)) if isinstance(details, list) and details else subtype
            )
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
