"""Async resources: objects released by ``await obj.aclose()`` or by leaving ``async with obj:``.

One base class gives every such object the same two context-manager methods, so that each
class writes only what it holds and how to let it go.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

__all__ = ["AsyncResource"]


class AsyncResource(abc.ABC):
    """Something that holds what must be let go (a task, a server, a source); closed by
    :meth:`aclose`, which ``async with`` calls on the way out, however the block ends.

    A subclass implements :meth:`aclose`; one that starts something on entry overrides
    :meth:`__aenter__`, starts it and returns ``self``.
    """

    __slots__ = ()

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Let go of what the resource holds; closing again does nothing."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
