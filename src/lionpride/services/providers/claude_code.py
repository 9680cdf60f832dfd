"""Claude Code through its CLI: ``claude -p <prompt> --output-format stream-json --verbose
--include-partial-messages``.

No HTTP: each call spawns the ``claude`` executable (looked up at call time, never at import)
in the request's workspace, reads its newline-delimited JSON events as they arrive while
draining stderr into a bounded buffer, and turns them into a :class:`NormalizedResponse`
(``call``) or into :class:`StreamChunk` objects (``stream``, token by token). Runs once per
call: a CLI run
may have edited files before failing, so nothing is retried unless the caller configures it.

Failures:
    * the executable is missing → :class:`~lionpride.errors.ConfigurationError` naming
      ``claude`` and how to install it;
    * the CLI exits non-zero without reporting a result, prints a line that is not a JSON
      object, or ends without a ``result`` event → :class:`ClaudeCodeError` (an
      :class:`~lionpride.errors.ExecutionError`, not retryable) with the stderr tail;
    * the provider's API failed (the CLI retried it, then reported ``api_error_status``) →
      the typed error of that status (:class:`~lionpride.errors.AuthenticationError`,
      :class:`~lionpride.errors.RateLimitError`, :class:`~lionpride.errors.ServerError`...)
      with the CLI's message (:class:`~lionpride.errors.ConnectionError` when it could not
      reach the API), raised by ``call`` and at the end of ``stream``; each retry
      the CLI made is reported to ``on_retry`` (the model's retry hooks and metrics), shown
      as an ``api_retry`` chunk and listed in ``metadata["api_retries"]``;
    * ``permission_mode="bypassPermissions"`` as root without ``IS_SANDBOX=1`` for the
      CLI → :class:`~lionpride.errors.ConfigurationError` before anything runs;
    * any other ``result`` with ``is_error`` (maximum turns reached, an unknown session) → a
      response with ``status="error"`` whose ``error`` is the CLI's own message;
    * the call's deadline or ``idle_timeout`` passes → :class:`~lionpride.errors.TimeoutError`.

On every exit (success, error, timeout, cancellation, a consumer leaving the stream early)
the process group, and those of the shell commands the CLI runs for its tools, are
terminated, then killed after a grace period, in a shielded cleanup (the subprocess
machinery, shared with the Gemini CLI, lives in ``_cli_process``). The request model and the
messages → prompt conversion live in ``_claude_code_request``, the events → response fold in
``_claude_code_events``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing, contextmanager, suppress
from typing import Any

from lionpride import errors
from lionpride.errors import ClaudeCodeError
from lionpride.services.providers._claude_code_events import ClaudeCodeRun
from lionpride.services.providers._claude_code_request import (
    ClaudeCodeRequest,
    request_from_messages,
)
from lionpride.services.providers._claude_code_request import (
    PermissionMode as PermissionMode,  # re-exported: it was defined here
)
from lionpride.services.providers._cli_endpoint import CLIEndpoint, cli_config
from lionpride.services.providers._cli_process import CLIRun
from lionpride.services.types.backend import RetryObserver

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


def create_claude_code_config(name: str = "claude_code_cli", **kwargs: Any) -> dict[str, Any]:
    """Config dict for the Claude Code CLI: no URL, no API key, no retries, 1 h timeout.

    Other keyword arguments are config fields (``timeout``, ``tags``) or default request
    parameters (``model``, ``allowed_tools``, ``repo``...).
    """
    return cli_config("claude_code", name, ClaudeCodeRequest, **kwargs)


class ClaudeCodeEndpoint(CLIEndpoint):
    """Claude Code agent runs as a backend (``provider="claude_code"``).

    Takes the arguments of :class:`CLIEndpoint`: the config is built by
    :func:`create_claude_code_config`, ``cli_path`` defaults to ``claude`` on ``PATH``, and
    ``env`` holds what the CLI reads (``ANTHROPIC_BASE_URL``, ``IS_SANDBOX``...).

    Requests take ``prompt`` or ``messages``: with ``resume`` or ``continue_conversation``
    only the last message is sent (the session already holds the rest); otherwise every
    non-system message is joined with newlines and ``continue_conversation`` is forced off. A
    leading system message becomes ``system_prompt`` unless one is given. The response's
    ``metadata["session_id"]`` names the CLI session; pass it back as ``resume=`` to go on.
    Stream chunks are tagged in ``metadata["event"]``: ``system`` (with ``session_id``),
    ``api_retry``, ``text`` (a token delta), ``thinking`` (in ``reasoning``), ``tool_use``
    (in ``tool_call_delta``: the name, then the arguments' JSON in pieces) or ``tool_result``.
    """

    config_factory = staticmethod(create_claude_code_config)
    from_messages = staticmethod(request_from_messages)
    request_model = ClaudeCodeRequest
    executable_name = "claude"
    cli_label = "Claude Code CLI `claude`"
    install_hint = _INSTALL_HINT

    def _new_run(self, req: ClaudeCodeRequest, on_retry: RetryObserver | None) -> ClaudeCodeRun:
        return ClaudeCodeRun(req, on_retry)

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

    async def _run_cli(
        self, req: ClaudeCodeRequest, deadline: float, limit: float, idle: float | None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """One CLI run's JSON events. ``mcp_servers`` reach the CLI in a file only this user
        can read, removed after the run: on its command line, their ``env`` (keys, often)
        would show to anyone who can list processes.

        Raises:
            ConfigurationError: ``bypassPermissions`` as root without ``IS_SANDBOX=1`` for
                the CLI, which refuses that combination.
        """
        env = None
        if req.max_thinking_tokens is not None:
            env = {"MAX_THINKING_TOKENS": str(req.max_thinking_tokens)}
        if req.permission_mode == "bypassPermissions" and os.geteuid() == 0:
            child = self.child_env(env) or os.environ
            if child.get("IS_SANDBOX") != "1":
                raise errors.ConfigurationError(
                    f"{self.name}: the Claude Code CLI refuses permission_mode="
                    "'bypassPermissions' when it runs as root, unless IS_SANDBOX=1 is set for "
                    "it; on a sandboxed machine pass env={'IS_SANDBOX': '1'} to the endpoint "
                    "(or iModel), or run as another user"
                )
        run = CLIRun(
            name=self.name,
            label="Claude Code CLI",
            install_hint=_INSTALL_HINT,
            error=ClaudeCodeError,
            final_types=("result",),
            exit_grace=_EXIT_GRACE,  # read per run, so that tests can shorten it
        )
        with _private_json(req.mcp_servers_config() if req.mcp_servers else None) as path:
            events = self._spawn(run, req, deadline, limit, idle, env, req.cli_args(path))
            async with aclosing(events):
                async for event in events:
                    yield event


@contextmanager
def _private_json(data: Any) -> Iterator[str | None]:
    """A file holding ``data`` as JSON, readable by this user only, removed on exit; ``None``
    (and no file) when ``data`` is."""
    if data is None:
        yield None
        return
    fd, path = tempfile.mkstemp(prefix="lionpride-mcp-", suffix=".json")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file)
        yield path
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)
