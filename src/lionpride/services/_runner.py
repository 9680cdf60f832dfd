"""The runner: the route of one call and of one stream through an iModel, in one place.

One call (:func:`run_call`), in order:

1. :func:`make_calling` (once per call): the request validated into a Calling,
   PreEventCreate hooks, the token reservation estimated, a CLI session resumed.
2. The grant (once per call; one path for calls and streams): the executor's ``lease``, one
   request from the simple ``rate_limiter`` bucket, or nothing. ``poll_timeout`` bounds the
   wait and, for a call, what is left of it bounds the attempts too.
3. PreInvocation hooks (once per call); a failing one fails the call, nothing is sent.
4. The backend's ``call``: retry[ breaker[ attempt ] ] live in the backend (once per
   attempt). Before each retry the backend calls the runner's ``on_retry`` (once per
   retry): the attempt counted, its request charged to the limits when the failed attempt
   reached the provider, a 429 pausing the limits, the retry recorded.
5. The answer validated into ``response_format`` (``parse_output``); on a failure, the
   ErrorHandling hooks, which may answer for the backend (once per call).
6. The outcome recorded on ``calling.execution`` (once), the tokens settled with the real
   usage (once), the grant returned.
7. PostInvocation hooks, then ``observer.finish`` (metrics, cost, span, log; once), the CLI
   session kept, a final 429 pausing the limits; the Calling returned or its error raised.

One stream (:func:`run_stream`) is the same route iterating: between the grant (2) and the
outcome (6) the backend's chunks come out as they arrive, the StreamChunk hooks seeing
each; the final chunk, which carries the assembled response, comes out last, after (7), so a
caller who stops at it leaves a recorded call and a returned grant behind. Leaving early or
cancelling refunds the token reservation; a failure after content keeps it (the provider has
counted those tokens).

A cancellation is recorded (CANCELLED), counted once and re-raised, without PostInvocation
hooks. A refusal before the grant (executor closed, queue full, the wait timed out) is the
call's outcome too, recorded and counted once, without hooks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Collection
from contextlib import AbstractAsyncContextManager, aclosing
from typing import TYPE_CHECKING, Any

from lionpride import errors
from lionpride.core._trusted import build_trusted
from lionpride.core.event import EventStatus, retryable
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types._canonical import output_type_of
from lionpride.services.types.backend import Calling, RetryObserver, ServiceBackend
from lionpride.services.types.hook import (
    DEFAULT_HOOK_OPTIONS,
    HookOptions,
    HookPhase,
    HookRegistry,
)
from lionpride.services.types.response import NormalizedResponse
from lionpride.services.types.tool import Tool
from lionpride.services.utilities.rate_limiter import Reservation, TokenBucket
from lionpride.services.utilities.resilience import backoff_disabled

if TYPE_CHECKING:
    from lionpride.services.imodel import iModel

__all__ = ["CALL_OPTIONS", "make_calling", "run_call", "run_stream"]

_log = logging.getLogger("lionpride.services.imodel")

_PENDING, _PROCESSING, _COMPLETED = (
    EventStatus.PENDING,
    EventStatus.PROCESSING,
    EventStatus.COMPLETED,
)

#: The keyword arguments of ``iModel.invoke``, ``invoke_stream`` and ``create_calling`` that
#: configure the call rather than fill the request; a request field of one of these names
#: cannot be passed beside them (see :func:`make_calling`).
CALL_OPTIONS = (
    "calling",
    "extra_headers",
    "hooks",
    "idle_timeout",
    "poll_timeout",
    "priority",
    "raise_on_error",
    "streaming",
    "timeout",
)


# -- the call, the stream ----------------------------------------------------------------------


async def run_call(
    model: iModel,
    calling: Calling | None,
    request: dict[str, Any],
    *,
    poll_timeout: float | None = None,
    priority: float | None = None,
    raise_on_error: bool = True,
    timeout: float | None = None,
    extra_headers: dict[str, str] | None = None,
    hooks: HookOptions | None = None,
) -> Calling:
    """Run one call through its whole route (once per call); see the module docstring.

    ``calling`` is made from ``request`` (and ``timeout``, ``extra_headers``, ``hooks``)
    when not given.

    Raises:
        lionpride.errors.ValidationError: ``calling`` already ran (a Calling runs once), or
            an invalid request.
        Exception: The call's recorded error (with the Calling on ``e.calling``), when
            ``raise_on_error``.
    """
    if calling is None:
        calling = await make_calling(
            model,
            request,
            timeout=timeout,
            extra_headers=extra_headers,
            hooks=hooks,
            poll_timeout=poll_timeout,
            priority=priority,
            raise_on_error=raise_on_error,
        )
    _begin(model, calling)
    ex = calling.execution
    executor = _executor_for(model)
    deadline = None if poll_timeout is None else asyncio.get_running_loop().time() + poll_timeout
    ran = False
    try:
        async with _grant(model, executor, calling, priority, poll_timeout) as reservation:
            _started(calling, reservation)
            ran = True
            start = time.perf_counter()
            scope = None
            try:
                call = _attempts(calling, functools.partial(_retried, model, calling))
                if deadline is None:
                    response = await call
                else:
                    # One deadline for the wait and the call together: what is left of it.
                    scope = asyncio.timeout_at(deadline)
                    async with scope:
                        response = await call
            except (Exception, asyncio.CancelledError) as exc:
                ex.duration = time.perf_counter() - start
                expired = scope is not None and scope.expired()
                _record_failure(calling, exc, poll_timeout if expired else None)
                raise  # through the grant: it refunds the tokens and counts the failure
            ex.duration = time.perf_counter() - start
            ex.response, ex.status, ex.retryable = response, _COMPLETED, False
            _settle(reservation, executor, calling)
    except asyncio.CancelledError as exc:
        if ex.status is _PENDING:  # cancelled while waiting for the grant
            _record_failure(calling, exc, None)
        _finish(model, calling)
        raise
    except Exception as exc:
        if ex.status is _PENDING:  # refused before the grant: the call's own failure
            _record_failure(calling, exc, poll_timeout)
    return await _ended(model, calling, ran, raise_on_error)


async def run_stream(
    model: iModel,
    calling: Calling | None,
    request: dict[str, Any],
    *,
    poll_timeout: float | None = None,
    priority: float | None = None,
    idle_timeout: float | None = None,
    timeout: float | None = None,
    extra_headers: dict[str, str] | None = None,
    hooks: HookOptions | None = None,
) -> AsyncIterator[StreamChunk]:
    """Run one stream through the route of a call, yielding its chunks (once per call).

    ``calling`` is made from ``request`` (and ``timeout``, ``extra_headers``, ``hooks``)
    when not given.

    Raises:
        lionpride.errors.ValidationError: ``calling`` already ran (a Calling runs once), or
            an invalid request.
        Exception: The stream's recorded error, with the Calling on ``e.calling``.
    """
    if calling is None:
        calling = await make_calling(
            model,
            request,
            timeout=timeout,
            streaming=True,
            extra_headers=extra_headers,
            hooks=hooks,
            poll_timeout=poll_timeout,
            priority=priority,
            idle_timeout=idle_timeout,
        )
    _begin(model, calling)
    ex = calling.execution
    executor = _executor_for(model)
    ran = False
    final: StreamChunk | None = None
    try:
        async with _grant(model, executor, calling, priority, poll_timeout) as reservation:
            _started(calling, reservation)
            ran = True
            start = time.perf_counter()
            content = False
            on_retry = functools.partial(_retried, model, calling)
            try:
                async with aclosing(_stream_attempts(calling, on_retry, idle_timeout)) as chunks:
                    async for chunk in chunks:
                        if chunk.is_final:  # held back until the outcome is recorded
                            final = chunk
                            break
                        content = True
                        yield chunk
            except (Exception, asyncio.CancelledError, GeneratorExit) as exc:
                ex.duration = time.perf_counter() - start
                _record_failure(calling, exc, None)
                if content and reservation is not None and isinstance(exc, Exception):
                    # Failed after content came: the provider has read the prompt and
                    # written part of an answer, and counted them; with no usage reported,
                    # the reservation stays spent rather than letting the client run ahead.
                    reservation.settle(None)
                raise
            ex.duration = time.perf_counter() - start
            ex.response = final.response if final is not None else None
            ex.status, ex.retryable = _COMPLETED, False
            _settle(reservation, executor, calling)
    except (asyncio.CancelledError, GeneratorExit) as exc:
        if ex.status is _PENDING:
            _record_failure(calling, exc, None)
        _finish(model, calling)
        raise
    except Exception as exc:
        if ex.status is _PENDING:
            _record_failure(calling, exc, None)
    await _ended(model, calling, ran, raise_on_error=True)
    if final is not None:
        yield final


def _begin(model: iModel, calling: Calling) -> None:
    """Refuse a Calling that ran already; note the loop; open the span (once per call)."""
    if calling.execution.status is not _PENDING:
        # Running it again would take capacity for a call that sends nothing.
        raise errors.ValidationError(
            f"Calling {calling.id} already ran (status {calling.execution.status}); "
            "make a new one with create_calling() to call again"
        )
    rt = model._rt
    rt.note_home()
    observer = rt.observer
    if observer.tracer is not None:
        calling.trace = observer.start(model.backend.provider, _model_of(calling))


def _started(calling: Calling, reservation: Reservation | None) -> None:
    """Mark a granted call as running (once per call)."""
    ex = calling.execution
    if reservation is not None:
        ex.queue_wait = reservation.waited
    ex.status, ex.attempts = _PROCESSING, 1


async def _ended(model: iModel, calling: Calling, ran: bool, raise_on_error: bool) -> Calling:
    """After the grant (once per call): PostInvocation hooks for a call that ran, then the
    metrics; the Calling returned, or its error raised."""
    hooks = calling.hook_registry
    if ran and hooks is not None and hooks.handles(HookPhase.PostInvocation):
        await _post_hooks(calling, hooks)
    _finish(model, calling)
    error = calling.execution.error
    if error is not None and raise_on_error:
        error.calling = calling  # type: ignore[attr-defined]
        raise error
    return calling


def _finish(model: iModel, calling: Calling) -> None:
    """Metrics, cost, span and log (once per call); the CLI session kept; a final 429
    pauses the limits."""
    rt = model._rt
    rt.observer.finish(calling.execution, model.backend.provider, _model_of(calling), calling.trace)
    if rt.keeps_session:
        # A CLI backend whose runs are sessions: the next call on the model resumes this one.
        response = calling.execution.response
        if response is not None and response.metadata.get("session_id"):
            model.provider_metadata["session_id"] = response.metadata["session_id"]
    error = calling.execution.error
    if isinstance(error, errors.RateLimitError):
        _pause(model, error)


def _record_failure(calling: Calling, exc: BaseException, poll_timeout: float | None) -> None:
    """Record the outcome of a call that did not answer (once per call).

    ``poll_timeout`` is given when that deadline is what ended the call.
    """
    ex = calling.execution
    if ex.failed_in == HookPhase.PreInvocation:
        # A failed PreInvocation hook is the call's failure, whatever it raised.
        ex.status, ex.error, ex.retryable = EventStatus.FAILED, exc, False
    elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
        # No failure of the call: CANCELLED with no error (Ctrl-C, a task cancelled, a
        # stream left early).
        ex.status, ex.retryable = EventStatus.CANCELLED, True
    elif isinstance(exc, TimeoutError):
        error: BaseException = exc
        if not isinstance(exc, errors.TimeoutError):
            message = (
                f"call did not finish within poll_timeout={poll_timeout}s"
                if poll_timeout is not None
                else f"timed out: {exc}"
            )
            error = errors.TimeoutError(message, cause=exc)
        ex.status, ex.error, ex.retryable = EventStatus.CANCELLED, error, True
    else:
        ex.status, ex.error, ex.retryable = EventStatus.FAILED, exc, retryable(exc)


def _model_of(calling: Calling) -> str | None:
    model = calling.payload.get("model")
    return model if isinstance(model, str) else None


# -- the grant and the limits ------------------------------------------------------------------


class _BucketGrant:
    """One request from the simple ``rate_limiter`` bucket, spent once taken."""

    __slots__ = ("_bucket", "_timeout")

    def __init__(self, bucket: TokenBucket, timeout: float | None) -> None:
        self._bucket = bucket
        self._timeout = timeout

    async def __aenter__(self) -> None:
        if not await self._bucket.acquire(1, timeout=self._timeout):
            raise errors.TimeoutError(
                f"rate_limiter granted no capacity within poll_timeout={self._timeout}s"
            )

    async def __aexit__(self, *exc: object) -> None:
        return None


class _NoGrant:
    """No limits: nothing to wait for or give back."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_GRANT = _NoGrant()


