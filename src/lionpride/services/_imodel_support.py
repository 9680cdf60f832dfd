"""The hook runners of an iModel call (PreEventCreate, StreamChunk) and the model a call names."""

from __future__ import annotations

import logging
from typing import Any

from lionpride import errors
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.types.backend import Calling
from lionpride.services.types.hook import HookPhase, HookRegistry

__all__ = ["model_of", "run_chunk_hooks", "run_create_hooks"]

_log = logging.getLogger("lionpride.services.imodel")


async def run_create_hooks(
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
            if isinstance(exc, TimeoutError) and not isinstance(exc, errors.TimeoutError):
                raise errors.TimeoutError(
                    f"PreEventCreate hooks exceeded {timeout}s", cause=exc
                ) from exc
            raise
        _log.warning("PreEventCreate hook failed (ignored): %r", exc)


async def run_chunk_hooks(calling: Calling, chunk: StreamChunk) -> None:
    """Run StreamChunk hooks for one chunk; a failing hook is logged, the stream goes on."""
    hooks = calling.hook_registry
    assert hooks is not None
    try:
        await hooks.run(
            HookPhase.StreamChunk, calling, timeout=calling.post_invoke_hook_timeout, chunk=chunk
        )
    except Exception as exc:
        _log.warning("StreamChunk hook failed for %s: %r", calling.id, exc)


def model_of(calling: Calling) -> str | None:
    model = calling.payload.get("model")
    return model if isinstance(model, str) else None
