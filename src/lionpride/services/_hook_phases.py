"""The hook phases of one call: each runs here, and only here, for the call's runner.

Every phase runs the hooks of the model's :class:`HookRegistry` for that phase as the
Calling's :class:`HookOptions` say (timeout, exit flag, extra keyword arguments), and turns
what they do into the call's terms: a failing PreInvocation hook fails the call, a failing
PostInvocation hook fails it only with ``post_exit``, a response an ErrorHandling hook returns
answers for the backend, a failing StreamChunk or ErrorHandling hook is logged. Each phase
runs once per call (StreamChunk once per chunk); where each fires is in ``_runner``.
"""

from __future__ import annotations

import logging

from lionpride import errors
from lionpride.core.event import EventStatus
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.backend import Calling
from lionpride.services.types.hook import (
    DEFAULT_HOOK_OPTIONS,
    HookOptions,
    HookPhase,
    HookRegistry,
)
from lionpride.services.types.response import NormalizedResponse

__all__ = [
    "run_chunk_hooks",
    "run_create_hooks",
    "run_error_hooks",
    "run_post_hooks",
    "run_pre_hooks",
]

_log = logging.getLogger("lionpride.services.imodel")


async def run_create_hooks(
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
        typed = _typed(exc, HookPhase.PreEventCreate, options.create_timeout)
        if typed is exc:
            raise
        raise typed from exc


async def run_pre_hooks(calling: Calling, hooks: HookRegistry) -> None:
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


async def run_error_hooks(
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


async def run_chunk_hooks(calling: Calling, hooks: HookRegistry, chunk: StreamChunk) -> None:
    """StreamChunk hooks for one chunk; a failing hook is logged, the stream goes on."""
    options = calling.hook_options or DEFAULT_HOOK_OPTIONS
    try:
        await hooks.run(HookPhase.StreamChunk, calling, timeout=options.post_timeout, chunk=chunk)
    except Exception as exc:
        _log.warning("StreamChunk hook failed for %s: %r", calling.id, exc)


async def run_post_hooks(calling: Calling, hooks: HookRegistry) -> None:
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
        error = _typed(exc, HookPhase.PostInvocation, options.post_timeout)
        ex.error, ex.status, ex.retryable = error, EventStatus.FAILED, False
        ex.failed_in = HookPhase.PostInvocation


def _typed(exc: Exception, phase: HookPhase, timeout: float | None) -> Exception:
    """A hook phase's failure as the caller sees it: a timeout of the phase (a plain
    ``TimeoutError`` from its bound) as :class:`lionpride.errors.TimeoutError`, any other
    error as it is."""
    if isinstance(exc, TimeoutError) and not isinstance(exc, errors.TimeoutError):
        return errors.TimeoutError(f"{phase.name} hooks exceeded {timeout}s", cause=exc)
    return exc