def _grant(
    model: iModel,
    executor: RateLimitedExecutor | None,
    calling: Calling,
    priority: float | None,
    poll_timeout: float | None,
) -> AbstractAsyncContextManager[Reservation | None]:
    """The grant of one call or stream (once per call): its capacity, held for the block.

    Under an executor, a lease: its queue order, queue bound, concurrency limit and stats
    apply, and leaving the block by an error or a cancellation refunds the tokens (the
    request stays spent: the provider counted it).
    """
    if executor is not None:
        return executor.lease(
            tokens=calling.reserved_tokens, priority=priority, timeout=poll_timeout
        )
    if model.rate_limiter is not None:
        return _BucketGrant(model.rate_limiter, poll_timeout)
    return _NO_GRANT


def _executor_for(model: iModel) -> RateLimitedExecutor | None:
    """The executor for a call on the running loop.

    Learned limits serve one event loop at a time (their queue, timer and state belong to
    it; a loop that is no longer running hands them on): a call from a loop another thread
    runs at the same time goes without them, and the first such call warns.
    """
    capacity = model._rt.capacity
    if capacity is not None and not capacity.serves_here():
        return None
    return model.executor


def _settle(
    reservation: Reservation | None, executor: RateLimitedExecutor | None, calling: Calling
) -> None:
    """Settle the tokens with the real usage (once per call).

    Usage is charged wherever tokens are limited, also after a call that reserved none (a
    backend that cannot estimate in advance), and a reservation is always settled (made
    before a learned limit was known).
    """
    if reservation is None or executor is None:
        return
    if not reservation.tokens and executor.token_capacity is None:
        return
    response = calling.execution.response
    used = 0
    if isinstance(response, NormalizedResponse):
        usage = response.usage
        if usage is None:
            used = calling.reserved_tokens
        else:
            used = usage.total_tokens or usage.input_tokens + usage.output_tokens
    reservation.settle(used)


