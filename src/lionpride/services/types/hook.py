"""Lifecycle hooks: ``HookPhase``, ``HookRegistry`` and ``HookOptions``.

A hook is ``fn(event, **kwargs)``, sync or async. Where each phase fires (SPEC §8.4):

* ``PreEventCreate`` — in ``iModel.create_calling`` before validation, with the Calling
  *class* as ``event``; a failing hook aborts creation only with ``create_exit=True``.
* ``PreInvocation`` — first inside the call, after rate-limit capacity was granted; a
  raising or slow hook fails the call and the backend is not called.
* ``ErrorHandling`` — when the backend raised, or its answer did not validate as the
  ``response_format`` model, with ``error=``; returning a ``NormalizedResponse`` recovers the
  call (validated in its turn).
* ``PostInvocation`` — after the outcome is recorded on ``calling.execution``, with
  ``response=`` and ``error=``; failures are logged unless the caller opted in to exit
  (``post_exit=True``).
* ``StreamChunk`` — once per streamed chunk, with ``chunk=``.

How they run for one call (timeouts, exit flags, extra keyword arguments) is a
:class:`HookOptions`, given as ``hooks=`` to ``iModel.invoke``, ``invoke_stream`` or
``create_calling``. Every phase runs from one place (``lionpride.services._hook_phases``),
where the call's runner calls it.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lionpride import errors

__all__ = ["Hook", "HookOptions", "HookPhase", "HookRegistry"]

#: A lifecycle hook: ``fn(event, **kwargs)``, returning a value or an awaitable.
Hook = Callable[..., Any]


class HookPhase(StrEnum):
    """Where in a call's life a hook runs."""

    PreEventCreate = "pre_event_create"
    PreInvocation = "pre_invocation"
    PostInvocation = "post_invocation"
    ErrorHandling = "error_handling"
    StreamChunk = "stream_chunk"


@dataclass(frozen=True, slots=True)
class HookOptions:
    """How the hooks of a model's :class:`HookRegistry` run for one call.

    Attributes:
        create_exit: A failing PreEventCreate hook aborts creation (its error is raised);
            otherwise it is logged.
        create_timeout: Seconds for the PreEventCreate hooks together.
        create_params: Extra keyword arguments for the PreEventCreate hooks.
        pre_exit: Passed to the PreInvocation hooks as ``exit=`` (a failing PreInvocation
            hook fails the call either way).
        pre_timeout: Seconds for the PreInvocation hooks together; past it the call fails.
        pre_params: Extra keyword arguments for the PreInvocation hooks.
        post_exit: A failing PostInvocation hook fails the call with its error; otherwise
            it is logged and the outcome stands.
        post_timeout: Seconds for the PostInvocation hooks together; also bounds the
            ErrorHandling hooks and each chunk's StreamChunk hooks.
        post_params: Extra keyword arguments for the PostInvocation and ErrorHandling hooks.

    Raises:
        lionpride.errors.ValidationError: A timeout that is not a finite number > 0.
    """

    create_exit: bool = False
    create_timeout: float | None = 10.0
    create_params: Mapping[str, Any] = field(default_factory=dict)
    pre_exit: bool = False
    pre_timeout: float | None = 30.0
    pre_params: Mapping[str, Any] = field(default_factory=dict)
    post_exit: bool = False
    post_timeout: float | None = 30.0
    post_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("create_timeout", "pre_timeout", "post_timeout"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise errors.ValidationError(
                    f"HookOptions.{name} must be a finite number of seconds > 0, got {value!r}"
                )


#: The options of a call that gave none.
DEFAULT_HOOK_OPTIONS = HookOptions()


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
