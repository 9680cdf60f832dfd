"""An unreachable Redis is seen without any logging set up: one warning per outage."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import pytest

from lionpride.core.clock import FakeClock
from lionpride.services.distributed import RedisCapacity
from lionpride.services.distributed._link import redact_url
from lionpride.services.utilities.rate_limiter import RateLimitConfig

if TYPE_CHECKING:
    from tests.distributed.conftest import RedisServer


async def test_an_unreachable_redis_warns_once_per_outage(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Falling back to local limits logs a record and warns once (not again while Redis
    stays away, again after it came back and went away once more); the URL's password is
    never shown."""
    caplog.set_level(logging.WARNING, logger="lionpride")
    redis_server.kill()
    url = redis_server.url.replace("redis://", "redis://:hunter2@")
    clock = FakeClock()
    limits = RedisCapacity(
        url, "warned", requests=RateLimitConfig(5, 1.0), tokens=None, clock=clock
    )
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        await limits.take(1, 0)
        await clock.advance(1.0)
        await limits.take(1, 0)  # still away: the warning was given
    assert [str(w.message) for w in shown] == [
        f"Redis at {redact_url(url)} is unreachable: {limits.link.what} is kept "
        "in this process only until Redis answers again"
    ]
    assert any("unreachable" in r.getMessage() for r in caplog.records)
    assert "hunter2" not in str(shown[0].message)
    await limits.aclose()
