"""The Gemini CLI as a backend: ``gemini -p <prompt> --output-format stream-json``.

Not the Gemini HTTP API (that is :mod:`lionpride.services.providers.gemini`): each call
spawns the ``gemini`` executable (looked up at call time, never at import) in the request's
workspace and reads its newline-delimited JSON events through the subprocess machinery it
shares with the Claude Code CLI (``_cli_process``). The CLI's documented events are
``init`` (session id, model), ``message`` (``role`` user or assistant; assistant text comes as
``delta`` pieces), ``tool_use`` (``tool_name``, ``tool_id``, ``parameters``), ``tool_result``
(``tool_id``, ``status``, ``output`` or ``error``), ``error`` (a non-fatal warning) and
``result`` (``status``, ``error``, ``stats`` with the token counts). Runs once per call: an
agent run may have edited files before failing, so nothing is retried unless configured.

Failures:
    * the executable is missing → :class:`~lionpride.errors.ConfigurationError` naming
      ``gemini`` and how to install it;
    * the CLI exits non-zero or ends without a ``result`` event (an authentication failure,
      say) → :class:`GeminiCodeError` (an :class:`~lionpride.errors.ExecutionError`, not
      retryable) with the stderr tail;
    * a ``result`` event with ``status="error"`` → a response with ``status="error"``;
    * the call's deadline or ``idle_timeout`` passes → :class:`~lionpride.errors.TimeoutError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lionpride import errors
from lionpride.services.providers._claude_code_request import _content_text
from lionpride.services.providers._cli_endpoint import CLIEndpoint
from lionpride.services.providers._cli_process import (
    MAX_ARG_BYTES,
    CLIError,
    CLIRun,
    resolve_workspace,
)
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.backend import RetryObserver
from lionpride.services.types.response import NormalizedResponse, Usage

__all__ = [
    "ApprovalMode",
    "GeminiCodeEndpoint",
    "GeminiCodeError",
    "GeminiCodeRequest",
    "create_gemini_code_config",
]

_INSTALL_HINT = (
    "install it with `npm install -g @google/gemini-cli` "
    "(https://github.com/google-gemini/gemini-cli), or pass cli_path=... to the endpoint"
)
#: Seconds a CLI may take to exit after printing its result before it is stopped.
_EXIT_GRACE = 5.0
#: The older names of SPEC §5.4 → the CLI's own ``--approval-mode`` values.
_APPROVAL_ALIASES = {"suggest": "default", "full_auto": "yolo"}

ApprovalMode = Literal["default", "auto_edit", "yolo", "plan"]


class GeminiCodeError(CLIError):
    """The Gemini CLI failed without reporting a result: non-zero exit or unreadable output.

    Attributes:
        returncode: The exit status, when the process ended.
        stderr: The last part of what the CLI wrote to stderr.
    """

    default_message = "Gemini CLI failed"


class GeminiCodeRequest(BaseModel):
    """One ``gemini -p`` run: the prompt and the CLI options of SPEC §5.4.

    ``repo`` is the repository the run is confined to (default: the current directory at
    payload time); ``ws`` is a sub-directory of it to run in, created when missing. The CLI
    has no system-prompt flag, so ``system_prompt`` is sent ahead of the prompt. ``sandbox``
    left unset lets the CLI's settings decide; ``yolo`` is ``approval_mode="yolo"``.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    system_prompt: str | None = None
    repo: str = Field(default_factory=lambda: str(Path.cwd()))
    ws: str | None = None
    include_directories: list[str] = Field(default_factory=list)
    model: str | None = "gemini-2.5-pro"
    yolo: bool = False
    approval_mode: ApprovalMode | None = None
    sandbox: bool | None = None
    debug: bool = False
    resume: str | None = None

    @field_validator("include_directories", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | os.PathLike) else value

    @field_validator("include_directories", mode="after")
    @classmethod
    def _no_commas(cls, value: list[str]) -> list[str]:
        # The CLI splits each value on commas: one with a comma would name two directories.
        bad = [d for d in value if "," in d]
        if bad:
            raise ValueError(f"include_directories cannot contain commas: {bad!r}")
        return value

    @field_validator("approval_mode", mode="before")
    @classmethod
    def _approval_alias(cls, value: Any) -> Any:
        return _APPROVAL_ALIASES.get(value, value) if isinstance(value, str) else value

    @field_validator("repo", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="after")
    def _check(self) -> GeminiCodeRequest:
        resolve_workspace(self.repo, self.ws)
        if self.yolo and self.approval_mode not in (None, "yolo"):
            # The CLI itself refuses --yolo together with another approval mode.
            raise ValueError(f"yolo=True conflicts with approval_mode={self.approval_mode!r}")
        return self

    @property
    def workspace(self) -> Path:
        """The directory the CLI runs in: ``repo/ws`` resolved, or ``repo``."""
        return resolve_workspace(self.repo, self.ws)

    def cli_args(self) -> tuple[list[str], str | None]:
        """The CLI arguments (without the executable) and the prompt to send on stdin, if any.

        A prompt too long for one argument goes on stdin, which the CLI puts ahead of the
        ``-p`` value (here a single space).
        """
        text = f"{self.system_prompt}\n\n{self.prompt}" if self.system_prompt else self.prompt
        stdin: str | None = None
        if len(text.encode()) > MAX_ARG_BYTES:
            stdin, text = text, " "
        elif text.startswith("-"):
            text = f" {text}"  # so that a prompt such as "-h" is not parsed as an option
        args = ["-p", text, "--output-format", "stream-json"]
        if self.model:
            args += ["--model", self.model]
        mode = "yolo" if self.yolo else self.approval_mode
        if mode:
            args += ["--approval-mode", mode]
        if self.sandbox is not None:
            args.append("--sandbox" if self.sandbox else "--no-sandbox")
        if self.debug:
            args.append("--debug")
        for directory in self.include_directories:
            args += ["--include-directories", directory]
        if self.resume:
            args += ["--resume", self.resume]
        return args, stdin


