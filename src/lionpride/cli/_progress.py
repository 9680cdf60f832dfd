"""A progress display on stderr: an ANSI bar on a terminal, quiet lines otherwise.

On a terminal the bar is redrawn in place a few times a second. When stderr is a file or a
pipe (CI logs, ``2> run.log``) one plain line is written every ``every_items`` items or
``every_seconds`` seconds, whichever comes first, so logs stay short and still show life.

The ETA of a rate-limited run is governed by the limit, not by the pace so far: a bucket of
``L`` per ``T`` lets the first ``L`` requests go at once (the burst) and then ``L/T`` per second,
so the average since the start, inflated by the burst, would promise an end far too soon.
:func:`eta_seconds` takes the slowest of what the calls achieve and what each limit allows.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, TextIO

from lionpride.core.resource import AsyncResource

__all__ = ["Gauges", "Pace", "Progress", "eta_seconds", "format_seconds"]

_BAR_WIDTH = 24
_CLEAR_LINE = "\r\x1b[2K"


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m07s`` or ``1h02m``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@dataclass(frozen=True, slots=True)
class Pace:
    """What one limit allows from now on, counted in requests.

    Attributes:
        available: Requests that may start at once (what is left of the burst; negative
            while the bucket is in debt).
        per_second: Requests per second once the burst is spent (the refill).
    """

    available: float
    per_second: float


def eta_seconds(remaining: int, *, rate: float, paces: Sequence[Pace] = ()) -> float | None:
    """Seconds until ``remaining`` requests finish, or ``None`` when nothing tells yet.

    The slowest of: ``remaining`` at the achieved ``rate`` (what concurrency and latency
    allow), and, for each limit, the requests beyond its burst at its refill rate.

    Args:
        remaining: Requests still to finish.
        rate: Requests finished per second so far (0 when none finished yet).
        paces: The limits that apply, each as a :class:`Pace`.
    """
    if remaining <= 0:
        return 0.0
    limited = max(
        (max(0.0, remaining - p.available) / p.per_second for p in paces if p.per_second > 0),
        default=0.0,
    )
    if rate <= 0:
        # Nothing finished yet: only a limit that is already spent can tell.
        return limited or None
    return max(remaining / rate, limited)


class Gauges(Protocol):
    """Live figures a :class:`Progress` line adds: the limits' paces and more counters."""

    def paces(self, tokens_per_request: float | None) -> list[Pace]:
        """The limits as paces in requests (tokens converted at ``tokens_per_request``)."""
        ...

    def parts(self) -> list[str]:
        """Short phrases to append to the line (``3 in flight``, ...)."""
        ...


def describe_limits(learned: dict[str, dict[str, Any]]) -> str:
    """Learned limits in a few words: ``limits 500 req/min, 30,000 tok/min (headers)``."""
    units = {"requests": "req", "tokens": "tok", "input_tokens": "in", "output_tokens": "out"}
    shown = [
        f"{limit['per_minute']:,.0f} {units[family]}/min"
        for family, limit in learned.items()
        if family in units and limit["source"] != "unlimited"
    ]
    if not shown:
        return "limits: none seen"
    sources = sorted(
        {limit["source"] for limit in learned.values() if limit["source"] != "unlimited"}
    )
    return f"limits {', '.join(shown)} ({', '.join(sources)})"


