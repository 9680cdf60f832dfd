"""iModel: one face over any backend, with limits, hooks, resilience and streaming.

One call, in order: ``create_calling`` (validate; PreEventCreate hook) → the executor grants
capacity (requests plus a token reservation) → ``Calling.invoke`` (PreInvocation hook →
retry[ breaker[ attempt ] ] → normalize → ErrorHandling / PostInvocation hooks) → tokens
reconciled with the real usage → the Calling is returned, or its typed error raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic import ValidationError as PydanticValidationError

from lionpride import errors
from lionpride.core.element import Element
from lionpride.core.event import EventStatus, retryable
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.providers._common import RequestModel
from lionpride.services.providers.match import match_endpoint
from lionpride.services.streaming.channel import StreamChannel, StreamChunk
from lionpride.services.types.backend import Calling, ServiceBackend
from lionpride.services.types.endpoint import Endpoint
from lionpride.services.types.hook import HookPhase, HookRegistry
from lionpride.services.utilities.rate_limiter import RateLimitConfig, TokenBucket
from lionpride.services.utilities.resilience import backoff_disabled

__all__ = ["iModel"]

_log = logging.getLogger(__name__)

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
        **kwargs: Endpoint configuration and default request parameters, consumed by the
            endpoint and never stored on the iModel (``api_key``, ``base_url``, ``model``...).
    """

    model_config = ConfigDict(extra="forbid")

    backend: ServiceBackend
    rate_limiter: TokenBucket | None = None
    executor: RateLimitedExecutor | None = None
    hook_registry: HookRegistry | None = None
    provider_metadata: dict[str, Any] = Field(default_factory=dict)

    _closed: bool = PrivateAttr(default=False)

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
        **kwargs: Any,
    ) -> None:
        element: dict[str, Any] = {
            k: kwargs.pop(k) for k in ("id", "created_at", "metadata") if k in kwargs
        }
        if backend is None:
            if provider is None:
                raise ValueError("Either backend or provider must be given")
            backend = match_endpoint(provider, endpoint, **kwargs)
        elif kwargs:
            raise ValueError(
                f"unexpected argument(s) with backend=: {', '.join(sorted(kwargs))} "
                "(configure the backend itself)"
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
            ValueError: Invalid or unknown request parameters, or a request whose token
                reservation is larger than the token bucket.
            Exception: A PreEventCreate hook's error when ``create_event_exit_hook=True``.
        """
        backend = self.backend
        hooks = self.hook_registry
        if hooks is None:
            payload = backend.create_payload(arguments)
            return backend.event_type(
                backend=backend,
                payload=payload,
                timeout=timeout,
                streaming=streaming,
                extra_headers=extra_headers,
                reserved_tokens=self._reservation(payload),
                retry_listener=self._on_retry,
            )
        if hooks.handles(HookPhase.PreEventCreate):
            await _run_create_hooks(
                hooks,
                backend.event_type,
                bool(create_event_exit_hook),
                create_event_hook_timeout,
                create_event_hook_params or {},
            )
        payload = backend.create_payload(arguments)
        return backend.event_type(
            backend=backend,
            payload=payload,
            timeout=timeout,
            streaming=streaming,
            extra_headers=extra_headers,
            reserved_tokens=self._reservation(payload),
            retry_listener=self._on_retry,
            hook_registry=hooks,
            pre_invoke_exit_hook=bool(pre_invoke_exit_hook),
            pre_invoke_hook_timeout=pre_invoke_hook_timeout,
            pre_invoke_hook_params=pre_invoke_hook_params or {},
            post_invoke_exit_hook=bool(post_invoke_exit_hook),
            post_invoke_hook_timeout=post_invoke_hook_timeout,
            post_invoke_hook_params=post_invoke_hook_params or {},
        )

    def _reservation(self, payload: dict[str, Any]) -> int:
        executor = self.executor
        bucket = executor.limiter.token_bucket if executor is not None else None
        if bucket is None:
            return 0
        tokens = self.backend.estimate_tokens(payload)
        if tokens > bucket.capacity:
            raise ValueError(
                f"request needs {tokens} tokens (prompt estimate plus output budget) but "
                f"the token bucket holds at most {bucket.capacity}: lower max_tokens or "
                "raise limit_tokens"
            )
        return tokens

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
        """
        if calling is None:
            calling = await self.create_calling(**arguments)
        try:
            if self.executor is not None:
                await self.executor.execute(
                    calling.invoke,
                    tokens=calling.reserved_tokens,
                    priority=priority,
                    timeout=poll_timeout,
                    settle=lambda _: _used_tokens(calling),
                    on_granted=calling._on_granted,
                )
            else:
                if self.rate_limiter is not None:
                    await self.rate_limiter.acquire(1, timeout=poll_timeout)
                if poll_timeout is None:
                    await calling.invoke()
                else:
                    async with asyncio.timeout(poll_timeout):
                        await calling.invoke()
        except TimeoutError as exc:
            err = exc if isinstance(exc, errors.TimeoutError) else _timeout(poll_timeout, exc)
            if calling.execution.status is EventStatus.PENDING:
                calling.execution.status = EventStatus.CANCELLED
            calling.execution.error = err
            calling.execution.retryable = True
        return self._finish(calling, raise_on_error)

    def _finish(self, calling: Calling, raise_on_error: bool) -> Calling:
        ex = calling.execution
        if ex.status in _FAILED and ex.error is not None:
            err = ex.error
            if isinstance(err, errors.RateLimitError):
                self._pause(err)
            if raise_on_error:
                err.calling = calling  # type: ignore[attr-defined]
                raise err
        return calling

    def _on_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        if isinstance(error, errors.RateLimitError):
            self._pause(error)

    def _pause(self, error: errors.RateLimitError) -> None:
        """A 429 pauses the model's buckets so queued calls back off together.

        Under ``no_backoff()`` (test mode) nothing pauses, as no retry sleeps either.
        """
        if error.retry_after and self.executor is not None and not backoff_disabled():
            self.executor.pause(error.retry_after)

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
        request slot stays spent: the provider counted it).

        Raises:
            The typed error of a failed stream, with the Calling on ``e.calling``.
        """
        if calling is None:
            calling = await self.create_calling(streaming=True, **arguments)
        ex = calling.execution
        reservation = None
        if self.executor is not None:
            reservation = await self.executor.limiter.acquire(
                1, calling.reserved_tokens, priority=priority or 0.0, timeout=poll_timeout
            )
            ex.queue_wait = reservation.waited
        elif self.rate_limiter is not None:
            await self.rate_limiter.acquire(1, timeout=poll_timeout)
        ex.status = EventStatus.PROCESSING
        ex.attempts = 1
        start = time.perf_counter()
        used = 0
        hooks = calling.hook_registry
        chunk_hooks = hooks is not None and hooks.handles(HookPhase.StreamChunk)
        try:
            if hooks is not None and hooks.handles(HookPhase.PreInvocation):
                await calling._run_pre_hooks(hooks)
            async for chunk in self.backend.stream(
                calling.payload,
                extra_headers=calling.extra_headers,
                timeout=calling.timeout,
                on_retry=calling._on_retry,
                idle_timeout=idle_timeout,
            ):
                if chunk.is_final:
                    ex.response = chunk.response
                    used = _used_tokens(calling)
                if chunk_hooks:
                    await _run_chunk_hooks(calling, chunk)
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            ex.status = EventStatus.CANCELLED
            ex.duration = time.perf_counter() - start
            if reservation is not None:
                reservation.settle(used)
            raise
        except Exception as exc:
            ex.status, ex.error, ex.retryable = EventStatus.FAILED, exc, retryable(exc)
            ex.duration = time.perf_counter() - start
            if reservation is not None:
                reservation.settle(used)
            if isinstance(exc, errors.RateLimitError):
                self._pause(exc)
            if hooks is not None and hooks.handles(HookPhase.PostInvocation):
                await calling._run_post_hooks(hooks)
            exc.calling = calling  # type: ignore[attr-defined]
            raise
        ex.status, ex.retryable = EventStatus.COMPLETED, False
        ex.duration = time.perf_counter() - start
        if reservation is not None:
            reservation.settle(used)
        if hooks is not None and hooks.handles(HookPhase.PostInvocation):
            await calling._run_post_hooks(hooks)
            if ex.error is not None:
                err = ex.error
                err.calling = calling  # type: ignore[attr-defined]
                raise err

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
        backend = self.backend
        if not isinstance(backend, Endpoint):
            # Tool.to_dict raises its own explanation; other backends get a generic one.
            backend.to_dict()
            raise NotImplementedError(
                f"{type(backend).__name__} backends cannot be serialized; use an Endpoint"
            )
        json_mode: Literal["python", "json"] = "python" if mode == "python" else "json"
        data = backend.to_dict(mode=json_mode, exclude={"id", "created_at"})
        data["config"]["request_options"] = request_schema_name(backend.config.request_options)
        out: dict[str, Any] = {
            "backend": data,
            "executor": self.executor.to_dict() if self.executor is not None else None,
            "rate_limiter": self.rate_limiter.to_dict() if self.rate_limiter is not None else None,
            "provider_metadata": dict(self.provider_metadata),
            "metadata": {**self.metadata, "lion_class": self.class_name(full=True)},
        }
        if json_mode == "json":
            out = json.loads(json.dumps(out, default=_json_default))
        return out

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
        if not isinstance(data, dict):
            raise ValueError(f"iModel.from_dict needs a dict, got {type(data).__name__}")
        unknown = set(data) - _DICT_KEYS
        if unknown:
            raise ValueError(f"iModel.from_dict: unknown key(s) {sorted(unknown)}")
        backend = _load_backend(data.get("backend"))
        executor = data.get("executor")
        if executor is not None and not isinstance(executor, dict):
            raise ValueError(
                f"iModel.from_dict: 'executor' must be a dict or None, got {executor!r}"
            )
        limiter = data.get("rate_limiter")
        if limiter is not None and not isinstance(limiter, dict):
            raise ValueError(
                f"iModel.from_dict: 'rate_limiter' must be a dict or None, got {limiter!r}"
            )
        meta = data.get("provider_metadata") or {}
        if not isinstance(meta, dict):
            raise ValueError("iModel.from_dict: 'provider_metadata' must be a dict")
        metadata = dict(data.get("metadata") or {})
        metadata.pop("lion_class", None)
        try:
            rebuilt_executor = (
                RateLimitedExecutor.from_dict(executor) if executor is not None else None
            )
            bucket = (
                TokenBucket(RateLimitConfig(limiter["capacity"], limiter["refill_rate"]))
                if limiter is not None
                else None
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"iModel.from_dict: malformed limits: {exc!r}") from exc
        return cls(
            backend=backend,
            executor=rebuilt_executor,
            rate_limiter=bucket,
            provider_metadata=dict(meta),
            metadata=metadata,
            **kw,
        )

    # -- lifetime ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the backend's connections and stop the executor's background work."""
        if self.executor is not None:
            await self.executor.aclose()
        await self.backend.aclose()

    async def __aenter__(self) -> iModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _run_create_hooks(
    hooks: HookRegistry,
    calling_type: type[Calling],
    exit_hook: bool,
    timeout: float | None,
    params: dict[str, Any],
) -> None:
    """Run PreEventCreate hooks; their failure aborts creation only when ``exit_hook``."""
    try:
        await hooks.run(
            HookPhase.PreEventCreate, calling_type, timeout=timeout, exit=exit_hook, **params
        )
    except Exception as exc:
        if exit_hook:
            raise
        _log.warning("PreEventCreate hook failed (ignored): %r", exc)