def _retried(
    model: iModel, calling: Calling, attempt: int, error: BaseException, delay: float
) -> None:
    """Before a retry (once per retry; the backend's ``on_retry``): the attempt counted, a
    429 pausing the limits, the retry's request charged, the retry recorded.

    The call's grant paid for one request. When the failed attempt reached the provider (it
    answered with a status, or took too long to answer), the retry is one more: left
    uncounted, it would let the next grant reach a provider with no room left for it (a
    429, whose retry is one more uncounted request, and so on). An attempt that never
    connected spent nothing, so its retry uses the grant.
    """
    calling.execution.attempts += 1
    if isinstance(error, errors.RateLimitError):
        _pause(model, error)
    if isinstance(error, errors.APIStatusError | errors.TimeoutError):
        executor = _executor_for(model)
        if executor is not None:
            executor.charge(1)
        elif model.rate_limiter is not None:
            model.rate_limiter.charge(1)
    model._rt.observer.retry(
        model.backend.provider, _model_of(calling), attempt, error, delay, calling.trace
    )


def _pause(model: iModel, error: errors.RateLimitError) -> None:
    """A 429 pauses the model's limits so queued calls back off together.

    A 429 that no wait cures (``retryable`` false: a spent quota, a request larger than the
    provider's limit) pauses nothing: the calls behind it fail or pass on their own instead
    of queueing for a hint that does not apply to them. Under ``no_backoff()`` (test mode)
    nothing pauses, as no retry sleeps either.
    """
    if not error.retry_after or not error.retryable or backoff_disabled():
        return
    executor = _executor_for(model)
    if executor is not None:
        executor.pause(error.retry_after)
    if model.rate_limiter is not None:
        model.rate_limiter.pause(error.retry_after)


