"""The request of a Claude Code CLI run: its options, CLI arguments and workspace checks.

:class:`ClaudeCodeRequest` validates one ``claude -p`` run and turns it into the CLI's
arguments; :func:`request_from_messages` turns chat ``messages`` into its ``prompt``. Both
are public through :mod:`lionpride.services.providers.claude_code`; nothing here spawns a
process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from lionpride import errors
from lionpride.services.providers._cli_process import MAX_ARG_BYTES, resolve_workspace
from lionpride.services.types.request import RequestSchema

__all__ = ["ClaudeCodeRequest", "Effort", "PermissionMode", "ThinkingMode", "request_from_messages"]

_BYPASS_ALIASES = frozenset({"dangerously-skip-permissions", "--dangerously-skip-permissions"})

PermissionMode = Literal["default", "acceptEdits", "auto", "bypassPermissions", "dontAsk", "plan"]
#: ``--thinking``: ``enabled`` is the CLI's alias of ``adaptive``.
ThinkingMode = Literal["enabled", "adaptive", "disabled"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]


class ClaudeCodeRequest(RequestSchema):
    """One ``claude -p`` run: the prompt and the CLI options of SPEC §5.3.

    ``repo`` is the repository the run is confined to (default: the current directory at
    payload time); ``ws`` is a sub-directory of it to run in, created when missing.
    ``model=None`` lets the CLI choose its default model. ``thinking`` (``--thinking``) and
    ``effort`` (``--effort``) are the CLI's current thinking controls; the older
    ``max_thinking_tokens`` is set as ``MAX_THINKING_TOKENS`` for the CLI, which honours it
    only for some models (Haiku, not Sonnet, in 2.1.197).
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    system_prompt: str | None = None
    append_system_prompt: str | None = None
    max_turns: int | None = Field(default=None, ge=1)
    continue_conversation: bool = False
    resume: str | None = None
    repo: str = Field(default_factory=lambda: str(Path.cwd()))
    ws: str | None = None
    add_dir: list[str] | None = None
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    mcp_tools: list[str] | None = None
    model: str | None = "sonnet"
    max_thinking_tokens: int | None = Field(default=None, ge=0)
    thinking: ThinkingMode | None = None
    effort: Effort | None = None
    mcp_config: str | None = None
    mcp_servers: dict[str, dict[str, Any]] | None = None
    permission_mode: PermissionMode | None = None
    permission_prompt_tool_name: str | None = None
    auto_finish: bool = False
    cli_include_summary: bool = False

    @field_validator("add_dir", "allowed_tools", "disallowed_tools", "mcp_tools", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("permission_mode", mode="before")
    @classmethod
    def _bypass_alias(cls, value: Any) -> Any:
        return "bypassPermissions" if value in _BYPASS_ALIASES else value

    @field_validator("repo", "mcp_config", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="after")
    def _check_workspace(self) -> ClaudeCodeRequest:
        resolve_workspace(self.repo, self.ws)
        return self

    def mcp_servers_config(self) -> dict[str, Any]:
        """``mcp_servers`` as the CLI's ``--mcp-config`` reads them."""
        return {"mcpServers": self.mcp_servers or {}}

    @property
    def workspace(self) -> Path:
        """The directory the CLI runs in: ``repo/ws`` resolved, or ``repo``."""
        return resolve_workspace(self.repo, self.ws)

    def cli_args(self, mcp_servers_file: str | None = None) -> tuple[list[str], str | None]:
        """The CLI arguments (without the executable) and the prompt to send on stdin, if any.

        Values are passed as separate arguments, unquoted: there is no shell. The prompt comes
        right after ``-p`` so that no variadic option (``--allowedTools a b``) can swallow it.
        ``mcp_servers`` is named by ``mcp_servers_file`` when given (a file holding them),
        else passed as JSON, where anyone who can list processes reads its ``env``.
        """
        args = ["-p"]
        stdin: str | None = None
        if len(self.prompt.encode()) > MAX_ARG_BYTES:
            stdin = self.prompt
        else:
            # A leading space keeps a prompt such as "-h" from being parsed as an option.
            args.append(f" {self.prompt}" if self.prompt.startswith("-") else self.prompt)
        args += ["--output-format", "stream-json", "--verbose", "--include-partial-messages"]
        if self.model:
            args += ["--model", self.model]
        if self.thinking:
            args += ["--thinking", self.thinking]
        if self.effort:
            args += ["--effort", self.effort]
        if self.system_prompt:
            args += ["--system-prompt", self.system_prompt]
        if self.append_system_prompt:
            args += ["--append-system-prompt", self.append_system_prompt]
        if self.max_turns is not None:
            args += ["--max-turns", str(self.max_turns)]
        allowed = [*(self.allowed_tools or ()), *(self.mcp_tools or ())]
        if allowed:
            args += ["--allowedTools", *allowed]
        if self.disallowed_tools:
            args += ["--disallowedTools", *self.disallowed_tools]
        if self.resume:
            args += ["--resume", self.resume]
        elif self.continue_conversation:
            args.append("--continue")
        if self.permission_mode == "bypassPermissions":
            args.append("--dangerously-skip-permissions")
        elif self.permission_mode and self.permission_mode != "default":
            args += ["--permission-mode", self.permission_mode]
        if self.permission_prompt_tool_name:
            args += ["--permission-prompt-tool", self.permission_prompt_tool_name]
        if self.add_dir:
            args += ["--add-dir", *self.add_dir]
        configs = [self.mcp_config] if self.mcp_config else []
        if self.mcp_servers:
            configs.append(mcp_servers_file or json.dumps(self.mcp_servers_config()))
        if configs:
            args += ["--mcp-config", *configs]
        return args, stdin


def request_from_messages(messages: Any, request: dict[str, Any]) -> dict[str, Any]:
    """The ``prompt`` (and ``system_prompt``, ``continue_conversation``) for chat messages."""
    if not isinstance(messages, list) or not messages:
        raise errors.ValidationError("messages must be a non-empty list")
    items = [m if isinstance(m, dict) else {"role": "user", "content": m} for m in messages]
    out: dict[str, Any] = {}
    system = items[0] if items[0].get("role") == "system" else None
    if system is not None and not request.get("system_prompt"):
        out["system_prompt"] = _content_text(system.get("content"))
    if request.get("resume") or request.get("continue_conversation"):
        out["prompt"] = _content_text(items[-1].get("content"))
    else:
        out["prompt"] = "\n".join(
            _content_text(m.get("content")) for m in items if m.get("role") != "system"
        )
        out["continue_conversation"] = False
    return out


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if (
        isinstance(content, list)
        and content
        and all(isinstance(b, dict) and b.get("type") == "text" for b in content)
    ):
        return "\n".join(str(b.get("text", "")) for b in content)
    return json.dumps(content, ensure_ascii=False)
