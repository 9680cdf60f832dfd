"""Run summaries for the CLI, read from the library's own metrics.

Every count here comes from :meth:`iModel.metrics() <lionpride.services.imodel.iModel.metrics>`
(calls, outcomes, retries, 429s, tokens, cost, latency percentiles); the CLI adds only what the
model cannot know: the wall time of the run, which turns the call count into an achieved rate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lionpride.services.imodel import iModel

__all__ = ["Stopwatch", "Summary", "ms", "secs"]

# The failure key of a cancelled call, which carries no error: its status.
_CANCELLED = "cancelled"


@dataclass
class Stopwatch:
    """Wall time of a run, from creation to :meth:`stop` (or to now)."""

    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def stop(self) -> None:
        """Freeze the elapsed time."""
        self.finished = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds since creation, up to :meth:`stop` when it was called."""
        end = self.finished if self.finished is not None else time.monotonic()
        # Never zero, so a rate is always defined.
        return max(end - self.started, 1e-9)


@dataclass(frozen=True, slots=True)
class Summary:
    """One model's calls over a run: its metrics snapshot plus the run's wall time.

    Attributes:
        calls: Calls the model finished (successful or not).
        successes: Calls that completed.
        failures: Calls that did not complete.
        failures_by_type: Failed calls by error type name (``RateLimitError``, ...).
        retries: Failed attempts that were tried again.
        rate_limited: 429 responses seen, retried or final.
        tokens_in: Input tokens reported by the provider.
        tokens_out: Output tokens reported by the provider.
        cost_usd: USD cost of the calls whose model has a price.
        unpriced_calls: Calls with usage but no known price (not in ``cost_usd``).
        p50: Median call latency in seconds, ``None`` when no call ran.
        p99: 99th percentile call latency in seconds, ``None`` when no call ran.
        elapsed: Wall seconds of the run.
    """

    calls: int
    successes: int
    failures: int
    failures_by_type: dict[str, int]
    retries: int
    rate_limited: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    unpriced_calls: int
    p50: float | None
    p99: float | None
    elapsed: float

    @classmethod
    def of(cls, model: iModel, elapsed: float) -> Summary:
        """Summarize ``model``'s calls so far over ``elapsed`` wall seconds."""
        return cls.from_snapshot(model.metrics(), elapsed)

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any], elapsed: float) -> Summary:
        """Build a summary from an ``iModel.metrics()`` snapshot.

        Raises:
            KeyError: ``snapshot`` lacks one of the counters read here.
        """
        latency = snapshot["latency"]
        return cls(
            calls=int(snapshot["calls"]),
            successes=int(snapshot["successes"]),
            failures=int(snapshot["failures"]),
            failures_by_type=dict(snapshot["failures_by_type"]),
            retries=int(snapshot["retries"]),
            rate_limited=int(snapshot["rate_limited"]),
            tokens_in=int(snapshot["tokens_in"]),
            tokens_out=int(snapshot["tokens_out"]),
            cost_usd=float(snapshot["cost_usd"]),
            unpriced_calls=int(snapshot["unpriced_calls"]),
            p50=latency["p50"],
            p99=latency["p99"],
            elapsed=max(elapsed, 1e-9),
        )

    def less_cancelled(self, *, unsent: int, unanswered: int) -> Summary:
        """This summary with the calls a stopped run cancelled taken out of its failures.

        The model counts a cancelled call as a finished, failed one (status ``cancelled``).
        A call cancelled before it was sent was no call at all; one cancelled while in flight
        was sent but neither succeeded nor failed: the caller reports both on their own.
        Never more is taken out than the model counted as cancelled (this runs while a run
        stops, where an exception would hide the summary).

        Args:
            unsent: Cancelled calls that were never sent (no longer counted as calls).
            unanswered: Cancelled calls that were sent (still calls, no longer failures).
        """
        by_type = dict(self.failures_by_type)
        counted = by_type.pop(_CANCELLED, 0)
        unsent = min(unsent, counted)
        removed = min(unsent + unanswered, counted)
        if counted > removed:
            by_type[_CANCELLED] = counted - removed
        return replace(
            self,
            calls=self.calls - unsent,
            failures=self.failures - removed,
            failures_by_type=by_type,
        )

    @property
    def rate(self) -> float:
        """Achieved rate: finished calls per wall second."""
        return self.calls / self.elapsed

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.tokens_in + self.tokens_out

    def cost_text(self) -> str:
        """The cost as ``$0.0123``; ``n/a`` when nothing was priced, a note when partly."""
        if self.unpriced_calls and not self.cost_usd:
            return "n/a"
        text = f"${self.cost_usd:.4f}"
        if self.unpriced_calls:
            text += f" (+{self.unpriced_calls} unpriced)"
        return text

    def failures_text(self) -> str:
        """Failures by error type, most frequent first (``BadRequestError 2, ...``)."""
        ranked = sorted(self.failures_by_type.items(), key=lambda kv: (-kv[1], kv[0]))
        return ", ".join(f"{name} {count}" for name, count in ranked)


def ms(seconds: float | None) -> str:
    """A latency in whole milliseconds, ``-`` when unknown."""
    return "-" if seconds is None else f"{seconds * 1000:.0f}ms"


def secs(seconds: float | None) -> str:
    """A latency in seconds with millisecond precision, ``-`` when unknown."""
    return "-" if seconds is None else f"{seconds:.3f}s"
