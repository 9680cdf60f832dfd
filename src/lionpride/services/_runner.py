"""The runner: the route of one call and of one stream through an iModel, in one place.

One call (:func:`run_call`), in order:

1. ``make_calling`` (``_calling``; once per call): the request validated into a Calling,
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
   ErrorHandling hooks, which may answer for the backend (once per call). The Calling's own
   ``timeout`` bounds 3 to 5 together.
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

A Calling is PROCESSING from the moment its run begins, its wait for the grant included: a
second run of it, at once or later, is refused. A timeout (the Calling's, ``poll_timeout``, the
backend's deadline) is recorded as CANCELLED with a ``TimeoutError``. A cancellation is
recorded (CANCELLED), counted once and re-raised, without PostInvocation hooks; one that
comes while those hooks run leaves the recorded outcome as it is, counted once too. A refusal
before the grant (executor closed, queue full, the wait timed out) is the call's outcome too,
recorded and counted once, without hooks. Every hook phase runs from ``_hook_phases``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, aclosing
from typing import TYPE_CHECKING, Any

from lionpride import errors
from lionpride.core.event import EventStatus, retryable
from lionpride.services._calling import make_calling
from lionpride.services._hook_phases import (
    run_chunk_hooks,
    run_error_hooks,
    run_post_hooks,
    run_pre_hooks,
)
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.execution.executor import Lease
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.backend import Calling, RetryObserver
from lionpride.services.types.hook import HookOptions, HookPhase, HookRegistry
from lionpride.services.types.response import NormalizedResponse
from lionpride.services.utilities.rate_limiter import Reservation, TokenBucket
from lionpride.services.utilities.resilience import backoff_disabled

if TYPE_CHECKING:
    from lionpride.services.imodel import iModel

__all__ = ["run_call", "run_stream"]

_PENDING, _PROCESSING, _COMPLETED = (
    EventStatus.PENDING,
    EventStatus.PROCESSING,
    EventStatus.COMPLETED,
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
    when not given; given, it carries them.

    Raises:
        lionpride.errors.ValidationError: ``calling`` already ran (a Calling runs once), was
            given with request fields or options of its own, or an invalid request.
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
    elif request or timeout is not None or extra_headers is not None or hooks is not None:
        raise _carried(calling)
    _begin(model, calling)
    ex = calling.execution
    executor = _executor_for(model)
    deadline = None if poll_timeout is None else asyncio.get_running_loop().time() + poll_timeout
    try:
        async with _grant(model, executor, calling, priority, poll_timeout) as reservation:
            _started(calling, reservation)
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
                if expired and isinstance(reservation, Lease):
                    reservation.expire()  # the executor counts it timed out, not failed
                raise  # through the grant: it refunds the tokens and counts the failure
            ex.duration = time.perf_counter() - start
            ex.response, ex.status, ex.retryable = response, _COMPLETED, False
            _settle(reservation, executor, calling)
    except asyncio.CancelledError as exc:
        if ex.status is _PROCESSING:  # cancelled while waiting for the grant
            _record_failure(calling, exc, None)
        _finish(model, calling, raise_on_error=False)
        raise
    except Exception as exc:
        if ex.status is _PROCESSING:  # refused before the grant: the call's own failure
            _record_failure(calling, exc, poll_timeout)
    registry = calling.hook_registry
    # A call that started (an attempt counted) has PostInvocation hooks; a refused one not.
    if ex.attempts and registry is not None and registry.handles(HookPhase.PostInvocation):
        await _post_hooks(model, calling, registry)
    _finish(model, calling, raise_on_error)
    return calling


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

    ``calling`` and ``request`` are taken as :func:`run_call` takes them.

    Raises:
        lionpride.errors.ValidationError: ``calling`` already ran (a Calling runs once), was
            given with request fields or options of its own, or an invalid request.
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
    elif request or timeout is not None or extra_headers is not None or hooks is not None:
        raise _carried(calling)
    _begin(model, calling)
    ex = calling.execution
    executor = _executor_for(model)
    final: StreamChunk | None = None
    try:
        async with _grant(model, executor, calling, priority, poll_timeout) as reservation:
            _started(calling, reservation)
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
                    # Failed after content: the provider counted the tokens; none reported,
                    # the reservation stays spent rather than let the client run ahead.
                    reservation.settle(None)
                raise
            ex.duration = time.perf_counter() - start
            ex.response = final.response if final is not None else None
            ex.status, ex.retryable = _COMPLETED, False
            _settle(reservation, executor, calling)
    except (asyncio.CancelledError, GeneratorExit) as exc:
        if ex.status is _PROCESSING:
            _record_failure(calling, exc, None)
        _finish(model, calling, raise_on_error=False)
        raise
    except Exception as exc:
        if ex.status is _PROCESSING:
            _record_failure(calling, exc, None)
    registry = calling.hook_registry
    # A call that started (an attempt counted) has PostInvocation hooks; a refused one not.
    if ex.attempts and registry is not None and registry.handles(HookPhase.PostInvocation):
        await _post_hooks(model, calling, registry)
    _finish(model, calling, raise_on_error=True)
    if final is not None:
        yield final


def _begin(model: iModel, calling: Calling) -> None:
    """Refuse a Calling that ran or runs already, and take it (PROCESSING from now on, its
    wait for the grant included); note the loop; open the span (once per call)."""
    ex = calling.execution
    if ex.status is not _PENDING:
        # Running it again would take capacity for a call that sends nothing, or, while
        # the first run waits for its grant, send the request twice.
        raise errors.ValidationError(
            f"Calling {calling.id} already ran (status {ex.status}); "
            "make a new one with create_calling() to call again"
        )
    ex.status = _PROCESSING
    rt = model._rt
    rt.note_home()
    observer = rt.observer
    if observer.tracer is not None:
        calling.trace = observer.start(model.backend.provider, _model_of(calling))


def _carried(calling: Calling) -> errors.ValidationError:
    # Taken beside a Calling they would be dropped: it carries its request and options.
    return errors.ValidationError(
        f"Calling {calling.id} carries its request, timeout, headers and hook options; "
        "give them to create_calling(), or pass the request without calling="
    )


def _started(calling: Calling, reservation: Reservation | None) -> None:
    """Mark a granted call as started: its first attempt counted (once per call)."""
    ex = calling.execution
    if reservation is not None:
        ex.queue_wait = reservation.waited
    ex.attempts = 1


def _finish(model: iModel, calling: Calling, raise_on_error: bool) -> None:
    """Metrics, cost, span and log (once per call); the CLI session kept; a final 429
    pauses the limits; the call's error raised, when asked.

    Raises:
        Exception: The call's recorded error, with the Calling on ``e.calling``, when
            ``raise_on_error``.
    """
    ex = calling.execution
    rt = model._rt
    rt.observer.finish(ex, model.backend.provider, _model_of(calling), calling.trace)
    if rt.keeps_session:
        # A CLI backend whose runs are sessions: the next call on the model resumes this one.
        response = ex.response
        if response is not None and response.metadata.get("session_id"):
            model.provider_metadata["session_id"] = response.metadata["session_id"]
    error = ex.error
    if error is None:
        return
    if isinstance(error, errors.RateLimitError):
        _pause(model, error)
    if raise_on_error:
        error.calling = calling  # type: ignore[attr-defined]
        raise error


async def _post_hooks(model: iModel, calling: Calling, registry: HookRegistry) -> None:
    """PostInvocation hooks (once per call). Cancelled while they run, the call keeps the
    outcome it had and is counted before the cancellation goes on: the metrics miss no call.
    """
    try:
        await run_post_hooks(calling, registry)
    except asyncio.CancelledError:
        _finish(model, calling, raise_on_error=False)
        raise


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
        await run_pre_hooks(calling, hooks)
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
        recovered = await run_error_hooks(calling, hooks, exc)
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
        await run_pre_hooks(calling, hooks)
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
                    await run_chunk_hooks(calling, chunk_hooks, chunk)
                yield chunk
                if chunk.is_final:
                    return
                next_index = chunk.index + 1
    except Exception as exc:
        recovered = None if hooks is None else await run_error_hooks(calling, hooks, exc)
        if recovered is None:
            raise
        yield StreamChunk(index=next_index, is_final=True, response=recovered)