# -- the attempts ------------------------------------------------------------------------------


def _attempts(calling: Calling, on_retry: RetryObserver) -> Awaitable[NormalizedResponse]:
    """The backend's call with the Calling's hooks, under its own ``timeout`` (once per call;
    the attempts, under retry and breaker, are the backend's)."""
    hooks = calling.hook_registry
    call: Awaitable[NormalizedResponse]
    if hooks is not None:
        call = _attempts_with_hooks(calling, hooks, on_retry)
    else:
        # Returned, not awaited here: one coroutine frame fewer on every resume of the call.
        call = calling.backend.call(
            calling.payload,
            extra_headers=calling.extra_headers,
            timeout=calling.timeout,
            on_retry=on_retry,
        )
        if calling.output_type is not None:
            call = _parsed(calling, call)
    if calling.timeout is not None:
        call = _within(calling.timeout, call)
    return call


async def _parsed(calling: Calling, call: Awaitable[NormalizedResponse]) -> NormalizedResponse:
    return calling.parse_output(await call)


async def _within(seconds: float, call: Awaitable[NormalizedResponse]) -> NormalizedResponse:
    """``call`` within the Calling's own ``timeout``, which the hooks count against too."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError as exc:
        if isinstance(exc, errors.TimeoutError):
            raise
        raise errors.TimeoutError(f"timed out after {seconds}s", cause=exc) from exc


async def _attempts_with_hooks(
    calling: Calling, hooks: HookRegistry, on_retry: RetryObserver
) -> NormalizedResponse:
    """The call with its hooks: an answer that does not validate is a failure the
    ErrorHandling hooks see too (as in a stream), and what they answer is validated."""
    if hooks.handles(HookPhase.PreInvocation):
        await _pre_hooks(calling, hooks)
    try:
        return calling.parse_output(
            await calling.backend.call(
                calling.payload,
                extra_headers=calling.extra_headers,
                timeout=calling.timeout,
                on_retry=on_retry,
            )
        )
    except Exception as exc:
        recovered = await _recover(calling, hooks, exc)
        if recovered is None:
            raise
        return recovered


async def _stream_attempts(
    calling: Calling, on_retry: RetryObserver, idle_timeout: float | None
) -> AsyncGenerator[StreamChunk, None]:
    """The backend's stream with the Calling's hooks (once per call; the attempts are the
    backend's): PreInvocation first, StreamChunk for each chunk, and on a failure the
    ErrorHandling hooks, whose answer comes out as the final chunk."""
    hooks = calling.hook_registry
    if hooks is not None and hooks.handles(HookPhase.PreInvocation):
        await _pre_hooks(calling, hooks)
    chunk_hooks = hooks if hooks is not None and hooks.handles(HookPhase.StreamChunk) else None
    next_index = 0
    try:
        stream = calling.backend.stream(
            calling.payload,
            extra_headers=calling.extra_headers,
            timeout=calling.timeout,
            on_retry=on_retry,
            idle_timeout=idle_timeout,
        )
        # aclosing: leaving early closes the backend's stream (its HTTP response) now, not
        # whenever the garbage collector finalizes the generator.
        async with aclosing(stream) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                if chunk.is_final and calling.output_type and chunk.response is not None:
                    chunk.response = calling.parse_output(chunk.response)
                if chunk_hooks is not None:
                    await _chunk_hooks(calling, chunk_hooks, chunk)
                yield chunk
                if chunk.is_final:
                    return
                next_index = chunk.index + 1
    except Exception as exc:
        recovered = None if hooks is None else await _recover(calling, hooks, exc)
        if recovered is None:
            raise
        yield StreamChunk(index=next_index, is_final=True, response=recovered)


# -- the hooks ---------------------------------------------------------------------------------


async def _create_hooks(
    hooks: HookRegistry, calling_type: type[Calling], options: HookOptions
) -> None:
    """PreEventCreate hooks (once per call); their failure aborts creation only with
    ``create_exit``."""
    try:
        await hooks.run(
            HookPhase.PreEventCreate,
            calling_type,
            timeout=options.create_timeout,
            exit=options.create_exit,
            **options.create_params,
        )
    except Exception as exc:
        if not options.create_exit:
            _log.warning("PreEventCreate hook failed (ignored): %r", exc)
            return
        if isinstance(exc, TimeoutError) and not isinstance(exc, errors.TimeoutError):
            raise errors.TimeoutError(
                f"PreEventCreate hooks exceeded {options.create_timeout}s", cause=exc
            ) from exc
        raise


async def _pre_hooks(calling: Calling, hooks: HookRegistry) -> None:
    """PreInvocation hooks (once per call): a failure or a timeout fails the call."""
    options = calling.hook_options or DEFAULT_HOOK_OPTIONS
    try:
        await hooks.run(
            HookPhase.PreInvocation,
            calling,
            timeout=options.pre_timeout,
            exit=options.pre_exit,
            **options.pre_params,
        )
    except TimeoutError as exc:
        calling.execution.failed_in = HookPhase.PreInvocation
        raise errors.TimeoutError(
            f"PreInvocation hooks exceeded {options.pre_timeout}s", cause=exc
        ) from exc
    except Exception:
        calling.execution.failed_in = HookPhase.PreInvocation
        raise


async def _recover(
    calling: Calling, hooks: HookRegistry, error: Exception
) -> NormalizedResponse | None:
    """ErrorHandling hooks (once per failed call): the first response one returns answers
    for the backend, validated as the backend's would be; ``None`` when none does."""
    if not hooks.handles(HookPhase.ErrorHandling):
        return None
    options = calling.hook_options or DEFAULT_HOOK_OPTIONS
    try:
        results = await hooks.run(
            HookPhase.ErrorHandling,
            calling,
            timeout=options.post_timeout,
            error=error,
            **options.post_params,
        )
    except Exception as exc:
        _log.warning("ErrorHandling hook failed for %s: %r", calling.id, exc)
        return None
    for result in results:
        if isinstance(result, NormalizedResponse):
            return calling.parse_output(result)
    return None


async def _chunk_hooks(calling: Calling, hooks: HookRegistry, chunk: StreamChunk) -> None:
    """StreamChunk hooks for one chunk; a failing hook is logged, the stream goes on."""
    options = calling.hook_options or DEFAULT_HOOK_OPTIONS
    try:
        await hooks.run(HookPhase.StreamChunk, calling, timeout=options.post_timeout, chunk=chunk)
    except Exception as exc:
        _log.warning("StreamChunk hook failed for %s: %r", calling.id, exc)


async def _post_hooks(calling: Calling, hooks: HookRegistry) -> None:
    """PostInvocation hooks, once the outcome is recorded (once per call), outside the
    call's own timeout; their failure fails the call only with ``post_exit``."""
    options = calling.hook_options or DEFAULT_HOOK_OPTIONS
    ex = calling.execution
    try:
        await hooks.run(
            HookPhase.PostInvocation,
            calling,
            timeout=options.post_timeout,
            exit=options.post_exit,
            response=ex.response,
            error=ex.error,
            **options.post_params,
        )
    except Exception as exc:
        if not options.post_exit:
            _log.warning("PostInvocation hook failed for %s: %r", calling.id, exc)
            return
        if isinstance(exc, TimeoutError) and not isinstance(exc, errors.TimeoutError):
            exc = errors.TimeoutError(
                f"PostInvocation hooks exceeded {options.post_timeout}s", cause=exc
            )
        ex.error, ex.status, ex.retryable = exc, EventStatus.FAILED, False
        ex.failed_in = HookPhase.PostInvocation


# -- the Calling -------------------------------------------------------------------------------


async def make_calling(
    model: iModel,
    request: dict[str, Any],
    *,
    timeout: float | None = None,
    streaming: bool = False,
    extra_headers: dict[str, str] | None = None,
    hooks: HookOptions | None = None,
    poll_timeout: float | None = None,
    priority: float | None = None,
    idle_timeout: float | None = None,
    raise_on_error: bool = True,
) -> Calling:
    """Validate ``request`` into a Calling of ``model``, ready to run (once per call).

    The options after ``request`` are the call's (:data:`CALL_OPTIONS`): those given are
    held against the fields the backend's request declares, so that a field of the same
    name is never silently taken for the option.

    Raises:
        lionpride.errors.ValidationError: Invalid or unknown request parameters, a request
            field named like a call option given beside it, or a token reservation larger
            than the token bucket.
        Exception: A PreEventCreate hook's error with ``HookOptions(create_exit=True)``.
    """
    backend = model.backend
    if not (
        timeout is None
        and extra_headers is None
        and hooks is None
        and poll_timeout is None
        and priority is None
        and idle_timeout is None
        and raise_on_error
    ):
        given = {
            "timeout": timeout,
            "extra_headers": extra_headers,
            "hooks": hooks,
            "poll_timeout": poll_timeout,
            "priority": priority,
            "idle_timeout": idle_timeout,
            "raise_on_error": None if raise_on_error else False,
        }
        _refuse_shadowed(backend, [name for name, value in given.items() if value is not None])
    session_id = model.provider_metadata.get("session_id")
    if session_id and "resume" not in request and model._rt.keeps_session:
        # A CLI backend resumes the model's last session unless told otherwise.
        request["resume"] = session_id
    registry = model.hook_registry
    if registry is not None and registry.handles(HookPhase.PreEventCreate):
        await _create_hooks(registry, backend.event_type, hooks or DEFAULT_HOOK_OPTIONS)
    try:
        payload = backend.create_payload(request)
    except ValueError as exc:
        # Translated once, here: whatever a backend's own checks raise, a bad request is a
        # ValidationError (still a ValueError) for the caller.
        if isinstance(exc, errors.LionprideError):
            raise
        raise errors.ValidationError(str(exc), cause=exc) from exc
    fields: dict[str, Any] = {"backend": backend, "payload": payload}
    if "response_format" in request or "response_format" in backend.config.kwargs:
        output_type = output_type_of({**backend.config.kwargs, **request})
        if output_type is not None:
            fields["output_type"] = output_type
    if streaming:
        fields["streaming"] = True
    reserved = _reservation(model, payload)
    if reserved is not None:
        fields["reserved_tokens"] = reserved
    if timeout is None and not extra_headers and registry is None:
        # Only the model's own, already valid values: no validation needed.
        return build_trusted(backend.event_type, fields)
    # The caller's values are validated (only those that differ from the defaults).
    if timeout is not None:
        fields["timeout"] = timeout
    if extra_headers:
        fields["extra_headers"] = extra_headers
    if registry is not None:
        fields["hook_registry"] = registry
        if hooks is not None:
            fields["hook_options"] = hooks
    return backend.event_type(**fields)


def _reservation(model: iModel, payload: dict[str, Any]) -> int | None:
    """The tokens the call reserves, when the model's limits count tokens.

    Raises:
        lionpride.errors.ValidationError: More than the token bucket holds.
    """
    executor = model.executor
    if executor is None:
        return None
    # Local or shared in Redis alike: whatever limits tokens says how many it holds.
    capacity = executor.token_capacity
    if capacity is not None:
        tokens = model.backend.estimate_tokens(payload)
        if tokens > capacity:
            raise errors.ValidationError(
                f"request needs {tokens} tokens (prompt estimate plus output budget) but the "
                f"token bucket holds at most {capacity}: lower max_tokens or raise limit_tokens"
            )
        return tokens
    learner = model._rt.capacity
    if learner is not None and learner.mode == "first":
        # Before the first answer the token limit is not known yet, and this call may be
        # granted after it is: it reserves as if it were.
        return model.backend.estimate_tokens(payload)
    return None


def _refuse_shadowed(backend: ServiceBackend, given: list[str]) -> None:
    """Refuse call options given under a name the backend's request has as a field too.

    Raises:
        lionpride.errors.ValidationError: Such an option was given: the option would take
            the value meant for the field, and the request would go without it.
    """
    fields = _request_fields(backend)
    shadowed = [name for name in given if name in fields]
    if shadowed:
        names = ", ".join(f"`{name}`" for name in shadowed)
        raise errors.ValidationError(
            f"{backend.name}: {names} is both a call option and a field of the request, "
            "and a call option takes the value: rename the field (the call options: "
            f"{', '.join(CALL_OPTIONS)})"
        )


def _request_fields(backend: ServiceBackend) -> Collection[str]:
    """The names of the fields the backend's request declares (none when it is open)."""
    options = backend.request_options
    if options is not None:
        return options.model_fields.keys()
    if isinstance(backend, Tool):
        properties: dict[str, Any] = backend.schema.get("properties") or {}
        return properties.keys()
    return ()
