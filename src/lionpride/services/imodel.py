"""iModel: one face over any backend, with limits, hooks, resilience and streaming.

One call, in order: ``create_calling`` (validate; PreEventCreate hook) → the limits grant
capacity (requests plus a token reservation) → PreInvocation hook → retry[ breaker[ attempt ] ]
→ normalize → ErrorHandling hook on a failure → outcome recorded → tokens reconciled with the
real usage → PostInvocation hook → metrics → the Calling is returned, or its typed error
raised. A stream is the same route iterating. The route lives in ``_runner`` (its module
docstring says which steps run once per call and which once per attempt).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from lionpride import errors
from lionpride.core.element import Element
from lionpride.services._calling import make_calling
from lionpride.services._limits import Limits, build_limits
from lionpride.services._runner import run_call, run_stream
from lionpride.services._runtime import ModelRuntime
from lionpride.services._sync import refuse_in_loop
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.observability.observer import ModelObserver
from lionpride.services.observability.pricing import PriceTable
from lionpride.services.streaming.channel import StreamChannel, StreamChunk
from lionpride.services.types.backend import Calling, ServiceBackend
from lionpride.services.types.hook import HookOptions, HookRegistry
from lionpride.services.utilities.rate_limiter import TokenBucket

__all__ = ["iModel"]

#: A pydantic model class given as ``response_format``: ``calling.response.parsed`` is one.
ModelT = TypeVar("ModelT", bound=BaseModel)

#: CLI providers whose runs are sessions: the next call on the model resumes the last one.
_CLI_SESSIONS = frozenset({"claude_code", "gemini_code"})


class iModel(Element):
    """A backend plus everything around a call: limits, executor, hooks.

    Configured by keyword only: ``iModel(provider="openai", limit_requests=50)``.

    Args:
        backend: The backend to call; or give ``provider`` to build one.
        provider: ``openai``, ``anthropic``, ``gemini``, ``groq``, ... (see ``match_endpoint``).
        endpoint: The provider's API path.
        rate_limiter: A simple request bucket used when no executor is set.
        executor: A (possibly shared) :class:`RateLimitedExecutor`; wins over the limits.
        hook_registry: Lifecycle hooks.
        limits: The rate limits, queue and concurrency (:class:`Limits`). Its fields
            (``limit_requests``, ``limit_tokens``, ``capacity_refresh_time``,
            ``concurrency_limit``, ``queue_capacity``, ``adaptive_limits``, ``redis_url``,
            ``limit_key``, ``on_redis_error``) are also accepted as keywords, a shorthand
            for ``limits=Limits(...)``; giving both raises.
        provider_metadata: Provider state kept with the model (a CLI's ``session_id``).
        breaker_key: Share the endpoint's circuit-breaker state under this name in the
            Redis of ``redis_url``.
        prices: The price table for ``cost`` (the shipped, dated table when omitted).
        otel: ``True`` (or an OpenTelemetry tracer) to make a GenAI span per call
            (``lionpride[otel]``).
        **kwargs: Endpoint configuration and default request parameters, consumed by the
            endpoint and never stored on the iModel (``api_key``, ``base_url``, ``model``...).

    Raises:
        lionpride.errors.ConfigurationError: Neither backend nor provider, an unknown
            provider, endpoint arguments beside ``backend``, or bad limits (named).
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
        *,
        backend: ServiceBackend | None = None,
        provider: str | None = None,
        endpoint: str = "chat/completions",
        rate_limiter: TokenBucket | None = None,
        executor: RateLimitedExecutor | None = None,
        hook_registry: HookRegistry | None = None,
        limits: Limits | None = None,
        provider_metadata: dict[str, Any] | None = None,
        breaker_key: str | None = None,
        prices: PriceTable | None = None,
        otel: Any = False,
        **kwargs: Any,
    ) -> None:
        element: dict[str, Any] = {
            k: kwargs.pop(k) for k in ("id", "created_at", "metadata") if k in kwargs
        }
        limits = Limits.of(limits, kwargs)
        if backend is None:
            backend = _match_backend(provider, endpoint, kwargs)
        elif kwargs:
            raise errors.ConfigurationError(
                f"unexpected argument(s) with backend=: {', '.join(sorted(kwargs))} "
                "(configure the backend itself)"
            )
        built = build_limits(
            limits,
            backend,
            executor=executor,
            simple=rate_limiter is not None,
            breaker_key=breaker_key,
        )
        fields: dict[str, Any] = {
            "backend": backend,
            "rate_limiter": rate_limiter,
            "executor": built.executor,
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
            ModelObserver(prices, tracer),
            built,
            keeps_session=backend.provider in _CLI_SESSIONS,
            own_prices=prices is not None,
        )
        # Loaded here, not at import: it loads the HTTP endpoint and aiohttp with it (D9).
        from lionpride.services._calls_beyond_one import SplitsRequests

        runtime.splits = isinstance(backend, SplitsRequests)
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

    @property
    def limits(self) -> Limits:
        """The limits the model's executor was built from (``limit_key`` filled in when
        they are shared in Redis); an ``executor=`` passed in wins over them."""
        return self._rt.limits

    @property
    def prices(self) -> PriceTable | None:
        """The price table given as ``prices=``; ``None`` when the shipped one is used."""
        return self._rt.observer.prices if self._rt.own_prices else None

    def __repr__(self) -> str:
        return f"iModel(backend={self.name}, version={self.version})"

    # -- calls ---------------------------------------------------------------------------
    #
    # The route of a call and of a stream lives in ``_runner``; these are its doors. Their
    # call options are keyword-only and named in ``_calling.CALL_OPTIONS``: every other
    # keyword is a field of the request.

    async def create_calling(
        self,
        *,
        timeout: float | None = None,
        streaming: bool = False,
        extra_headers: dict[str, str] | None = None,
        hooks: HookOptions | None = None,
        **request: Any,
    ) -> Calling:
        """Validate a request and wrap it in a Calling, ready to invoke.

        Args:
            timeout: Seconds for the call, hooks included (else the endpoint's own).
            streaming: Mark the Calling as one for :meth:`invoke_stream`.
            extra_headers: HTTP headers to send besides the endpoint's.
            hooks: How the hooks of :attr:`hook_registry` run for this call (exit flags,
                timeouts, extra arguments); see :class:`HookOptions`.
            **request: The request's fields (``model``, ``messages``, ...). A field named
                like a call option (``calling``, ``extra_headers``, ``hooks``,
                ``idle_timeout``, ``poll_timeout``, ``priority``, ``raise_on_error``,
                ``streaming``, ``timeout``) cannot be given here: the option takes it, and
                giving one a backend's request also declares is refused.

        Raises:
            lionpride.errors.ValidationError: Invalid or unknown request parameters, or a
                request whose token reservation is larger than the token bucket (also a
                ``ValueError``).
            Exception: A PreEventCreate hook's error with ``HookOptions(create_exit=True)``.
        """
        return await make_calling(
            self,
            request,
            timeout=timeout,
            streaming=streaming,
            extra_headers=extra_headers,
            hooks=hooks,
        )

    @overload
    async def invoke(
        self,
        calling: None = None,
        *,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
        timeout: float | None = None,
        extra_headers: dict[str, str] | None = None,
        hooks: HookOptions | None = None,
        response_format: type[ModelT],
        **request: Any,
    ) -> Calling[ModelT]: ...

    @overload
    async def invoke(
        self,
        calling: Calling[ModelT],
        *,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
    ) -> Calling[ModelT]: ...

    @overload
    async def invoke(
        self,
        calling: Calling | None = None,
        *,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
        timeout: float | None = None,
        extra_headers: dict[str, str] | None = None,
        hooks: HookOptions | None = None,
        **request: Any,
    ) -> Calling: ...

    async def invoke(
        self,
        calling: Calling | None = None,
        *,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
        timeout: float | None = None,
        extra_headers: dict[str, str] | None = None,
        hooks: HookOptions | None = None,
        **request: Any,
    ) -> Calling:
        """Run one call and return its Calling (``calling.response`` holds the result).

        Args:
            calling: A Calling made by :meth:`create_calling`; otherwise one is made from
                ``request`` and the options ``timeout``, ``extra_headers`` and ``hooks``
                (as :meth:`create_calling` takes them).
            poll_timeout: Bounds the whole wait, queue plus call; past it the call is
                cancelled, its capacity returned and ``TimeoutError`` raised.
            priority: Lower runs first among calls waiting for capacity.
            raise_on_error: Raise the typed error of a failed call (with the Calling on
                ``e.calling``); ``False`` returns the failed Calling instead.
            **request: The request's fields (``model``, ``messages``, ...); none may be
                named like a call option (see :meth:`create_calling`).

        Raises:
            lionpride.errors.ValidationError: ``calling`` already ran (a Calling runs once),
                or invalid arguments (also a ``ValueError``).
            lionpride.errors.LionprideError: The call failed (with ``raise_on_error=True``).
        """
        if calling is None and self._rt.splits:
            parts = self.backend.split_request(request)  # type: ignore[attr-defined]
            if parts is not None:
                # Loaded here, not at import: it loads the HTTP endpoint (D9).
                from lionpride.services._calls_beyond_one import invoke_parts

                callings = [
                    await make_calling(
                        self, part, timeout=timeout, extra_headers=extra_headers, hooks=hooks
                    )
                    for part in parts
                ]
                return await invoke_parts(self, callings, poll_timeout, priority, raise_on_error)
        return await run_call(
            self,
            calling,
            request,
            poll_timeout=poll_timeout,
            priority=priority,
            raise_on_error=raise_on_error,
            timeout=timeout,
            extra_headers=extra_headers,
            hooks=hooks,
        )

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
        *,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
        timeout: float | None = None,
        extra_headers: dict[str, str] | None = None,
        hooks: HookOptions | None = None,
        response_format: type[ModelT],
        **request: Any,
    ) -> Calling[ModelT]: ...

    @overload
    def invoke_sync(
        self,
        calling: Calling[ModelT],
        *,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
    ) -> Calling[ModelT]: ...

    @overload
    def invoke_sync(
        self,
        calling: Calling | None = None,
        *,
        poll_timeout: float | None = None,
        priority: float | None = None,
        raise_on_error: bool = True,
        timeout: float | None = None,
        extra_headers: dict[str, str] | None = None,
        hooks: HookOptions | None = None,
        **request: Any,
    ) -> Calling: ...

    def invoke_sync(self, calling: Calling | None = None, **options_and_request: Any) -> Calling:
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
            lambda: self.invoke(calling, **options_and_request), self._rt.home
        )

    def invoke_stream(
        self,
        calling: Calling | None = None,
        *,
        poll_timeout: float | None = None,
        priority: float | None = None,
        idle_timeout: float | None = None,
        timeout: float | None = None,
        extra_headers: dict[str, str] | None = None,
        hooks: HookOptions | None = None,
        **request: Any,
    ) -> AsyncIterator[StreamChunk]:
        """Yield decoded chunks; the last is final and carries the assembled response.

        Takes the same capacity as :meth:`invoke` (one request plus the token reservation,
        reconciled with the real usage at the end), runs the same hooks (and StreamChunk
        hooks for each chunk) and records status, duration and response on the Calling.
        ``poll_timeout`` bounds the wait for capacity; ``idle_timeout`` ends a stream that
        stays silent that long with ``TimeoutError``; the other options are those of
        :meth:`invoke`. Breaking out of the loop or cancelling closes the HTTP response and
        refunds the token reservation (the request slot stays spent: the provider counted
        it). A stream that fails after its first chunk keeps its token reservation: the
        provider has already counted tokens.

        Raises:
            The typed error of a failed stream, with the Calling on ``e.calling``.
        """
        return run_stream(
            self,
            calling,
            request,
            poll_timeout=poll_timeout,
            priority=priority,
            idle_timeout=idle_timeout,
            timeout=timeout,
            extra_headers=extra_headers,
            hooks=hooks,
        )

    async def invoke_stream_with_channel(self, **arguments: Any) -> StreamChannel:
        """Wrap :meth:`invoke_stream` in a :class:`StreamChannel` for fan-out."""
        return StreamChannel(self.invoke_stream(**arguments))

    # -- serialization -------------------------------------------------------------------

    def to_dict(
        self, mode: Literal["python", "json", "db"] = "json", **dump_kw: Any
    ) -> dict[str, Any]:
        """Dump the configuration (JSON-safe by default); ``from_dict`` rebuilds it.

        Kept: the endpoint (config, breaker and retry settings, class), the limits (their
        :class:`Limits` settings, or an executor's bucket shapes: restored buckets start
        full; never the Redis URL, given again to ``from_dict``), a price table of one's
        own, ``provider_metadata`` and ``metadata``.
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
        environment-variable name is read again now. ``kw`` are ``iModel`` keywords that win
        over the stored ones (``redis_url=``, ``prices=``; ``limits=`` replaces the stored
        limits).

        Raises:
            ValueError: A malformed dict (the problem is named), an unknown endpoint class
                or request schema, or a missing environment variable for the API key.
        """
        from lionpride.services._serialization import model_from_dict

        arguments, rebuilt_executor = model_from_dict(data, **kw)
        model = cls(**arguments)
        if rebuilt_executor:  # made from the dict for this model alone: its aclose closes it
            model._rt.owns_executor = True
        return model

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


def _match_backend(provider: str | None, endpoint: str, kwargs: dict[str, Any]) -> ServiceBackend:
    """The built-in endpoint for ``provider`` and ``endpoint``, configured by ``kwargs``."""
    if provider is None:
        raise errors.ConfigurationError("Either backend or provider must be given")
    # The providers (and aiohttp with them) load on first use, not on import (D9).
    from lionpride.services.providers.match import match_endpoint

    try:
        return match_endpoint(provider, endpoint, **kwargs)
    except ValueError as exc:  # a pydantic error on a config value, say
        if isinstance(exc, errors.LionprideError):
            raise
        raise errors.ConfigurationError(str(exc), cause=exc) from exc