class Progress(AsyncResource):
    """Counts finished items and shows done, failed, rate, ETA and tokens.

    Args:
        total: Items expected, when known (for the bar and the ETA).
        label: Text before the counters.
        stream: Where to draw; stderr by default.
        tty: Force terminal or quiet mode; ``None`` asks ``stream.isatty()``.
        every_items: In quiet mode, a line after this many items.
        every_seconds: In quiet mode, a line after this many seconds; on a terminal the bar
            is redrawn ten times as often.
        gauges: Live figures to add (the limits' paces for the ETA, calls in flight, ...).
        limits: Gives the model's learned limits (``iModel.learned_limits``), shown at the
            end of the line.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        label: str = "",
        stream: TextIO | None = None,
        tty: bool | None = None,
        every_items: int = 100,
        every_seconds: float = 5.0,
        gauges: Gauges | None = None,
        limits: Callable[[], dict[str, dict[str, Any]] | None] | None = None,
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_items = every_items
        self.every_seconds = every_seconds
        self.gauges = gauges
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self.tokens = 0
        self._started = time.monotonic()
        self._last_line_items = 0
        self._last_line_time = self._started
        self._ticker: asyncio.Task[None] | None = None
        self._limits = limits

    # -- counting ------------------------------------------------------------------------

    def advance(self, *, ok: bool, tokens: int = 0) -> None:
        """Count one finished item."""
        self.done += 1
        self.failed += not ok
        self.tokens += tokens
        if not self.tty and self.done - self._last_line_items >= self.every_items:
            self._quiet_line()

    def skip(self, count: int = 1) -> None:
        """Count items that needed no call (done before, or bad); they do not add to the rate."""
        self.skipped += count

    @property
    def rate(self) -> float:
        """Finished items per second since the start."""
        return self.done / max(time.monotonic() - self._started, 1e-9)

    def line(self) -> str:
        """The current status as one line of text."""
        parts = [self.label] if self.label else []
        finished = self.done + self.skipped
        if self.total:
            parts.append(f"{finished}/{self.total}")
        else:
            parts.append(f"{finished} done")
        parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        rate = self.rate
        parts.append(f"{rate:.1f}/s")
        gauges = self.gauges
        if self.total:
            per_request = self.tokens / self.done if self.done and self.tokens else None
            paces = gauges.paces(per_request) if gauges is not None else ()
            eta = eta_seconds(max(0, self.total - finished), rate=rate, paces=paces)
            if eta is not None:
                parts.append(f"ETA {format_seconds(eta)}")
        parts.append(f"{self.tokens:,} tokens")
        if gauges is not None:
            parts.extend(gauges.parts())
        learned = self._limits() if self._limits is not None else None
        if learned:
            parts.append(describe_limits(learned))
        return ", ".join(parts)

    # -- drawing -------------------------------------------------------------------------

    def _bar(self) -> str:
        if not self.total:
            return ""
        share = min(1.0, (self.done + self.skipped) / self.total)
        filled = int(share * _BAR_WIDTH)
        return "[" + "#" * filled + "-" * (_BAR_WIDTH - filled) + f"] {share:4.0%} "

    def _redrawn(self) -> str:
        """The bar and line, cut to the terminal's width: a line that wrapped would leave
        its first rows behind at every redraw, which clears only the cursor's row."""
        width = shutil.get_terminal_size().columns
        return (self._bar() + self.line())[: max(1, width - 1)]

    def draw(self) -> None:
        """Redraw the bar (terminal) or write a quiet line if one is due."""
        if self.tty:
            self.stream.write(_CLEAR_LINE + self._redrawn())
            self.stream.flush()
        elif time.monotonic() - self._last_line_time >= self.every_seconds:
            self._quiet_line()

    def _quiet_line(self) -> None:
        self._last_line_items = self.done
        self._last_line_time = time.monotonic()
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Write a line of text without garbling the bar."""
        if self.tty:
            self.stream.write(_CLEAR_LINE)
        self.stream.write(text + "\n")
        if self.tty:
            self.stream.write(self._redrawn())
        self.stream.flush()

    def finish(self) -> None:
        """Draw the final state and end the bar's line."""
        if self.tty:
            self.stream.write(_CLEAR_LINE + self._bar() + self.line() + "\n")
            self.stream.flush()
        elif self.done != self._last_line_items:
            self._quiet_line()

    # -- live redraws --------------------------------------------------------------------

    async def _tick(self) -> None:
        interval = self.every_seconds / 10 if self.tty else min(1.0, self.every_seconds)
        while True:
            await asyncio.sleep(interval)
            self.draw()

    async def __aenter__(self) -> Self:
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def aclose(self) -> None:
        """Stop the live redraws (leaving ``async with`` does it)."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            # The ticker only sleeps and draws; waiting for it keeps one owner per task.
            await asyncio.gather(ticker, return_exceptions=True)
        self.finish()
