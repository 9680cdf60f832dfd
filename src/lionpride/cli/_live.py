"""What the live line of ``lionpride run`` shows besides the counts, read from its models.

:class:`RunGauges` gives the progress line the calls in flight, the 429s and retries so far,
which limit the queued calls wait on, and each limit's :class:`~lionpride.cli._progress.Pace`
for the ETA.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

from lionpride.cli._progress import Pace, format_seconds

if TYPE_CHECKING:
    from lionpride.services import Limits
    from lionpride.services.execution import RateLimitedExecutor

__all__ = ["Metered", "RunGauges"]


class Metered(Protocol):
    """What the gauges read: an iModel, or the run's models together."""

    @property
    def executor(self) -> RateLimitedExecutor | None:
        """The executor that holds the limits, if any."""
        ...

    def metrics(self) -> dict[str, Any]:
        """A snapshot in the shape of :meth:`iModel.metrics`."""
        ...


class RunGauges:
    """The live state of a run's model: calls in flight, 429s, retries, limit waits, paces.

    Args:
        model: The run's models (their shared executor holds the limits, their metrics
            the counters: a run's 429s and retries are every endpoint's).
        limits: The run's limits (``--limit-requests``/``--limit-tokens`` per window),
            whose rates stand in when the limits are kept elsewhere (Redis) and no local
            bucket says its own rate.
    """

    def __init__(self, model: Metered, *, limits: Limits | None = None) -> None:
        self._model = model
        self._configured = {
            "requests": None if limits is None else limits.request_rate,
            "tokens": None if limits is None else limits.token_rate,
        }
        #: Calls handed to the model and not finished (waiting for capacity or in flight).
        self.calling = 0

    def _rates(self) -> dict[str, float | None]:
        """Refill per second of each limit: the local bucket's own, else the configured."""
        rates = dict(self._configured)
        executor = self._model.executor
        if executor is not None:
            limiter = executor.limiter
            for name, bucket in (
                ("requests", limiter.request_bucket),
                ("tokens", limiter.token_bucket),
            ):
                if bucket is not None:
                    rates[name] = bucket.refill_rate
        return rates

    def paces(self, tokens_per_request: float | None) -> list[Pace]:
        """The limits as paces in requests; tokens convert at ``tokens_per_request``.

        The calls in flight took their capacity already: they count as available, since
        the ETA counts them among the requests still to finish.
        """
        executor = self._model.executor
        if executor is None:
            return []
        limiter = executor.limiter
        levels = limiter.levels
        granted = max(0, self.calling - limiter.queue_depth)
        rates = self._rates()
        paces = []
        request_rate = rates["requests"]
        if request_rate and "requests" in levels:
            paces.append(Pace(levels["requests"] + granted, request_rate))
        token_rate = rates["tokens"]
        if token_rate and "tokens" in levels and tokens_per_request:
            available = levels["tokens"] / tokens_per_request + granted
            paces.append(Pace(available, token_rate / tokens_per_request))
        return paces

    def parts(self) -> list[str]:
        """The live counters as short phrases for the progress line."""
        metrics = self._model.metrics()
        waiting = int(metrics["queue_depth"] or 0)
        parts = [
            f"{max(0, self.calling - waiting)} in flight",
            f"{metrics['rate_limited']} 429s",
            f"{metrics['retries']} retries",
        ]
        if waiting:
            parts.append(self._waiting_text(waiting, metrics["limiter_levels"] or {}))
        return parts

    def _waiting_text(self, waiting: int, levels: dict[str, float]) -> str:
        """Which limit the queued calls wait on, and when the next one may start."""
        rates = self._rates()
        name = "requests" if levels.get("requests", math.inf) < 1 else "tokens"
        if name == "tokens" and "tokens" not in levels:
            # Neither bucket is empty: a 429's retry-after paused the limits.
            return f"{waiting} waiting on a rate-limit pause"
        text = f"{waiting} waiting on the {name[:-1]} limit"
        rate = rates[name]
        if name == "requests" and rate:
            text += f" (next in {format_seconds((1 - levels['requests']) / rate)})"
        return text