async def _run_chunk_hooks(calling: Calling, chunk: StreamChunk) -> None:
    """Run StreamChunk hooks for one chunk; a failing hook is logged, the stream goes on."""
    hooks = calling.hook_registry
    assert hooks is not None
    try:
        await hooks.run(
            HookPhase.StreamChunk, calling, timeout=calling.post_invoke_hook_timeout, chunk=chunk
        )
    except Exception as exc:
        _log.warning("StreamChunk hook failed for %s: %r", calling.id, exc)


_DICT_KEYS = frozenset(
    {"backend", "executor", "rate_limiter", "provider_metadata", "metadata", "hook_registry"}
)


def _request_schemas() -> dict[str, type[BaseModel]]:
    """The allow-list of request schemas: every defined provider request model."""
    out: dict[str, type[BaseModel]] = {}
    todo: list[type[BaseModel]] = [RequestModel]
    while todo:
        klass = todo.pop()
        out[f"{klass.__module__}.{klass.__qualname__}"] = klass
        todo.extend(klass.__subclasses__())
    return out


def request_schema_name(options: type[BaseModel] | None) -> str | None:
    """The registered name of a request schema (``module.Class``), or ``None``.

    Raises:
        NotImplementedError: A schema that is not a provider request model (it could not
            be found again on load).
    """
    if options is None:
        return None
    name = f"{options.__module__}.{options.__qualname__}"
    if _request_schemas().get(name) is not options:
        raise NotImplementedError(
            f"request_options {name} is not a RequestModel subclass and cannot be "
            "serialized; subclass lionpride.services.providers._common.RequestModel"
        )
    return name