def request_from_messages(messages: Any, request: dict[str, Any]) -> dict[str, Any]:
    """The ``prompt`` (and ``system_prompt``) for chat ``messages``.

    Non-system contents are joined with newlines; a leading system message becomes
    ``system_prompt`` unless one is given.
    """
    if not isinstance(messages, list) or not messages:
        raise errors.ValidationError("messages must be a non-empty list")
    items = [m if isinstance(m, dict) else {"role": "user", "content": m} for m in messages]
    out: dict[str, Any] = {
        "prompt": "\n".join(
            _content_text(m.get("content")) for m in items if m.get("role") != "system"
        )
    }
    if items[0].get("role") == "system" and not request.get("system_prompt"):
        out["system_prompt"] = _content_text(items[0].get("content"))
    return out


def create_gemini_code_config(name: str = "gemini_code_cli", **kwargs: Any) -> dict[str, Any]:
    """Config dict for the Gemini CLI: no URL, no API key, no retries, 1 h timeout.

    Other keyword arguments are config fields (``timeout``, ``tags``) or default request
    parameters (``model``, ``approval_mode``, ``repo``...).
    """
    return {
        "provider": "gemini_code",
        "name": name,
        "endpoint": "query_cli",
        "auth_type": "none",
        "content_type": None,
        "request_options": GeminiCodeRequest,
        "timeout": 3600.0,
        "max_retries": 0,
        **kwargs,
        "tags": kwargs.get("tags") or ("llm", "gemini_code", "cli"),
    }


class GeminiCodeEndpoint(CLIEndpoint):
    """Gemini CLI agent runs as a backend (``provider="gemini_code"``).

    Args:
        config: A config dict or :class:`EndpointConfig`; built by
            :func:`create_gemini_code_config` from ``kwargs`` when omitted.
        cli_path: The ``gemini`` executable (a path, or a name looked up on ``PATH``);
            default ``gemini`` on ``PATH``, resolved when a call is made.
        **kwargs: Config fields or default request parameters.

    Requests take ``prompt`` or ``messages`` (see :func:`request_from_messages`). The
    response's ``metadata["session_id"]`` names the CLI session (``resume=`` takes it). Stream
    chunks are tagged in ``metadata["event"]``: ``system`` (with ``session_id``), ``text``,
    ``tool_use`` (in ``tool_call_delta``), ``tool_result`` or ``warning``.
    """

    config_factory = staticmethod(create_gemini_code_config)
    request_model = GeminiCodeRequest
    executable_name = "gemini"
    cli_label = "Gemini CLI `gemini`"
    install_hint = _INSTALL_HINT

    def _from_messages(self, messages: Any, request: dict[str, Any]) -> dict[str, Any]:
        return request_from_messages(messages, request)

    def _new_run(self, req: GeminiCodeRequest, on_retry: RetryObserver | None) -> _Run:
        return _Run(req)

    def _events(
        self, req: GeminiCodeRequest, deadline: float, limit: float, idle: float | None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """One CLI run's JSON events (the process starts on first iteration)."""
        run = CLIRun(
            name=self.name,
            label="Gemini CLI",
            install_hint=_INSTALL_HINT,
            error=GeminiCodeError,
            final_types=("result", "response"),
            exit_grace=_EXIT_GRACE,
            # Some versions print banners (YOLO mode, extensions) among the events.
            skip_noise=True,
        )
        return self._spawn(run, req, deadline, limit, idle)


# -- events → response -----------------------------------------------------------------------


class _Run:
    """Accumulates one run's events into chunks and, at the end, the response."""

    __slots__ = (
        "delta_open",
        "model",
        "req",
        "result",
        "session_id",
        "texts",
        "tool_results",
        "tool_uses",
        "warnings",
    )

    def __init__(self, req: GeminiCodeRequest) -> None:
        self.req = req
        self.session_id: str | None = None
        self.model: str | None = None
        self.texts: list[str] = []
        # Whether the next assistant delta continues the last text (no tool event between).
        self.delta_open = False
        self.tool_uses: list[dict[str, Any]] = []
        self.tool_results: list[dict[str, Any]] = []
        self.warnings: list[str] = []
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
        if content is None and isinstance(error, dict):
            content = error.get("message")
        res = {
            "tool_use_id": event.get("tool_id", event.get("tool_use_id")),
            "content": content,
            "is_error": event.get("status") == "error" or bool(event.get("is_error")),
        }
        self.tool_results.append(res)
        return StreamChunk(metadata={"event": "tool_result", **res})

    def finish(self) -> NormalizedResponse:
        """The assembled response.

        Raises:
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
            "model": self.model or self.req.model,
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
            message = str(detail or text or "the Gemini CLI reported an error")
        return NormalizedResponse(
            status="error" if is_error else "success",
            data=text,
            error=message,
            usage=_usage(stats),
            finish_reason="error" if is_error else "stop",
            metadata=metadata,
            raw_response=event,
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
