"""The Gemini CLI as a backend: ``gemini -p <prompt> --output-format stream-json``.

Not the Gemini HTTP API (that is :mod:`lionpride.services.providers.gemini`): each call
spawns the ``gemini`` executable (looked up at call time, never at import) in the request's
workspace and reads its newline-delimited JSON events through the subprocess machinery it
shares with the Claude Code CLI (``_cli_process``); the events → response fold lives in
``_gemini_code_events``. Assistant text streams as the CLI's ``delta`` pieces. Runs once per
call: an agent run may have edited files before failing, so nothing is retried unless
configured.

Failures:
    * the executable is missing → :class:`~lionpride.errors.ConfigurationError` naming
      ``gemini`` and how to install it;
    * the CLI exits non-zero or ends without a ``result`` event (an authentication failure,
      say) → :class:`GeminiCodeError` (an :class:`~lionpride.errors.ExecutionError`, not
      retryable) with the stderr tail;
    * the provider's API failed (``[API Error: ...]`` in the result) → the typed error of
      its status (:class:`~lionpride.errors.AuthenticationError`,
      :class:`~lionpride.errors.RateLimitError`, :class:`~lionpride.errors.ServerError`...),
      read from the quoted error body, else the exit status (the HTTP status mod 256), else
      the words of a 404 (which the CLI reports as an unknown model, exiting 1), with the
      CLI's message (:class:`~lionpride.errors.ConnectionError` when it could not reach the
      API), raised by ``call`` and at the end of ``stream``;
    * any other ``result`` with ``status="error"`` → a response with ``status="error"``
      whose ``error`` is the CLI's message (or that of the ``error`` event before it, as for
      an empty model response);
    * the call's deadline or ``idle_timeout`` passes → :class:`~lionpride.errors.TimeoutError`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from lionpride import errors
from lionpride.errors import GeminiCodeError
from lionpride.services.providers._claude_code_request import _content_text
from lionpride.services.providers._cli_endpoint import CLIEndpoint, cli_config
from lionpride.services.providers._cli_process import MAX_ARG_BYTES, CLIRun, resolve_workspace
from lionpride.services.providers._gemini_code_events import GeminiCodeRun
from lionpride.services.types.backend import RetryObserver
from lionpride.services.types.request import RequestSchema

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


class GeminiCodeRequest(RequestSchema):
    """One ``gemini -p`` run: the prompt and the CLI options of SPEC §5.4.

    ``repo`` is the repository the run is confined to (default: the current directory at
    payload time); ``ws`` is a sub-directory of it to run in, created when missing. The CLI
    has no system-prompt flag, so ``system_prompt`` is sent ahead of the prompt. ``sandbox``
    left unset lets the CLI's settings decide; ``yolo`` is ``approval_mode="yolo"``.
    ``model=None`` lets the CLI choose (its ``auto`` router). The CLI refuses to run headless
    in a directory it does not trust (exit 55): ``skip_trust`` (default on) passes
    ``--skip-trust``, trusting the workspace the caller chose for this run only; turn it off
    to leave the decision to the CLI's trusted-folders settings. ``session_id`` starts a new
    session with that UUID (``--session-id``); resuming that same session (as an iModel does
    after its first call) sends ``--resume`` alone, and resuming another one is refused, as
    the CLI takes only one of the two. ``allowed_mcp_server_names``, ``policy``
    (policy files or directories) and ``extensions`` (``-e``) pass the CLI's options of the
    same names.
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
    session_id: str | None = None
    skip_trust: bool = True
    allowed_mcp_server_names: list[str] | None = None
    policy: list[str] | None = None
    extensions: list[str] | None = None

    @field_validator(
        "include_directories", "allowed_mcp_server_names", "policy", "extensions", mode="before"
    )
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return [os.fspath(value)]
        if isinstance(value, list | tuple):
            return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        return [value] if isinstance(value, str) else value

    @field_validator("include_directories", "policy", mode="after")
    @classmethod
    def _no_commas(cls, value: list[str] | None) -> list[str] | None:
        # The CLI splits each value on commas: one with a comma would name two paths.
        bad = [d for d in value or () if "," in d]
        if bad:
            raise ValueError(f"paths cannot contain commas: {bad!r}")
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
        if self.resume and self.session_id and self.resume != self.session_id:
            # The CLI takes one of them: a new session with that id, or an old one to go on.
            raise ValueError(
                f"session_id={self.session_id!r} starts a new session, resume={self.resume!r} "
                "goes on with another: give one of them"
            )
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
        if self.session_id and not self.resume:
            args += ["--session-id", self.session_id]
        if self.skip_trust:
            args.append("--skip-trust")
        # One flag per value, so that no array option can swallow the next one's values.
        for name in self.allowed_mcp_server_names or ():
            args += ["--allowed-mcp-server-names", name]
        for path in self.policy or ():
            args += ["--policy", path]
        for extension in self.extensions or ():
            args += ["--extensions", extension]
        return args, stdin


def request_from_messages(messages: Any, request: dict[str, Any]) -> dict[str, Any]:
    """The ``prompt`` (and ``system_prompt``) for chat ``messages``.

    Non-system contents are joined with newlines; a leading system message becomes
    ``system_prompt`` unless one is given. With ``resume`` only the last message is sent:
    the session already holds the rest, the system message with it.
    """
    if not isinstance(messages, list) or not messages:
        raise errors.ValidationError("messages must be a non-empty list")
    items = [m if isinstance(m, dict) else {"role": "user", "content": m} for m in messages]
    if request.get("resume"):
        return {"prompt": _content_text(items[-1].get("content"))}
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
    return cli_config("gemini_code", name, GeminiCodeRequest, **kwargs)


class GeminiCodeEndpoint(CLIEndpoint):
    """Gemini CLI agent runs as a backend (``provider="gemini_code"``).

    Takes the arguments of :class:`CLIEndpoint`: the config is built by
    :func:`create_gemini_code_config`, ``cli_path`` defaults to ``gemini`` on ``PATH``, and
    ``env`` holds what the CLI reads (``GEMINI_API_KEY``, ``GOOGLE_GEMINI_BASE_URL``...).

    Requests take ``prompt`` or ``messages`` (see :func:`request_from_messages`). The
    response's ``metadata["session_id"]`` names the CLI session (``resume=`` takes it). Stream
    chunks are tagged in ``metadata["event"]``: ``system`` (with ``session_id``), ``text``,
    ``tool_use`` (in ``tool_call_delta``), ``tool_result`` or ``warning``.
    """

    config_factory = staticmethod(create_gemini_code_config)
    from_messages = staticmethod(request_from_messages)
    request_model = GeminiCodeRequest
    executable_name = "gemini"
    cli_label = "Gemini CLI `gemini`"
    install_hint = _INSTALL_HINT

    def _new_run(self, req: GeminiCodeRequest, on_retry: RetryObserver | None) -> GeminiCodeRun:
        return GeminiCodeRun(req.model)

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
