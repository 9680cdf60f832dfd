"""Lifecycle hooks: ``HookPhase`` and ``HookRegistry``.

A hook is ``fn(event, **kwargs)``, sync or async. Where each phase fires (SPEC §8.4):

* ``PreEventCreate`` — in ``iModel.create_calling`` before validation, with the Calling
  *class* as ``event``.
* ``PreInvocation`` — first inside the call, after rate-limit capacity was granted; a
  raising or slow hook fails the call and the backend is not called.
* ``ErrorHandling`` — when the backend raised, or its answer did not validate as the
  ``response_format`` model, with ``error=``; returning a ``NormalizedResponse`` recovers the
  call (validated in its turn).
* ``PostInvocation`` — after the outcome is recorded on ``calling.execution``, with
  ``response=`` and ``error=``; failures are logged unless the caller opted in to exit.
* ``StreamChunk`` — once per streamed chunk, with ``chunk=``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

from lionpride import errors

__all__ = ["Hook", "HookPhase", "HookRegistry"]

#: A lifecycle hook: ``fn(event, **kwargs)``, returning a value or an awaitable.
Hook = Callable[..., Any]


class HookPhase(StrEnum):
    """Where in a call's life a hook runs."""

    PreEventCreate = "pre_event_create"
    PreInvocation = "pre_invocation"
    PostInvocation = "post_invocation"
    ErrorHandling = "error_handling"
    StreamChunk = "stream_chunk"


def _phase(value: Any) -> HookPhase:
    try:
        return HookPhase(value)
    except ValueError:
        valid = ", ".join(p.value for p in HookPhase)
        raise errors.ValidationError(f"unknown hook phase {value!r}; valid: {valid}") from None


class HookRegistry:
    """Hooks by phase; several per phase run in registration order.

    Args:
        hooks: Initial hooks, one callable or a list of callables per phase.

    Raises:
        ValueError: An unknown phase or a non-callable hook.
    """

    __slots__ = ("_hooks",)

    def __init__(self, hooks: Mapping[HookPhase | str, Hook | Iterable[Hook]] | None = None):
        self._hooks: dict[HookPhase, list[Hook]] = {}
        if hooks is None:
            return
        if not isinstance(hooks, Mapping):
            raise errors.ValidationError(
                f"hooks must be a dict of phase -> callable, got {type(hooks)}"
            )
        for phase, fns in hooks.items():
            if callable(fns):
                self.register(phase, fns)
                continue
            if isinstance(fns, str | bytes) or not isinstance(fns, Iterable):
                raise errors.ValidationError(f"hook for {phase!r} must be callable, got {fns!r}")
            for fn in fns:
                self.register(phase, fn)

    def register(self, phase: HookPhase | str, fn: Hook) -> None:
        """Add ``fn`` to ``phase``; it runs after the hooks already registered there.

        Raises:
            ValueError: An unknown phase or a non-callable ``fn``.
        """
        key = _phase(phase)
        if not callable(fn):
            raise errors.ValidationError(f"hook for {key.value!r} must be callable, got {fn!r}")
        self._hooks.setdefault(key, []).append(fn)

    def unregister(self, phase: HookPhase | str, fn: Hook | None = None) -> int:
        """Remove ``fn`` (every registration of it) or, without ``fn``, all hooks of ``phase``.

        Returns:
            How many hooks were removed.
        """
        key = _phase(phase)
        current = self._hooks.get(key, [])
        kept = [] if fn is None else [h for h in current if h is not fn and h != fn]
        removed = len(current) - len(kept)
        if kept:
            self._hooks[key] = kept
        else:
            self._hooks.pop(key, None)
        return removed

    def handles(self, phase: HookPhase | str) -> bool:
        """Whether at least one hook is registered for ``phase``."""
        return bool(self._hooks.get(_phase(phase)))

    def hooks(self, phase: HookPhase | str) -> tuple[Hook, ...]:
        """The hooks of ``phase`` in the order they run."""
        return tuple(self._hooks.get(_phase(phase), ()))

    async def run(
        self, phase: HookPhase, event: Any, *, timeout: float | None = None, **kwargs: Any
    ) -> list[Any]:
        """Run the hooks of ``phase`` in order, all within ``timeout`` seconds.

        Returns:
            Each hook's result, in order.

        Raises:
            TimeoutError: The hooks together took longer than ``timeout``.
            Exception: The first exception a hook raised (later hooks do not run).
        """
        fns = self._hooks.get(phase)
        if not fns:
            return []
        if timeout is None:
            return await _run_all(fns, event, kwargs)
        async with asyncio.timeout(timeout):
            return await _run_all(fns, event, kwargs)

    def __len__(self) -> int:
        return sum(len(v) for v in self._hooks.values())

    def __repr__(self) -> str:
        counts = ", ".join(f"{p.value}={len(v)}" for p, v in self._hooks.items())
        return f"HookRegistry({counts})"


async def _run_all(fns: list[Hook], event: Any, kwargs: dict[str, Any]) -> list[Any]:
    results = []
    for fn in list(fns):
        result = fn(event, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        results.append(result)
    return results