def _load_backend(data: Any) -> Endpoint:
    if not isinstance(data, dict):
        raise ValueError(f"iModel.from_dict: 'backend' must be a dict, got {data!r}")
    meta = data.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("lion_class"), str):
        raise ValueError("iModel.from_dict: backend.metadata.lion_class is missing")
    klass = cast("type[Endpoint]", Endpoint.resolve_class(meta["lion_class"]))
    config = data.get("config")
    if not isinstance(config, dict):
        raise ValueError("iModel.from_dict: backend.config must be a dict")
    config = dict(config)
    schema = config.pop("request_options", None)
    if schema is not None:
        resolved = _request_schemas().get(schema) if isinstance(schema, str) else None
        if resolved is None:
            raise ValueError(
                f"iModel.from_dict: unknown request_options {schema!r} (not a registered "
                "request schema)"
            )
        config["request_options"] = resolved
    backend_meta = {k: v for k, v in meta.items() if k != "lion_class"}
    unknown = set(data) - {"config", "circuit_breaker", "retry_config", "metadata"}
    if unknown:
        raise ValueError(f"iModel.from_dict: unknown backend key(s) {sorted(unknown)}")
    try:
        return klass(
            config=config,
            circuit_breaker=data.get("circuit_breaker"),
            retry_config=data.get("retry_config"),
            metadata=backend_meta,
        )
    except PydanticValidationError as exc:
        raise ValueError(f"iModel.from_dict: invalid backend config: {exc}") from exc


def _json_default(value: Any) -> Any:
    raise ValueError(f"iModel.to_dict: {type(value).__name__} is not JSON-serializable")


def _used_tokens(calling: Calling) -> int:
    response = calling.response
    if response is None:
        return 0
    usage = response.usage
    if usage is None:
        return calling.reserved_tokens
    return usage.total_tokens or usage.input_tokens + usage.output_tokens


def _timeout(limit: float | None, exc: BaseException) -> errors.TimeoutError:
    return errors.TimeoutError(f"call did not finish within poll_timeout={limit}s", cause=exc)
