"""An endpoint used from several event loops does not leave sessions open behind it."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from lionpride.services import iModel
from lionpride.testing import FakeProvider

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server_in_thread() -> Iterator[FakeProvider]:
    """A FakeProvider on its own loop in a thread, so the test can use several loops."""
    fp = FakeProvider()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(fp.start(), loop).result(10)
    yield fp
    asyncio.run_coroutine_threadsafe(fp.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_moving_to_a_new_loop_drops_the_old_session(server_in_thread: FakeProvider) -> None:
    """A call on a second loop replaces the first loop's session, which ends up closed."""
    model = iModel(
        provider="openai", base_url=server_in_thread.base_url("openai"), api_key=SecretStr("k")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        asyncio.run(model.invoke(model="m", messages=MESSAGES))
        first = model.backend._rt.session
        asyncio.run(model.invoke(model="m", messages=MESSAGES))
        second = model.backend._rt.session
        assert first is not None and first is not second and first.closed
        asyncio.run(model.aclose())
        # The first loop's pooled socket was closed, not left for the collector to find.
        del first
        gc.collect()
    assert second is not None and second.closed
