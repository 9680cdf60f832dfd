"""Per-call numbers for the CLI's progress and summaries, read from finished Callings.

Everything here comes from what a :class:`~lionpride.services.types.backend.Calling` exposes
(``execution.duration``, ``execution.attempts``, ``response.usage``, the error) plus the retry
observer a Calling already has. It lives in one module so the CLI can switch to the library's
own metrics, once they exist, by changing only this file.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from lionpride import errors
from lionpride.services.types.backend import Calling

__all__ = ["CallStats", "percentile"]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by nearest rank; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class CallStats:
    """Counters over many calls: outcomes, retries, 429s, tokens and latencies.

    Call :meth:`observe` on a Calling before invoking it (to see the errors it retried) and
    :meth:`record` once it finished.
    """

    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def observe(self, calling: Calling) -> None:
        """Count the errors ``calling`` retries, keeping its existing retry observer."""
        previous = calling.retry_listener

        def on_retry(attempt: int, error: BaseException, delay: float) -> Any:
            self._count_error(error)
            return previous(attempt, error, delay) if previous is not None else None

        calling.retry_listener = on_retry

    def record(self, calling: Calling) -> None:
        """Add one finished call: its outcome, attempts, tokens and latency."""
        ex = calling.execution
        self.calls += 1
        self.retries += max(0, ex.attempts - 1)
        if ex.duration is not None:
            self.latencies.append(ex.duration)
        response = calling.response
        if response is not None and ex.error is None:
            self.succeeded += 1
            if response.usage is not None:
                self.input_tokens += response.usage.input_tokens
                self.output_tokens += response.usage.output_tokens
        else:
            self.failed += 1
            if ex.error is not None:
                self._count_error(ex.error)

    def record_failure(self) -> None:
        """Count a call that failed before it could run (an invalid request)."""
        self.calls += 1
        self.failed += 1

    def _count_error(self, error: BaseException) -> None:
        if isinstance(error, errors.RateLimitError):
            self.rate_limited += 1
        elif isinstance(error, errors.ServerError):
            self.server_errors += 1

    def stop(self) -> None:
        """Freeze the elapsed time."""
        self.finished = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds from creation to :meth:`stop` (or to now)."""
        end = self.finished if self.finished is not None else time.monotonic()
        return max(end - self.started, 1e-9)

    @property
    def rate(self) -> float:
        """Finished calls per second."""
        return self.calls / self.elapsed

    @property
    def tokens(self) -> int:
        """Input plus output tokens of the successful calls."""
        return self.input_tokens + self.output_tokens

    def latency(self, q: float) -> float:
        """The ``q``-th percentile of the call latencies, in seconds."""
        return percentile(self.latencies, q)
