"""Review regressions of the limiter rewrite, seen through iModel."""

from __future__ import annotations

import pytest
from tests.conftest import model_on

from lionpride import errors
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Say something short."}]


async def test_poll_timeout_passing_while_the_call_runs_counts_timed_out(
    fake_provider: FakeProvider,
) -> None:
    """A call cut by its poll_timeout while it runs is counted timed_out, not failed."""
    fake_provider.script(Reply(delay=3.0))
    model = model_on(fake_provider, "openai", limit_requests=10)
    async with model:
        with pytest.raises(errors.TimeoutError):
            await model.invoke(model="m", messages=MESSAGES, poll_timeout=0.2)
        stats = model.executor.stats()
    assert (stats["timed_out"], stats["failed"], stats["in_flight"]) == (1, 0, 0)
