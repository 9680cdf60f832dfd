"""An endpoint used from several event loops does not leave sessions open behind it."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from lionpride.services import iModel
from lionpride.testing import FakeProvider

MESSAGES = [{"role": "user", "content": "hi"}]


def _collected_warnings() -> list[str]:
    """What the garbage collector finds to complain about (unclosed sockets, transports)."""
    complaints: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: complaints.append(repr(info.exc_value))
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return complaints


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


def test_moving_to_a_new_loop_drops_the_old_session(server_in_thread: FakeProvider) -> None:
    """A call on a second loop replaces the first loop's session, which ends up closed."""
    gc.collect()  # what earlier tests left behind is theirs
    model = iModel(
        provider="openai", base_url=server_in_thread.base_url("openai"), api_key=SecretStr("k")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        asyncio.run(model.invoke(model="m", messages=MESSAGES))
        first = model.backend._transport.session
        asyncio.run(model.invoke(model="m", messages=MESSAGES))
        second = model.backend._transport.session
        assert first is not None and first is not second and first.closed
        asyncio.run(model.aclose())
        # The first loop's pooled socket was closed, not left for the collector to find.
        del first
        assert _collected_warnings() == []
    assert second is not None and second.closed


def test_a_model_shared_by_two_threads_serves_both(server_in_thread: FakeProvider) -> None:
    """Each thread's loop gets its own session; one never closes the other's mid-call."""
    server_in_thread.latency = 0.05  # calls overlap across the threads
    model = iModel(
        provider="openai", base_url=server_in_thread.base_url("openai"), api_key=SecretStr("k")
    )
    failures: list[str] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        async def calls() -> None:
            barrier.wait(5)
            for _ in range(4):
                done = await asyncio.gather(
                    *(
                        model.invoke(model="m", messages=MESSAGES, raise_on_error=False)
                        for _ in range(3)
                    )
                )
                failures.extend(repr(c.execution.error) for c in done if c.execution.error)

        asyncio.run(calls())

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    asyncio.run(model.aclose())
    assert failures == []
    assert len(server_in_thread.requests) == 24  # no call retried for a lost connection
