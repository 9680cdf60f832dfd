"""iModel: one face over any backend, with limits, hooks, resilience and streaming.

One call, in order: ``create_calling`` (validate; PreEventCreate hook) → the executor grants
capacity (requests plus a token reservation) → ``Calling.invoke`` (PreInvocation hook →
retry[ breaker[ attempt ] ] → normalize → ErrorHandling / PostInvocation hooks) → tokens
reconciled with the real usage → the Calling is returned, or its typed error raised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ConfigDict, Field, PrivateAttr

from lionpride import errors
from lionpride.core.element import Element
from lionpride.core.event import EventStatus, retryable
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.providers.match import match_endpoint
from lionpride.services.streaming.channel import StreamChannel, StreamChunk
from lionpride.services.types.backend import Calling, ServiceBackend
from lionpride.services.utilities.rate_limiter import TokenBucket

__all__ = ["iModel"]

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
    hook_registry: Any = None
    provider_metadata: dict[str, Any] = Field(default_factory=dict)

    _closed: bool = PrivateAttr(default=False)

    def __init__(
        self,
        backend: ServiceBackend | None = None,
        provider: str | None = None,
        endpoint: str = "chat/completions",
        rate_limiter: TokenBucket | None = None,
        executor: RateLimitedExecutor | None = None,
        hook_registry: Any = None,
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
        **arguments: Any,
    ) -> Calling:
        """Validate a request and wrap it in a Calling, ready to invoke.

        Raises:
            ValueError: Invalid or unknown request parameters, or a request whose token
                reservation is larger than the token bucket.
        """
        backend = self.backend
        payload = backend.create_payload(arguments)
        calling = backend.event_type(
            backend=backend,
            payload=payload,
            timeout=timeout,
            streaming=streaming,
            extra_headers=extra_headers,
            reserved_tokens=self._reservation(payload),
            retry_listener=self._on_retry,
        )
        return calling

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
        """A 429 pauses the model's buckets so queued calls back off together."""
        if error.retry_after and self.executor is not None:
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
        try:
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
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            ex.status = EventStatus.CANCELLED
            raise
        except Exception as exc:
            ex.status, ex.error, ex.retryable = EventStatus.FAILED, exc, retryable(exc)
            if isinstance(exc, errors.RateLimitError):
                self._pause(exc)
            exc.calling = calling  # type: ignore[attr-defined]
            raise
        else:
            ex.status, ex.retryable = EventStatus.COMPLETED, False
        finally:
            ex.duration = time.perf_counter() - start
            if reservation is not None:
                reservation.settle(used)

    async def invoke_stream_with_channel(self, **arguments: Any) -> StreamChannel:
        """Wrap :meth:`invoke_stream` in a :class:`StreamChannel` for fan-out."""
        return StreamChannel(self.invoke_stream(**arguments))

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
