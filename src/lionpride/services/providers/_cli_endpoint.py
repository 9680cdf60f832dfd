"""CLIEndpoint: the shape both agent CLIs (Claude Code, Gemini) share as backends.

A :class:`~lionpride.services.types.resilient.ResilientBackend` (config, retry, breaker,
serialization, as the HTTP endpoints), not an HTTP endpoint. A request takes ``prompt`` or
chat ``messages``; ``call`` and ``stream`` run once per call, and the CLI runs once per
attempt (under the retry loop and the breaker): a call folds the run's JSON events into one
response, a stream yields a chunk per event and ends with the response. Subclasses say which
request model validates, how messages become a prompt, which executable runs, and how one
run's events are produced and folded (``_events``/``_new_run``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from typing import Any, ClassVar, Protocol, Unpack

from pydantic import PrivateAttr

from lionpride import errors
from lionpride.services.providers._cli_process import CLIRun, find_executable, run_cli
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.backend import CallOptions, RetryObserver, StreamOptions
from lionpride.services.types.request import RequestSchema
from lionpride.services.types.resilient import ResilientBackend
from lionpride.services.types.response import NormalizedResponse

__all__ = ["CLIEndpoint", "RunFold", "cli_config"]


def cli_config(
    provider: str, name: str, schema: type[RequestSchema], **kwargs: Any
) -> dict[str, Any]:
    """Config dict for an agent CLI: no URL, no API key, no retries, 1 h timeout.

    Other keyword arguments are config fields (``timeout``, ``tags``) or default request
    parameters (``model``, ``repo``...); the tags default to ``("llm", provider, "cli")``.
    """
    return {
        "provider": provider,
        "name": name,
        "endpoint": "query_cli",
        "auth_type": "none",
        "content_type": None,
        "request_options": schema,
        "timeout": 3600.0,
        "max_retries": 0,
        **kwargs,
        "tags": kwargs.get("tags") or ("llm", provider, "cli"),
    }


class RunFold(Protocol):
    """One run's events folded into chunks (``feed``) and, at the end, the response."""

    def feed(self, event: dict[str, Any]) -> list[StreamChunk]:
        """Consume one event; return the chunks it carries."""
        ...

    def finish(self) -> NormalizedResponse:
        """The response of the whole run.

        Raises:
            APIStatusError: The CLI reported that the provider's API failed (typed by status).
        """
        ...


