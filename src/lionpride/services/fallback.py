"""Fallback: several iModels tried in order, moving on only when a failure is transient.

"Anthropic, else OpenAI" in one line::

    chain = Fallback(claude, gpt)            # each iModel configured with its own model=
    calling = await chain.invoke(messages=[{"role": "user", "content": "Hello!"}])
    print(calling.backend.name, calling.response.data)

A model is skipped when its call fails with a retryable error (429 after its own retries,
5xx, 529, connection errors, timeouts, an open circuit breaker). A non-retryable error
(a bad request, a bad key) is raised at once: the next provider would fail the same way,
or the caller has a bug to fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lionpride.core.event import retryable
from lionpride.services.imodel import iModel

if TYPE_CHECKING:
    from lionpride.services.registry import ServiceRegistry
    from lionpride.services.types.backend import Calling

__all__ = ["Fallback"]


class Fallback:
    """iModels tried in order on transient failures.

    Args:
        *models: The models, first choice first.

    Raises:
        ValueError: No models, or something that is not an iModel.
    """

    __slots__ = ("models",)

    def __init__(self, *models: iModel) -> None:
        if not models:
            raise ValueError("Fallback needs at least one iModel")
        for model in models:
            if not isinstance(model, iModel):
                raise ValueError(f"Fallback takes iModels, got {type(model).__name__}")
        self.models: tuple[iModel, ...] = models

    @classmethod
    def from_registry(
        cls, registry: ServiceRegistry, tag: str | None = None, names: Iterable[str] = ()
    ) -> Fallback:
        """The models of ``registry`` named in ``names`` (in that order), else those tagged
        ``tag`` (in registration order).

        Raises:
            KeyError: A name that is not registered.
            ValueError: Neither ``names`` nor ``tag`` found any model.
        """
        names = list(names)
        if names:
            return cls(*(registry.get(name) for name in names))
        if tag is None:
            raise ValueError("give names=... or tag=...")
        models = registry.list_by_tag(tag)
        if not models:
            raise ValueError(f"no registered model has tag {tag!r}")
        return cls(*models)

    async def invoke(self, *, raise_on_error: bool = True, **request: Any) -> Calling:
        """Invoke each model in turn with ``request`` until one succeeds.

        Args:
            raise_on_error: ``False`` returns the failed Calling (of the model that failed
                last) instead of raising, as ``iModel.invoke`` does.
            **request: The request, as for ``iModel.invoke`` (each model makes its own
                Calling; a ``calling=`` cannot be shared between models).

        Returns:
            The successful Calling (``calling.backend`` tells which model answered).

        Raises:
            Exception: A non-retryable error at once; otherwise, when every model failed,
                the last model's error, with the earlier ones on ``e.fallback_errors``.
        """
        if "calling" in request:
            raise ValueError("Fallback makes one Calling per model; pass the request instead")
        earlier: list[BaseException] = []
        for model in self.models:
            try:
                return await model.invoke(**request)
            except Exception as exc:
                if retryable(exc) and model is not self.models[-1]:
                    earlier.append(exc)
                    continue
                exc.fallback_errors = earlier  # type: ignore[attr-defined]
                if raise_on_error or getattr(exc, "calling", None) is None:
                    raise
                failed: Calling = exc.calling  # type: ignore[attr-defined]
                return failed
        raise AssertionError("unreachable: the last model returns or raises")

    def __repr__(self) -> str:
        return f"Fallback({', '.join(m.name for m in self.models)})"
