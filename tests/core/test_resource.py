"""AsyncResource: ``async with`` closes the resource however the block ends."""

from __future__ import annotations

import pytest

from lionpride.core.resource import AsyncResource


class Door(AsyncResource):
    """A resource that counts how often it was closed."""

    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_leaving_the_block_closes_the_resource_even_on_error() -> None:
    """Entering gives the resource itself; leaving closes it, normally or by an exception,
    which propagates unchanged."""
    door = Door()
    async with door as entered:
        assert entered is door and door.closed == 0
    assert door.closed == 1
    with pytest.raises(KeyError, match="boom"):
        async with door:
            raise KeyError("boom")
    assert door.closed == 2


def test_a_resource_without_aclose_cannot_be_made() -> None:
    """A subclass must say how it is closed."""

    class Leaky(AsyncResource):
        pass

    with pytest.raises(TypeError, match="aclose"):
        Leaky()  # type: ignore[abstract]