class CLIEndpoint(ResilientBackend):
    """An agent CLI run as a backend; see the module docstring.

    Args:
        cli_path: The executable (a path, or a name looked up on ``PATH``); default the
            CLI's own name on ``PATH``, resolved when a call is made.
        env: Environment variables set for the CLI process on top of this process's own
            (a base URL, a key, ``IS_SANDBOX``...). Never serialized: it may hold keys.
        **kwargs: As for :class:`~lionpride.services.types.resilient.ResilientBackend`:
            ``config`` (else built by the subclass's ``config_factory``), ``circuit_breaker``,
            ``retry_config``, config fields or default request parameters.
    """

    #: The request model a payload is validated into before a run.
    request_model: ClassVar[type[RequestSchema]]
    #: Request fields (``prompt``, ``system_prompt``...) from chat ``messages`` and the
    #: request's other fields.
    from_messages: ClassVar[Callable[..., dict[str, Any]]]
    #: The executable's name, how errors name the CLI, and how to install it.
    executable_name: ClassVar[str]
    cli_label: ClassVar[str]
    install_hint: ClassVar[str]

    cli_path: str | None = None
    _env: dict[str, str] = PrivateAttr(default_factory=dict)

    def __init__(
        self,
        *,
        cli_path: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if cli_path is not None:
            self.cli_path = os.fspath(cli_path)
        self._env = dict(env or {})

    def child_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str] | None:
        """The CLI process's environment: this process's, then ``env=``, then ``extra``;
        ``None`` (inherit unchanged) when neither adds anything."""
        if not self._env and not extra:
            return None
        return {**os.environ, **self._env, **(extra or {})}

    def create_payload(self, request: dict[str, Any]) -> dict[str, Any]:
        """Validate a request; chat ``messages`` become the prompt; ``model=None`` is kept
        (the CLI then chooses its default model).

        Raises:
            ValueError: Neither ``prompt`` nor ``messages``, unknown options, a workspace
                outside the repository, or other invalid values.
        """
        merged = {**self.config.kwargs, **request}
        messages = merged.pop("messages", None)
        if not merged.get("prompt"):
            if messages is None:
                raise errors.ValidationError(f"{self.name}: give prompt=... or messages=[...]")
            merged.update(type(self).from_messages(messages, merged))
        payload = self._validated(merged)
        if "model" in merged and merged["model"] is None:
            # The dump leaves out None values, which would bring the default model back:
            # model=None means "no --model", the CLI's own default.
            payload["model"] = None
        return payload

    async def _spawn(
        self,
        run: CLIRun,
        req: Any,
        deadline: float,
        limit: float,
        idle: float | None,
        env: Mapping[str, str] | None = None,
        cli_args: tuple[list[str], str | None] | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Spawn one CLI run of ``req`` (its arguments and stdin, or ``cli_args``; its
        workspace; ``env`` added to :meth:`child_env`) and yield its JSON events; the process
        never outlives this."""
        exe = self.executable()
        args, stdin_text = cli_args or req.cli_args()
        events = run_cli(
            run,
            exe,
            args,
            cwd=req.workspace,
            stdin_text=stdin_text,
            env=self.child_env(env),
            deadline=deadline,
            limit=limit,
            idle=idle,
        )
        async with aclosing(events):
            async for event in events:
                yield event

    def executable(self) -> str:
        """The executable to run, resolved now.

        Raises:
            ConfigurationError: It cannot be found or is not executable.
        """
        return find_executable(
            self.cli_path, self.executable_name, self.cli_label, self.install_hint
        )

    async def call(
        self, request: dict[str, Any], **options: Unpack[CallOptions]
    ) -> NormalizedResponse:
        """Run the CLI to completion and normalize its events. Runs once per call."""
        timeout, on_retry = options.get("timeout"), options.get("on_retry")
        limit = timeout or self.config.timeout
        deadline = asyncio.get_running_loop().time() + limit
        return await self._resilient(
            self._run, (request, deadline, limit, on_retry), self._deadline(timeout), on_retry
        )

    async def _run(
        self,
        request: dict[str, Any],
        deadline: float,
        limit: float,
        on_retry: RetryObserver | None,
    ) -> NormalizedResponse:
        req = self.request_model.model_validate(request)
        run = self._new_run(req, on_retry)
        async with aclosing(self._events(req, deadline, limit, None)) as events:
            async for event in events:
                run.feed(event)
        return run.finish()

    async def stream(
        self, request: dict[str, Any], **options: Unpack[StreamOptions]
    ) -> AsyncIterator[StreamChunk]:
        """Yield a chunk per reported event; the last is final with the assembled response.

        ``metadata["event"]`` names each chunk's kind. The run starts under the breaker and
        the retries, as a call's runs do and an HTTP stream's request does: a refused or
        failed start yields nothing. Leaving the loop early stops the process.
        """
        timeout, on_retry = options.get("timeout"), options.get("on_retry")
        req = self.request_model.model_validate(request)
        limit = timeout or self.config.timeout
        deadline = asyncio.get_running_loop().time() + limit
        run = self._new_run(req, on_retry)
        idle = options.get("idle_timeout")
        event, events = await self._resilient(
            self._start, (req, deadline, limit, idle), self._deadline(timeout), on_retry
        )
        index = 0
        async with aclosing(events):
            while event is not None:
                for chunk in run.feed(event):
                    chunk.index = index
                    index += 1
                    yield chunk
                event = await anext(events, None)
        yield StreamChunk(index=index, is_final=True, response=run.finish())

    async def _start(
        self, req: Any, deadline: float, limit: float, idle: float | None
    ) -> tuple[dict[str, Any] | None, AsyncGenerator[dict[str, Any], None]]:
        """Start one run: its first event (``None`` when there is none) and the rest."""
        events = self._events(req, deadline, limit, idle)
        try:
            return await anext(events, None), events
        except BaseException:
            await events.aclose()
            raise

    def _new_run(self, req: Any, on_retry: RetryObserver | None) -> RunFold:
        """A fresh fold for one run of ``req``; ``on_retry`` hears of the retries the CLI
        itself makes."""
        raise NotImplementedError

    def _events(
        self, req: Any, deadline: float, limit: float, idle: float | None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The JSON events of ``req``'s run; the process never outlives the generator."""
        raise NotImplementedError
