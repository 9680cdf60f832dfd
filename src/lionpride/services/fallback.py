"""Fallback: several iModels tried in order, moving on only when a failure is transient.

"Anthropic, else OpenAI" in one line::

    async with Fallback(claude, gpt) as chain:   # each iModel configured with its own model=
        calling = await chain.invoke(messages=[{"role": "user", "content": "Hello!"}])
    print(calling.backend.name, calling.response.data)

A model is skipped when its call fails with a retryable error (429 after its own retries,
5xx, 529, connection errors, timeouts, an open circuit breaker). A non-retryable error
(a bad request, a bad key) is raised at once: the next provider would fail the same way,
or the caller has a bug to fix.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, cast

from lionpride import errors
from lionpride.core.event import retryable
from lionpride.services.imodel import iModel

if TYPE_CHECKING:
    from lionpride.services.registry import ServiceRegistry
    from lionpride.services.streaming.channel import StreamChunk
    from lionpride.services.types.backend import Calling

__all__ = ["Fallback"]


class Fallback:
    """iModels tried in order on transient failures.

    Args:
        *models: The models, first choice first.

    ``async with Fallback(...) as chain:`` (or ``await chain.aclose()``) closes every model.

    Raises:
        lionpride.errors.ConfigurationError: No models, or something that is not an iModel.
    """

    __slots__ = ("models",)

    def __init__(self, *models: iModel) -> None:
        if not models:
            raise errors.ConfigurationError("Fallback needs at least one iModel")
        for model in models:
            if not isinstance(model, iModel):
                raise errors.ConfigurationError(
                    f"Fallback takes iModels, got {type(model).__name__}"
                )
        self.models: tuple[iModel, ...] = models

    @classmethod
    def from_registry(
        cls, registry: ServiceRegistry, tag: str | None = None, names: Iterable[str] = ()
    ) -> Fallback:
        """The models of ``registry`` named in ``names`` (in that order), else those tagged
        ``tag`` (in registration order).

        Raises:
            KeyError: A name that is not registered.
            lionpride.errors.ConfigurationError: Neither ``names`` nor ``tag`` found any
                model.
        """
        names = list(names)
        if names:
            return cls(*(registry.get(name) for name in names))
        if tag is None:
            raise errors.ConfigurationError("give names=... or tag=...")
        models = registry.list_by_tag(tag)
        if not models:
            raise errors.ConfigurationError(f"no registered model has tag {tag!r}")
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
        _no_calling(request)
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

    async def invoke_stream(self, **request: Any) -> AsyncIterator[StreamChunk]:
        """Stream from the first model whose stream starts; the same chunks as
        ``iModel.invoke_stream``, the last one final.

        A model is skipped, as for :meth:`invoke`, when its stream fails with a retryable
        error before its first chunk (each model has already retried under its own policy
        by then). Once a chunk has come out, the stream is that model's: a later failure
        is raised, never continued on another model, which would repeat the text.

        Raises:
            Exception: As for :meth:`invoke`, with the earlier models' errors on
                ``e.fallback_errors``.
        """
        _no_calling(request)
        earlier: list[BaseException] = []
        for model in self.models:
            chunks = cast(AsyncGenerator["StreamChunk", None], model.invoke_stream(**request))
            async with aclosing(chunks):
                try:
                    first = await anext(chunks)
                except Exception as exc:
                    if retryable(exc) and model is not self.models[-1]:
                        earlier.append(exc)
                        continue
                    exc.fallback_errors = earlier  # type: ignore[attr-defined]
                    raise
                yield first
                async for chunk in chunks:
                    yield chunk
                return

    async def aclose(self) -> None:
        """Close every model: their connections, and the executors they own."""
        for model in self.models:
            await model.aclose()

    async def __aenter__(self) -> Fallback:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Fallback({', '.join(m.name for m in self.models)})"


def _no_calling(request: dict[str, Any]) -> None:
    if "calling" in request:
        raise errors.ValidationError(
            "Fallback makes one Calling per model; pass the request instead"
        )
