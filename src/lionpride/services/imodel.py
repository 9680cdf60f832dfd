"""iModel: one face over any backend, with limits, hooks, resilience and streaming.

One call, in order: ``create_calling`` (validate; PreEventCreate hook) → the executor grants
capacity (requests plus a token reservation) → ``Calling.invoke`` (PreInvocation hook →
retry[ breaker[ attempt ] ] → normalize → ErrorHandling / PostInvocation hooks) → tokens
reconciled with the real usage → the Calling is returned, or its typed error raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from lionpride import errors
from lionpride.core._trusted import build_trusted
from lionpride.core.element import Element
from lionpride.core.event import EventStatus, retryable
from lionpride.services._imodel_support import (
    ModelRuntime,
    learned_limits,
    learns_limits,
    model_of,
    run_chunk_hooks,
    run_create_hooks,
    shared_limits,
)
from lionpride.services._sync import refuse_in_loop
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.observability.observer import ModelObserver
from lionpride.services.observability.pricing import PriceTable
from lionpride.services.streaming.channel import StreamChannel, StreamChunk
from lionpride.services.types._canonical import output_type_of
from lionpride.services.types.backend import Calling, ServiceBackend
from lionpride.services.types.hook import HookPhase, HookRegistry
from lionpride.services.utilities.adaptive import LimitLearner
from lionpride.services.utilities.rate_limiter import Reservation, TokenBucket
from lionpride.services.utilities.resilience import backoff_disabled

__all__ = ["iModel"]

#: A pydantic model class given as ``response_format``: ``calling.response.parsed`` is one.
ModelT = TypeVar("ModelT", bound=BaseModel)

#: CLI providers whose runs are sessions: the next call on the model resumes the last one.
_CLI_SESSIONS = frozenset({"claude_code", "gemini_code"})


_FAILED = (EventStatus.FAILED, EventStatus.CANCELLED, EventStatus.ABORTED)


class iModel(Element):
    """A backend plus everything around a call: limits, executor, hooks.

    Args:
        backend: The backend to call; or give ``provider`` to build one.
        provider: ``openai``, ``anthropic``, ``gemini``, ``groq``, ... (see ``match_endpoint``).
        endpoint: The provider's API path.
        rate_limiter: A simple request bucket used when no executor is set.
        executor: A (possibly shared) :class:`RateLimitedExecutor`; wins over the limits.
        hook_registry: Lifecycle hooks.
        queue_capacity: Most calls that may wait for capacity at once.
        capacity_refresh_time: The window ``T`` of the limits, in seconds.
        limit_requests: At most ``L`` requests per ``T`` (a bucket of ``L`` refilling ``L/T``/s).
        limit_tokens: At most this many tokens per ``T``, reserved before and reconciled after.
        concurrency_limit: Most calls in flight at once under the executor.
        redis_url: Keep the limits (and, with ``breaker_key``, the breaker state) in Redis,
            shared by every process that uses the same ``limit_key`` (``lionpride[redis]``).
        limit_key: The shared limits' name; defaults to the model's name plus a hash of
            its API key, so two keys never share by accident.
        on_redis_error: ``"fallback"`` (local limits, one warning, back to Redis when it
            returns) or ``"raise"``.
        breaker_key: Share the endpoint's circuit-breaker state under this name in Redis.
        adaptive_limits: Learn the limits from the provider's answers (rate-limit headers,
            or 429s where it sends none), with ``limit_requests``/``limit_tokens`` as upper
            bounds; on by default for the built-in HTTP providers, ``False`` turns it off.
        prices: The price table for ``cost`` (the shipped, dated table when omitted).
        otel: ``True`` (or an OpenTelemetry tracer) to make a GenAI span per call
            (``lionpride[otel]``).
        **kwargs: Endpoint configuration and default request parameters, consumed by the
            endpoint and never stored on the iModel (``api_key``, ``base_url``, ``model``...).
    """

    model_config = ConfigDict(extra="forbid")

    backend: ServiceBackend
    rate_limiter: TokenBucket | None = None
    executor: RateLimitedExecutor | None = None
    hook_registry: HookRegistry | None = None
    provider_metadata: dict[str, Any] = Field(default_factory=dict)

    # Runtime state lives in a plain object in the instance dict: pydantic private
    # attributes cost ~1 µs per read, and every call reads these.
    _rt: ModelRuntime

    def __init__(
        self,
        backend: ServiceBackend | None = None,
        provider: str | None = None,
        endpoint: str = "chat/completions",
        rate_limiter: TokenBucket | None = None,
        executor: RateLimitedExecutor | None = None,
        hook_registry: HookRegistry | None = None,
        queue_capacity: int = 10_000,
        capacity_refresh_time: float = 60.0,
        limit_requests: int | None = None,
        limit_tokens: int | None = None,
        concurrency_limit: int = 100,
        provider_metadata: dict[str, Any] | None = None,
        redis_url: str | None = None,
        limit_key: str | None = None,
        on_redis_error: Literal["fallback", "raise"] = "fallback",
        breaker_key: str | None = None,
        adaptive_limits: bool = True,
        prices: PriceTable | None = None,
        otel: Any = False,
        **kwargs: Any,
    ) -> None:
        element: dict[str, Any] = {
            k: kwargs.pop(k) for k in ("id", "created_at", "metadata") if k in kwargs
        }
        if backend is None:
            if provider is None:
                raise errors.ConfigurationError("Either backend or provider must be given")
            # The providers (and aiohttp with them) load on first use, not on import (D9).
            from lionpride.services.providers.match import match_endpoint

            try:
                backend = match_endpoint(provider, endpoint, **kwargs)
            except ValueError as exc:  # a pydantic error on a config value, say
                if isinstance(exc, errors.LionprideError):
                    raise
                raise errors.ConfigurationError(str(exc), cause=exc) from exc
        elif kwargs:
            raise errors.ConfigurationError(
                f"unexpected argument(s) with backend=: {', '.join(sorted(kwargs))} "
                "(configure the backend itself)"
            )
        given_executor = executor
        closers: list[Any] = []
        shared: dict[str, Any] | None = None
        if redis_url is not None:
            executor, closers, shared = shared_limits(
                backend,
                executor,
                adaptive=adaptive_limits and rate_limiter is None,
                redis_url=redis_url,
                limit_key=limit_key,
                on_redis_error=on_redis_error,
                breaker_key=breaker_key,
                limit_requests=limit_requests,
                limit_tokens=limit_tokens,
                capacity_refresh_time=capacity_refresh_time,
                queue_capacity=queue_capacity,
                concurrency_limit=concurrency_limit,
            )
        elif breaker_key is not None or limit_key is not None:
            raise errors.ConfigurationError("limit_key and breaker_key need redis_url=...")
        if executor is None and rate_limiter is None and adaptive_limits and learns_limits(backend):
            executor = learned_limits(
                backend,
                limit_requests=limit_requests,
                limit_tokens=limit_tokens,
                capacity_refresh_time=capacity_refresh_time,
                queue_capacity=queue_capacity,
                concurrency_limit=concurrency_limit,
            )
        if executor is None and (limit_requests is not None or limit_tokens is not None):
            executor = RateLimitedExecutor.from_limits(
                limit_requests=limit_requests,
                limit_tokens=limit_tokens,
                capacity_refresh_time=capacity_refresh_time,
                queue_capacity=queue_capacity,
                concurrency_limit=concurrency_limit,
            )
        fields: dict[str, Any] = {
            "backend": backend,
            "rate_limiter": rate_limiter,
            "executor": executor,
            "hook_registry": hook_registry,
            "provider_metadata": provider_metadata or {},
            **element,
        }
        super().__init__(**fields)
        tracer = None
        if otel:
            from lionpride.services.observability.otel import OtelTracer

            tracer = OtelTracer(None if otel is True else otel)
        runtime = ModelRuntime(
            ModelObserver(prices, tracer), closers, backend.provider in _CLI_SESSIONS, shared
        )
        # An executor the caller passed in may be shared with other models: theirs to close.
        runtime.owns_executor = executor is not None and executor is not given_executor
        runtime.own_prices = prices is not None
        # Loaded here, not at import: it loads the HTTP endpoint and aiohttp with it (D9).
        from lionpride.services._calls_beyond_one import SplitsRequests

        runtime.splits = isinstance(backend, SplitsRequests)
        capacity = executor.limiter.backend if executor is not None else None
        if isinstance(capacity, LimitLearner) and executor is not given_executor:
            runtime.capacity = capacity
            runtime.reopens = limit_requests is None and limit_tokens is None
        object.__setattr__(self, "_rt", runtime)

    @field_serializer("executor")
    def _ser_executor(self, executor: RateLimitedExecutor | None) -> dict[str, Any] | None:
        return executor.to_dict() if executor is not None else None

    # -- identity ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The backend's name (``openai_chat``, ``anthropic_messages``, a tool's name...)."""
        return self.backend.name

    @property
    def version(self) -> str | None:
        """The backend's configured version."""
        return self.backend.version

    @property
    def tags(self) -> set[str]:
        """The backend's tags (``{"llm", "<provider>"}`` for built-in providers)."""
        return self.backend.tags

    def __repr__(self) -> str:
        return f"iModel(backend={self.name}, version={self.version})"

    # -- calls ---------------------------------------------------------------------------

    async def create_calling(
        self,
        timeout: float | None = None,
        streaming: bool = False,
        extra_headers: dict[str, str] | None = None,
        create_event_exit_hook: bool | None = None,
        create_event_hook_timeout: float | None = 10.0,
        create_event_hook_params: dict[str, Any] | None = None,
        pre_invoke_exit_hook: bool | None = None,
        pre_invoke_hook_timeout: float | None = 30.0,
        pre_invoke_hook_params: dict[str, Any] | None = None,
        post_invoke_exit_hook: bool | None = None,
        post_invoke_hook_timeout: float | None = 30.0,
        post_invoke_hook_params: dict[str, Any] | None = None,
        **arguments: Any,
    ) -> Calling:
        """Validate a request and wrap it in a Calling, ready to invoke.

        The ``*_hook_*`` arguments configure the hooks of :attr:`hook_registry` for this
        call: ``*_exit_hook=True`` lets a failing hook abort (PreEventCreate) or fail
        (PostInvocation) the call, ``*_timeout`` bounds each phase, ``*_params`` are passed
        to the hooks as keyword arguments.

        Raises:
            lionpride.errors.ValidationError: Invalid or unknown request parameters, or a
                request whose token reservation is larger than the token bucket (also a
                ``ValueError``).
            Exception: A PreEventCreate hook's error when ``create_event_exit_hook=True``.
        """
        backend = self.backend
        session_id = self.provider_metadata.get("session_id")
        if session_id and "resume" not in arguments and self._rt.keeps_session:
            # A CLI backend resumes the model's last session unless told otherwise.
            arguments["resume"] = session_id
        hooks = self.hook_registry
        if hooks is not None and hooks.handles(HookPhase.PreEventCreate):
            await run_create_hooks(
                hooks,
                backend.event_type,
                bool(create_event_exit_hook),
                create_event_hook_timeout,
                create_event_hook_params or {},
            )
        try:
            payload = backend.create_payload(arguments)
        except ValueError as exc:
            # Translated once, here: whatever a backend's own checks raise, a bad request
            # is a ValidationError (still a ValueError) for the caller.
            if isinstance(exc, errors.LionprideError):
                raise
            raise errors.ValidationError(str(exc), cause=exc) from exc
        fields: dict[str, Any] = {
            "backend": backend,
            "payload": payload,
            "retry_listener": self._on_retry,
        }
        if "response_format" in arguments or "response_format" in backend.config.kwargs:
            output_type = output_type_of({**backend.config.kwargs, **arguments})
            if output_type is not None:
                fields["output_type"] = output_type
        if streaming:
            fields["streaming"] = True
        executor = self.executor
        # Local or shared in Redis alike: whatever limits tokens says how many it holds.
        if executor is not None:
            capacity = executor.token_capacity
            if capacity is not None:
                tokens = backend.estimate_tokens(payload)
                if tokens > capacity:
                    raise _too_many_tokens(tokens, capacity)
                fields["reserved_tokens"] = tokens
            elif self._rt.capacity is not None and self._rt.capacity.mode == "first":
                # Before the first answer the token limit is not known yet, and this call
                # may be granted after it is: it reserves as if it were.
                fields["reserved_tokens"] = backend.estimate_tokens(payload)
        if timeout is None and not extra_headers and hooks is None:
            # Only the model's own, already valid values: no validation needed.
            return build_trusted(backend.event_type, fields)
        # The caller's values are validated (only those that differ from the defaults).
        if timeout is not None:
            fields["timeout"] = timeout
        if extra_headers:
            fields["extra_headers"] = extra_headers
        if hooks is not None:
            fields.update(
                hook_registry=hooks,
                pre_invoke_exit_hook=bool(pre_invoke_exit_hook),
                pre_invoke_hook_timeout=pre_invoke_hook_timeout,
                pre_invoke_hook_params=pre_invoke_hook_params or {},
                post_invoke_exit_hook=bool(post_invoke_exit_hook),
                post_invoke_hook_timeout=post_invoke_hook_timeout,
                post_invoke_hook_params=post_invoke_hook_params or {},
            )
        return backend.event_type(**fields)

    @overload
    async def invoke(
        self,
        calling: None = None,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
        *,
        response_format: type[ModelT],
        **arguments: Any,
    ) -> Calling[ModelT]: ...

    @overload
    async def invoke(
        self,
        calling: Calling[ModelT],
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
    ) -> Calling[ModelT]: ...

    @overload
    async def invoke(
        self,
        calling: Calling | None = None,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
        **arguments: Any,
    ) -> Calling: ...

    async def invoke(
        self,
        calling: Calling | None = None,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
        **arguments: Any,
    ) -> Calling:
        """Run one call and return its Calling (``calling.response`` holds the result).

        Args:
            calling: A Calling made by :meth:`create_calling`; otherwise one is made from
                ``arguments``.
            poll_timeout: Bounds the whole wait, queue plus call; past it the call is
                cancelled, its capacity returned and ``TimeoutError`` raised.
            priority: Lower runs first among calls waiting for capacity.
            raise_on_error: Raise the typed error of a failed call (with the Calling on
                ``e.calling``); ``False`` returns the failed Calling instead.
            **arguments: The request (``model``, ``messages``, ...) and ``timeout``.

        Raises:
            lionpride.errors.ValidationError: ``calling`` already ran (a Calling runs once),
                or invalid arguments (also a ``ValueError``).
            lionpride.errors.LionprideError: The call failed (with ``raise_on_error=True``).
        """
        if calling is None:
            if self._rt.splits:
                parts = self.backend.split_request(arguments)  # type: ignore[attr-defined]
                if parts is not None:
                    from lionpride.services._calls_beyond_one import invoke_parts

                    return await invoke_parts(
                        self,
                        parts,
                        poll_timeout=poll_timeout,
                        priority=priority,
                        raise_on_error=raise_on_error,
                    )
            calling = await self.create_calling(**arguments)
        elif calling.execution.status is not EventStatus.PENDING:
            raise _ran_already(calling)
        self._rt.note_home()
        observer = self._rt.observer
        if observer.tracer is not None:
            calling.trace = observer.start(self.backend.provider, model_of(calling))
        try:
            executor = self._limits()
            if executor is not None:
                tokens = calling.reserved_tokens
                # Usage is charged wherever tokens are limited, also after a call that
                # reserved none (a backend that cannot estimate in advance), and a
                # reservation is always settled (made before a learned limit was known).
                used = (
                    calling._tokens_used if tokens or executor.token_capacity is not None else None
                )
                if poll_timeout is None:
                    # A lease: the call is awaited here, without the wrapper frame ``execute``
                    # would add (granted at once, the common case, it never suspends).
                    async with executor.lease(tokens=tokens, priority=priority) as grant:
                        if grant.waited:
                            calling._on_granted(grant.waited)
                        await calling.invoke()
                        grant.settle(None if used is None else used())
                else:
                    await executor.execute(
                        calling.invoke,
                        tokens=tokens,
                        priority=priority,
                        timeout=poll_timeout,
                        settle=used,
                        on_granted=calling._on_granted,
                    )
            elif poll_timeout is None:
                if self.rate_limiter is not None:
                    await self._acquire_simple()
                await calling.invoke()
            else:
                # One deadline for the wait and the call together.
                async with asyncio.timeout(poll_timeout):
                    if self.rate_limiter is not None:
                        await self._acquire_simple()
                    await calling.invoke()
        except TimeoutError as exc:
            err = exc if isinstance(exc, errors.TimeoutError) else _timeout(poll_timeout, exc)
            if calling.execution.status is EventStatus.PENDING:
                calling.execution.status = EventStatus.CANCELLED
            calling.execution.error = err
            calling.execution.retryable = True
        except asyncio.CancelledError:
            # Calling.invoke recorded a cancellation while running; one still queued is too.
            if calling.execution.status is EventStatus.PENDING:
                calling.execution.status = EventStatus.CANCELLED
            observer.finish(
                calling.execution, self.backend.provider, model_of(calling), calling.trace
            )
            raise
        except Exception as exc:
            # Calling.invoke never raises, so this is a refusal before the call ran (executor
            # closed, queue full, shared limits unreachable): the call's own failure.
            ex = calling.execution
            ex.status, ex.error, ex.retryable = EventStatus.FAILED, exc, retryable(exc)
        return self._finish(calling, raise_on_error)

    def _finish(self, calling: Calling, raise_on_error: bool) -> Calling:
        ex = calling.execution
        rt = self._rt
        rt.observer.finish(ex, self.backend.provider, model_of(calling), calling.trace)
        if rt.keeps_session:
            self._keep_session(calling)
        if ex.status in _FAILED and ex.error is not None:
            err = ex.error
            if isinstance(err, errors.RateLimitError):
                self._pause(err)
            if raise_on_error:
                err.calling = calling  # type: ignore[attr-defined]
                raise err
        return calling

    async def count_tokens(self, **request: Any) -> int:
        """The input tokens of a request (canonical or native), as the provider counts them.

        Anthropic (``/v1/messages/count_tokens``), Gemini (``:countTokens``) and the OpenAI
        Responses endpoint (``/v1/responses/input_tokens``) are asked, in one call through
        the model's limits (one request, no tokens), retries and invocation hooks. Every
        other backend (chat completions, which has no counting route, a CLI, a Tool) gets
        the local estimate that the token limits reserve (tiktoken when available, else a
        character heuristic) without any call.

        Raises:
            ValueError: An invalid request, as for :meth:`invoke`.
            lionpride.errors.LionprideError: The counting call failed.
        """
        from lionpride.services._calls_beyond_one import count_tokens

        return await count_tokens(self, request)

    @overload
    def invoke_sync(
        self,
        calling: None = None,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
        *,
        response_format: type[ModelT],
        **arguments: Any,
    ) -> Calling[ModelT]: ...

    @overload
    def invoke_sync(
        self,
        calling: Calling[ModelT],
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
    ) -> Calling[ModelT]: ...

    @overload
    def invoke_sync(
        self,
        calling: Calling | None = None,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
        **arguments: Any,
    ) -> Calling: ...

    def invoke_sync(
        self,
        calling: Calling | None = None,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
        **arguments: Any,
    ) -> Calling:
        """:meth:`invoke` for code that is not async: a script, a plain function.

        Same arguments, result and errors as :meth:`invoke`, with the model's limits,
        retries and breaker. The call runs on an event loop private to the model, in a thread
        of its own, which every thread's blocking calls share and which is kept for the next
        call, so that connections are pooled and the limits hold across threads;
        :meth:`close` (or ``with iModel(...) as model:``) stops it. In a thread of an async
        program whose loop has used the model, the call runs on that loop instead, so that
        the limits hold across both kinds of call. On the main thread Ctrl-C cancels the call
        and raises ``KeyboardInterrupt`` once its capacity is given back.

        Raises:
            lionpride.errors.ExecutionError: An event loop runs in this thread (async code,
                a notebook cell): ``await model.invoke(...)`` there.
        """
        refuse_in_loop("invoke_sync", "`await model.invoke(...)`")
        return self._rt.loop().run(
            lambda: self.invoke(calling, poll_timeout, priority, raise_on_error, **arguments),
            self._rt.home,
        )

    async def _acquire_simple(self, timeout: float | None = None) -> None:
        """Take one request from the simple ``rate_limiter`` bucket, or time out."""
        assert self.rate_limiter is not None
        if not await self.rate_limiter.acquire(1, timeout=timeout):
            raise errors.TimeoutError(f"rate_limiter granted no capacity within {timeout}s")

    def _limits(self) -> RateLimitedExecutor | None:
        """The executor for a call on the running loop.

        Learned limits serve one event loop at a time (their queue, timer and state belong
        to it; a loop that is no longer running hands them on): a call from a loop another
        thread runs at the same time goes without them, and the first such call warns.
        """
        capacity = self._rt.capacity
        if capacity is not None and not capacity.serves_here():
            return None
        return self.executor

    def _keep_session(self, calling: Calling) -> None:
        """Remember a CLI session id so the next call on this model resumes it (for
        backends whose runs are sessions: ``ModelRuntime.keeps_session``)."""
        response = calling.execution.response
        if response is not None:
            session_id = response.metadata.get("session_id")
            if session_id:
                self.provider_metadata["session_id"] = session_id

    def _on_retry(self, calling: Calling, attempt: int, error: BaseException, delay: float) -> None:
        """Before a retry: a 429 pauses the limits, and the retry's request is counted.

        The call's grant paid for one request. When the failed attempt reached the provider
        (it answered with a status, or took too long to answer), the retry is one more: left
        uncounted, it would let the next grant reach a provider with no room left for it (a
        429, whose retry is one more uncounted request, and so on). An attempt that never
        connected spent nothing, so its retry uses the grant.
        """
        if isinstance(error, errors.RateLimitError):
            self._pause(error)
        if isinstance(error, errors.APIStatusError | errors.TimeoutError):
            executor = self._limits()
            if executor is not None:
                executor.charge(1)
            elif self.rate_limiter is not None:
                self.rate_limiter.charge(1)
        self._rt.observer.retry(
            self.backend.provider, model_of(calling), attempt, error, delay, calling.trace
        )

    def _pause(self, error: errors.RateLimitError) -> None:
        """A 429 pauses the model's buckets so queued calls back off together.

        A 429 that no wait cures (``retryable`` false: a spent quota, a request larger than
        the provider's limit) pauses nothing: the calls behind it fail or pass on their own
        instead of queueing for a hint that does not apply to them. Under ``no_backoff()``
        (test mode) nothing pauses, as no retry sleeps either.
        """
        if not error.retry_after or not error.retryable or backoff_disabled():
            return
        executor = self._limits()
        if executor is not None:
            executor.pause(error.retry_after)
        if self.rate_limiter is not None:
            self.rate_limiter.pause(error.retry_after)

    async def invoke_stream(
        self,
        calling: Calling | None = None,
        *,
        priority: float | None = None,
        poll_timeout: float | None = None,
        idle_timeout: float | None = None,
        **arguments: Any,
    ) -> AsyncIterator[StreamChunk]:
        """Yield decoded chunks; the last is final and carries the assembled response.

        Takes the same capacity as :meth:`invoke` (one request plus the token reservation,
        reconciled with the real usage at the end) and records status, duration and response
        on the Calling. ``poll_timeout`` bounds the wait for capacity; ``idle_timeout`` ends
        a stream that stays silent that long with ``TimeoutError``. Breaking out of the loop
        or cancelling closes the HTTP response and refunds the token reservation (the
        request slot stays spent: the provider counted it). A stream that fails after its
        first chunk keeps its token reservation: the provider has already counted tokens.

        Raises:
            The typed error of a failed stream, with the Calling on ``e.calling``.
        """
        if calling is None:
            calling = await self.create_calling(streaming=True, **arguments)
        elif calling.execution.status is not EventStatus.PENDING:
            raise _ran_already(calling)
        self._rt.note_home()
        ex = calling.execution
        observer = self._rt.observer
        provider, model = self.backend.provider, model_of(calling)
        if observer.tracer is not None:
            calling.trace = observer.start(provider, model)
        async with contextlib.AsyncExitStack() as stack:
            reservation = None
            try:
                executor = self._limits()
                if executor is not None:
                    # A lease: the executor's queue order, queue bound, concurrency limit
                    # and stats apply to streams as to calls, for as long as the stream runs.
                    reservation = await stack.enter_async_context(
                        executor.lease(
                            tokens=calling.reserved_tokens, priority=priority, timeout=poll_timeout
                        )
                    )
                    ex.queue_wait = reservation.waited
                elif self.rate_limiter is not None:
                    await self._acquire_simple(poll_timeout)
            except asyncio.CancelledError:
                ex.status = EventStatus.CANCELLED
                observer.finish(ex, provider, model, calling.trace)
                raise
            except Exception as exc:
                if isinstance(exc, TimeoutError):
                    ex.status, ex.error, ex.retryable = EventStatus.CANCELLED, exc, True
                else:
                    ex.status, ex.error, ex.retryable = EventStatus.FAILED, exc, retryable(exc)
                observer.finish(ex, provider, model, calling.trace)
                exc.calling = calling  # type: ignore[attr-defined]
                raise
            granted = self._stream_granted(calling, reservation, idle_timeout)
            final: StreamChunk | None = None
            async with aclosing(granted) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    if chunk.is_final:  # the outcome is recorded before it comes out
                        final = chunk
                        break
                    yield chunk
        # The capacity lease is given back first: a caller who stops at the final chunk (and
        # never resumes this generator) holds no concurrency slot.
        if final is not None:
            yield final

    async def _stream_granted(
        self, calling: Calling, reservation: Reservation | None, idle_timeout: float | None
    ) -> AsyncIterator[StreamChunk]:
        """The stream once capacity is held: hooks, chunks, outcome, reconciliation."""
        ex = calling.execution
        observer = self._rt.observer
        provider, model = self.backend.provider, model_of(calling)
        ex.status = EventStatus.PROCESSING
        ex.attempts = 1
        start = time.perf_counter()
        used = 0
        final: StreamChunk | None = None
        hooks = calling.hook_registry
        chunk_hooks = hooks is not None and hooks.handles(HookPhase.StreamChunk)
        sent = False  # past the PreInvocation hooks: a failure is the backend's
        next_index = 0
        try:
            if hooks is not None and hooks.handles(HookPhase.PreInvocation):
                await calling._run_pre_hooks(hooks)
            sent = True
            backend_stream = self.backend.stream(
                calling.payload,
                extra_headers=calling.extra_headers,
                timeout=calling.timeout,
                on_retry=calling._on_retry,
                idle_timeout=idle_timeout,
            )
            # aclosing: leaving early closes the backend's stream (its HTTP response) now,
            # not whenever the garbage collector finalizes the generator.
            async with aclosing(backend_stream) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    if chunk.is_final:
                        if calling.output_type is not None and chunk.response is not None:
                            chunk.response = calling.parse_output(chunk.response)
                        ex.response = chunk.response
                        used = calling._tokens_used()
                        if self._rt.keeps_session:
                            self._keep_session(calling)
                    if chunk_hooks:
                        await run_chunk_hooks(calling, chunk)
                    if chunk.is_final:
                        final = chunk
                        break
                    next_index = chunk.index + 1
                    yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            ex.status = EventStatus.CANCELLED
            ex.duration = time.perf_counter() - start
            if reservation is not None:
                reservation.settle(used)
            observer.finish(ex, provider, model, calling.trace)
            raise
        except Exception as exc:
            if isinstance(exc, errors.RateLimitError):
                self._pause(exc)
            recovered = None
            if sent and hooks is not None and hooks.handles(HookPhase.ErrorHandling):
                # As for invoke: a hook may answer for the failed backend (the stream then
                # ends with a final chunk carrying its response).
                recovered = await calling._run_error_hooks(hooks, exc)
            failure: Exception = exc
            if recovered is not None:
                try:  # what a hook answers is validated, as invoke does
                    recovered = calling.parse_output(recovered)
                except errors.OutputValidationError as invalid:
                    failure, recovered = invalid, None
            if recovered is None:
                ex.status, ex.error = EventStatus.FAILED, failure
                ex.retryable = retryable(failure)
                if next_index:
                    # Failed after content came: the provider has read the prompt and
                    # written part of an answer, and counted them; with no usage reported,
                    # the reservation stays spent rather than letting the client run ahead.
                    used = calling.reserved_tokens
                await self._stream_ended(calling, reservation, used, start)
                failure.calling = calling  # type: ignore[attr-defined]
                if failure is exc:
                    raise
                raise failure from exc  # the hook's answer to exc did not validate
            ex.response = recovered
            used = calling._tokens_used()
            final = StreamChunk(index=next_index, is_final=True, response=recovered)
        ex.status, ex.retryable = EventStatus.COMPLETED, False
        await self._stream_ended(calling, reservation, used, start)
        if ex.error is not None:
            err = ex.error
            err.calling = calling  # type: ignore[attr-defined]
            raise err
        if final is not None:
            # Yielded once the outcome is recorded: a caller who stops at the final chunk
            # (and never resumes the generator) still leaves a completed call behind.
            yield final

    async def _stream_ended(
        self, calling: Calling, reservation: Reservation | None, used: int, start: float
    ) -> None:
        """Record a stream's outcome (its status already set): duration, tokens settled,
        PostInvocation hooks, metrics."""
        ex = calling.execution
        ex.duration = time.perf_counter() - start
        if reservation is not None:
            reservation.settle(used)
        hooks = calling.hook_registry
        if hooks is not None and hooks.handles(HookPhase.PostInvocation):
            await calling._run_post_hooks(hooks)
        self._rt.observer.finish(ex, self.backend.provider, model_of(calling), calling.trace)

    async def invoke_stream_with_channel(self, **arguments: Any) -> StreamChannel:
        """Wrap :meth:`invoke_stream` in a :class:`StreamChannel` for fan-out."""
        return StreamChannel(self.invoke_stream(**arguments))

    # -- serialization -------------------------------------------------------------------

    def to_dict(
        self, mode: Literal["python", "json", "db"] = "json", **dump_kw: Any
    ) -> dict[str, Any]:
        """Dump the configuration (JSON-safe by default); ``from_dict`` rebuilds it.

        Kept: the endpoint (config, breaker and retry settings, class), the limits
        (shapes only: restored buckets start full), ``provider_metadata`` and ``metadata``.
        Never kept: ``id``/``created_at`` (a restored model is a new one), runtime state,
        raw credentials (only environment-variable names), and ``hook_registry`` (functions
        are code, not configuration: attach hooks again after loading).

        Raises:
            NotImplementedError: The backend is a Tool (or any non-Endpoint backend).
        """
        from lionpride.services._serialization import model_to_dict

        return model_to_dict(self, mode)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kw: Any) -> iModel:
        """Rebuild an iModel from :meth:`to_dict` output, with full rate-limit capacity.

        The endpoint class must be a defined :class:`Endpoint` subclass and the request
        schema a registered one; nothing is imported by name. An ``api_key`` stored as an
        environment-variable name is read again now.

        Raises:
            ValueError: A malformed dict (the problem is named), an unknown endpoint class
                or request schema, or a missing environment variable for the API key.
        """
        from lionpride.services._serialization import model_from_dict

        return model_from_dict(cls, data, **kw)

    # -- lifetime ------------------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """Counters, tokens, cost and latency percentiles of this model's calls, plus live
        gauges: queue depth, calls in flight, limiter levels and breaker state, and the
        limits learned from the provider (``learned_limits``, as :meth:`learned_limits`).

        Memory stays bounded however many calls run (histograms, not lists).
        """
        executor = self.executor
        breaker = getattr(self.backend, "circuit_breaker", None)
        snapshot = self._rt.observer.snapshot(
            queue_depth=executor.limiter.queue_depth if executor is not None else 0,
            in_flight=executor.stats()["in_flight"] if executor is not None else None,
            limiter_levels=executor.limiter.levels if executor is not None else None,
            breaker_state=str(breaker.state) if breaker is not None else None,
        )
        snapshot["learned_limits"] = self.learned_limits()
        return snapshot

    def learned_limits(self) -> dict[str, dict[str, Any]] | None:
        """The limits applied now by family (``requests``, ``tokens``, Anthropic's
        ``input_tokens``/``output_tokens``): ``limit``, ``per_minute``, ``source``
        (``headers``, ``429s``, ``configured``, ``unlimited``) and ``updated_at`` (wall
        time of the last change); ``None`` when the model does not learn its limits."""
        capacity = self._rt.capacity
        return capacity.learned() if capacity is not None else None

    async def aclose(self) -> None:
        """Close the backend's connections and stop the executor's background work.

        An executor passed in as ``executor=`` is left open: it may be shared by other
        models, and is closed by whoever made it. The event loop of :meth:`invoke_sync`,
        if any, does the closing (its waiters and its session are its own), then stops.
        """
        sync = self._rt.sync
        if sync is None or sync.runs_here():
            await self._close_here()
        else:
            await sync.aclose(self._close_here)

    async def _close_here(self) -> None:
        if self.executor is not None and self._rt.owns_executor:
            await self.executor.aclose()
            if self._rt.reopens:
                # Limits only learned (none configured) are the model's own state, like its
                # endpoint's session: it may be used again after closing, as a model
                # without limits may, and keeps what it learned.
                self.executor.reopen()
        for close in self._rt.closers:
            await close()
        await self.backend.aclose()

    async def __aenter__(self) -> iModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def close(self) -> None:
        """:meth:`aclose` for code that is not async, which also stops the event loop of
        :meth:`invoke_sync` once the calls on it (from other threads) have ended.

        Raises:
            lionpride.errors.ExecutionError: An event loop runs in this thread: use
                ``await model.aclose()`` there.
        """
        refuse_in_loop("close", "`await model.aclose()`")
        self._rt.loop().close(self._close_here, self._rt.home)

    def __enter__(self) -> iModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _too_many_tokens(tokens: int, capacity: int) -> errors.ValidationError:
    return errors.ValidationError(
        f"request needs {tokens} tokens (prompt estimate plus output budget) but "
        f"the token bucket holds at most {capacity}: lower max_tokens or raise limit_tokens"
    )


def _ran_already(calling: Calling) -> errors.ValidationError:
    # Running it again would take capacity for a call that sends nothing.
    return errors.ValidationError(
        f"Calling {calling.id} already ran (status {calling.execution.status}); "
        "make a new one with create_calling() to call again"
    )


def _timeout(limit: float | None, exc: BaseException) -> errors.TimeoutError:
    return errors.TimeoutError(f"call did not finish within poll_timeout={limit}s", cause=exc)
