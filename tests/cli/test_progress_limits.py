"""The live line of ``lionpride run`` shows the limits the model learned."""

from __future__ import annotations

import io

from pydantic import SecretStr

from lionpride.cli._progress import Progress, describe_limits
from lionpride.services import iModel
from lionpride.testing import FakeProvider

MESSAGES = [{"role": "user", "content": "hi"}]


def test_the_limits_are_described_in_a_few_words() -> None:
    """Each limited family shows its rate per minute, then the sources."""
    learned = {
        "requests": {"limit": 500, "per_minute": 500.0, "source": "headers", "updated_at": 1.0},
        "tokens": {
            "limit": 30_000,
            "per_minute": 30_000.0,
            "source": "configured",
            "updated_at": None,
        },
    }
    assert describe_limits(learned) == "limits 500 req/min, 30,000 tok/min (configured, headers)"


def test_unlimited_families_are_not_shown_as_limits() -> None:
    """A provider that has refused nothing yet shows that no limit was seen."""
    learned = {
        "requests": {"limit": 2**50, "per_minute": 6e16, "source": "unlimited", "updated_at": 1.0}
    }
    assert describe_limits(learned) == "limits: none seen"


async def test_the_live_line_follows_the_models_learned_limits() -> None:
    """After an answer with rate-limit headers, the run's line names the learned limit."""
    async with FakeProvider(limit_requests=120, window=60.0) as fp:
        model = iModel(provider="openai", base_url=fp.base_url("openai"), api_key=SecretStr("k"))
        progress = Progress(
            10, label="run", stream=io.StringIO(), tty=False, limits=model.learned_limits
        )
        assert "limits" not in progress.line()
        async with model:
            await model.invoke(model="m", messages=MESSAGES)
    assert progress.line().endswith("limits 120 req/min (headers)")
