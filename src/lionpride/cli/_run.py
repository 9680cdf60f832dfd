"""``lionpride run``: send a JSONL file of requests under limits, resumably.

Each result is appended to the output as soon as its request finishes, in the OpenAI Batch
output shape plus the normalized fields::

    {"custom_id": "req-1", "response": {"status_code": 200, "body": {...provider's body...}},
     "error": null, "text": "...", "usage": {...}, "finish_reason": "stop"}

A failed request has ``"error": {"code": "<error type>", "message": "..."}`` and, when the
provider answered, ``"response": {"status_code": 429, "body": {...}}`` (else ``null``).

Resuming: run the same command again. Requests that already have a successful line are not
sent; failed ones are sent again (their old lines are removed first, see
:func:`~lionpride.cli._batch_io.load_done`), so the output ends with exactly one line per
request. A batch line's ``url`` sends it to chat completions, responses or embeddings (one
model per endpoint, sharing the run's limits). Bad input lines (not JSON, not UTF-8, no body,
a duplicate custom_id, a body asking for ``"stream": true``, a ``url`` run does not serve) are
reported on stderr
with their line numbers, skipped, and make the exit code 1. Exit codes: 0 every request
succeeded, 1 some failed or were bad, 2 bad usage (flags, missing key, unreadable input or
one that is no regular file, such as a pipe, which could be read only once; an output that
cannot be written, also when the disk fills up mid-run; a request larger than
``--limit-tokens``), 130 interrupted (Ctrl-C or SIGTERM: the calls in flight are abandoned,
the summary is printed, a rerun resumes; an output that is no regular file, such as
``/dev/stdout``, keeps nothing to resume from). Do not run two processes on the same output
file at once.

The summary counts what happened to each request: sent (succeeded, failed, or unanswered when
the run stopped with it in flight), not sent, rejected before sending, already done, or bad.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lionpride import errors
from lionpride.cli._batch_io import (
    BadLine,
    BatchItem,
    ResultWriter,
    count_lines,
    load_done,
    read_requests,
)
from lionpride.cli._common import build_model
from lionpride.cli._live import RunGauges
from lionpride.cli._progress import Progress, format_seconds
from lionpride.cli._stats import Stopwatch, Summary, secs
from lionpride.core.event import EventStatus
from lionpride.errors import UsageError, WriteError

if TYPE_CHECKING:
    from lionpride.services.execution import RateLimitedExecutor
    from lionpride.services.imodel import iModel
    from lionpride.services.types.backend import Calling

__all__ = ["result_record", "run_batch"]


def run_batch(args: argparse.Namespace) -> int:
    """Run the ``run`` command; return the exit code."""
    try:
        if not stat.S_ISREG(os.stat(args.input).st_mode):
            # Counted, read again for a resume and read to send: a pipe gives its lines once
            # (and a FIFO without a writer would block).
            raise UsageError(
                f"{args.input} is not a regular file: run reads its input more than once "
                "(to count, to resume, to send); save it to a file first"
            )
        total = count_lines(args.input)
    except OSError as exc:
        raise UsageError(f"cannot read {args.input}: {exc.strerror or exc}") from exc
    if _same_file(args.output, args.input):
        # Resuming rewrites the output without its non-result lines: it would empty the input.
        raise UsageError("--output must not be the input file")
    model = _Models(args, build_model(args))
    try:
        done = load_done(args.output)
        writer = ResultWriter(args.output)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    terminated = _Terminated()
    try:
        return asyncio.run(_run(args, model, writer, done, total, terminated))
    except asyncio.CancelledError:
        if terminated.received:
            raise KeyboardInterrupt from None  # SIGTERM ends the run as Ctrl-C does: 130
        raise
    finally:
        writer.close()


class _Models:
    """The run's model for each endpoint: chat completions built up front, the others
    (responses, embeddings) on their first line, sharing the chat model's executor so that
    the run's limits hold across all of them."""

    def __init__(self, args: argparse.Namespace, chat: iModel) -> None:
        self.args = args
        self.chat = chat
        self.by_endpoint: dict[str, iModel] = {"chat/completions": chat}

    def get(self, endpoint: str) -> iModel:
        """The model for ``endpoint``, built on first use.

        Raises:
            UsageError: The provider does not serve that endpoint.
        """
        model = self.by_endpoint.get(endpoint)
        if model is None:
            extra: dict[str, Any] = {"endpoint": endpoint}
            if self.chat.executor is not None:
                extra["executor"] = self.chat.executor
            model = self.by_endpoint[endpoint] = build_model(self.args, **extra)
        return model

    @property
    def executor(self) -> RateLimitedExecutor | None:
        """The executor every model shares (the chat model's), holding the run's limits."""
        return self.chat.executor

    def metrics(self) -> dict[str, Any]:
        """Every model's metrics together (latency from the busiest; the live gauges, such
        as the queue depth, from the shared executor)."""
        snapshots = [m.metrics() for m in self.by_endpoint.values()]
        if len(snapshots) == 1:
            return snapshots[0]
        merged = dict(max(snapshots, key=lambda snap: int(snap["calls"])))
        for key in ("calls", "successes", "failures", "retries", "rate_limited", "tokens_in",
                    "tokens_out", "cost_usd", "unpriced_calls"):  # fmt: skip
            merged[key] = sum(snap[key] for snap in snapshots)
        failures: dict[str, int] = {}
        for snap in snapshots:
            for kind, count in snap["failures_by_type"].items():
                failures[kind] = failures.get(kind, 0) + count
        merged["failures_by_type"] = failures
        return merged

    def summary(self, elapsed: float) -> Summary:
        """The run's summary: every model's calls together."""
        return Summary.from_snapshot(self.metrics(), elapsed)

    async def aclose(self) -> None:
        """Close every model (the chat model, which owns the executor, last)."""
        for model in reversed(self.by_endpoint.values()):
            await model.aclose()


class _Terminated:
    """Set when SIGTERM cancelled the run, which asyncio.run reports as a cancellation."""

    def __init__(self) -> None:
        self.received = False


#: Failure reasons printed on screen as they happen; the rest are only in the output file.
SHOWN_FAILURES = 5


class _NeverFits(Exception):
    """A request larger than the token limit: no wait makes it fit, so the run stops."""


#: How to make a request that never fits smaller, by endpoint: the output budget's own field.
_SHRINK = {
    "chat/completions": "lower its max_tokens",
    "responses": "lower its max_output_tokens",
    "embeddings": "split its input over several lines",
}
_SHRINK_ANY = "lower its output budget"


@dataclass
class _RunState:
    """What the workers of one run share.

    Attributes:
        models: The run's model for each endpoint (they share one executor).
        model_name: ``--model``, which replaces each request's own.
        writer: The output file.
        progress: The live line.
        gauges: The live counters of the models (``calling`` is kept here).
        rejected: Ids of requests refused before sending (invalid parameters).
        failures_shown: Failure reasons printed so far.
        unsent: Calls cancelled (Ctrl-C, SIGTERM, a stopped run) before they were sent.
        unanswered: Calls cancelled after they were sent, before their answer came.
    """

    models: _Models
    model_name: str | None
    writer: ResultWriter
    progress: Progress
    gauges: RunGauges
    rejected: list[str] = field(default_factory=list)
    failures_shown: int = 0
    unsent: int = 0
    unanswered: int = 0


async def _run(
    args: argparse.Namespace,
    model: _Models,
    writer: ResultWriter,
    done: set[str],
    total: int,
    terminated: _Terminated,
) -> int:
    # Counted up front, not as the workers pass them: the bar, the ETA and the counts of an
    # interrupted run would otherwise take the done lines still ahead for requests to send.
    already = _already_done(args.input, done)
    clock = Stopwatch()
    gauges = RunGauges(model, limits=model.chat.limits)
    progress = Progress(total, label="run", gauges=gauges, limits=model.chat.learned_limits)
    progress.skip(already)
    state = _RunState(model, args.model, writer, progress, gauges)
    bad: list[BadLine] = []
    items = _pending(read_requests(args.input), done, bad, progress)
    interrupted = False
    _cancel_on_sigterm(terminated)
    try:
        try:
            async with progress, asyncio.TaskGroup() as group:
                for _ in range(args.concurrency):
                    group.create_task(_worker(items, state))
        except* WriteError as failed:
            # Every worker writes to the one file: the first failure says it all.
            raise UsageError(f"{failed.exceptions[0]}{_kept(writer)}") from None
        except* _NeverFits as refused:
            raise UsageError(f"{refused.exceptions[0]}{_kept(writer)}") from None
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM
        interrupted = True
        raise
    finally:
        clock.stop()
        _default_sigterm()
        try:
            # Read before closing: metrics() also asks the executor, which aclose stops.
            summary = model.summary(clock.elapsed).less_cancelled(
                unsent=state.unsent, unanswered=state.unanswered
            )
        finally:
            await model.aclose()
        not_sent = total - progress.skipped - progress.done - state.unanswered
        _summary(
            summary,
            state,
            bad,
            model.chat.limits.request_rate,
            not_sent=not_sent,
            interrupted=interrupted,
        )
    return 1 if summary.failures or state.rejected or bad else 0


def _kept(writer: ResultWriter) -> str:
    """What becomes of the results written so far, for a message that stops the run."""
    if writer.resumable:
        return (
            "; the results written before are kept, and running the same command again "
            "sends only the rest"
        )
    return "; the output is not a regular file, so a rerun sends every request again"


def _cancel_on_sigterm(terminated: _Terminated) -> None:
    """Make SIGTERM cancel the running task (the run) and mark ``terminated``.

    Without this a SIGTERM (``kill``, ``timeout``, a container stopping) ends the process
    at once: no summary, and the exit status is the signal's instead of 130.
    """
    task = asyncio.current_task()
    assert task is not None

    def on_sigterm() -> None:
        terminated.received = True
        task.cancel()

    # No signal handlers on Windows or outside the main thread: SIGTERM keeps its default.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)


def _default_sigterm() -> None:
    """Give SIGTERM back its default action (cleanup is under way; a second one kills)."""
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)


def _same_file(output: str, input_path: str) -> bool:
    """Whether ``output`` names ``input_path``, however spelled (relative, links)."""
    try:
        return os.path.samefile(output, input_path)
    except OSError:  # the output does not exist yet
        return os.path.realpath(output) == os.path.realpath(input_path)


def _already_done(path: str, done: set[str]) -> int:
    """The requests of ``path`` that have a successful result in ``done`` (a resumed run
    reads its input once more for this; a first run does not)."""
    if not done:
        return 0
    return sum(isinstance(i, BatchItem) and i.custom_id in done for i in read_requests(path))


def _pending(
    requests: Iterator[BatchItem | BadLine],
    done: set[str],
    bad: list[BadLine],
    progress: Progress,
) -> Iterator[BatchItem]:
    """The requests still to send; bad lines are reported and counted on the way (done ones
    were counted before the run, by :func:`_already_done`)."""
    for item in requests:
        if isinstance(item, BadLine):
            bad.append(item)
            progress.message(f"line {item.line_no}: {item.reason}; skipped")
            progress.skip()
        elif item.custom_id not in done:
            yield item


async def _worker(items: Iterator[BatchItem], state: _RunState) -> None:
    """Take requests from the shared iterator until it is empty.

    Each worker pulls the next line only when it is free, so a huge input is never loaded at
    once; ``next()`` on the shared generator is synchronous, so workers never race on it.
    Requests rejected before sending (invalid parameters) never reach the model, so its
    metrics cannot count them: their ids go to ``state.rejected``.
    """
    progress = state.progress
    for item in items:
        record = await _send(item, state)
        usage = record.get("usage") or {}
        tokens = int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        error = record["error"]
        try:
            state.writer.append(record)
        finally:
            # Once written (a request counted done has its line), and also when the write
            # failed: that request was sent all the same.
            progress.advance(ok=error is None, tokens=tokens)
        if error is not None:
            _show_failure(state, item, error)


def _show_failure(state: _RunState, item: BatchItem, error: dict[str, Any]) -> None:
    """Print the reason of one of the first failures (the rest are in the output file)."""
    state.failures_shown += 1
    if state.failures_shown > SHOWN_FAILURES:
        return
    message = " ".join(str(error["message"]).split())
    if len(message) > 300:
        message = message[:297] + "..."
    text = f"{item.custom_id} (line {item.line_no}) failed: {error['code']}: {message}"
    if state.failures_shown == SHOWN_FAILURES:
        text += f"\n(only the first {SHOWN_FAILURES} failures are shown; all are in the output)"
    state.progress.message(text)


async def _send(item: BatchItem, state: _RunState) -> dict[str, Any]:
    """Send one request and return its output line.

    Raises:
        _NeverFits: The request is larger than the token limit.
    """
    try:
        model = state.models.get(item.endpoint)
    except UsageError as exc:  # a provider that does not serve the line's url
        state.rejected.append(item.custom_id)
        return _error_record(item.custom_id, exc)
    body = dict(item.body)
    if state.model_name:
        body["model"] = state.model_name
    try:
        calling = await model.create_calling(**body)
    except (ValueError, TypeError, errors.LionprideError) as exc:
        too_large = _never_fits(model, body)
        if too_large is not None:
            tokens, capacity = too_large
            shrink = _SHRINK.get(item.endpoint, _SHRINK_ANY)
            raise _NeverFits(
                f"request {item.custom_id!r} (line {item.line_no}) needs {tokens:,} tokens "
                f"(prompt estimate plus output budget) but --limit-tokens is {capacity:,}: it "
                f"can never be sent; raise --limit-tokens or {shrink}"
            ) from exc
        state.rejected.append(item.custom_id)
        return _error_record(item.custom_id, exc)
    state.gauges.calling += 1
    try:
        await model.invoke(calling=calling, raise_on_error=False)
    except asyncio.CancelledError:
        # Sent or not is what the run's summary tells apart: an attempt began or none did.
        if calling.execution.status is EventStatus.CANCELLED:
            if calling.execution.attempts:
                state.unanswered += 1
            else:
                state.unsent += 1
        raise
    finally:
        state.gauges.calling -= 1
    return result_record(item.custom_id, calling)


def _never_fits(model: iModel, body: dict[str, Any]) -> tuple[int, int] | None:
    """``(tokens, capacity)`` when ``body`` is valid but larger than the token bucket."""
    executor = model.executor
    capacity = executor.token_capacity if executor is not None else None
    if capacity is None:
        return None
    try:
        tokens = model.backend.estimate_tokens(model.backend.create_payload(dict(body)))
    except (ValueError, TypeError):
        return None  # invalid: rejected, and the run goes on
    return (tokens, capacity) if tokens > capacity else None


def result_record(custom_id: str, calling: Calling) -> dict[str, Any]:
    """The output line for a finished call, in the OpenAI Batch output shape."""
    error = calling.execution.error
    response = calling.execution.response
    if error is None and response is not None:
        record: dict[str, Any] = {
            "custom_id": custom_id,
            "response": {"status_code": 200, "body": response.raw_response},
            "error": None,
            "text": response.data if isinstance(response.data, str) else None,
            "usage": response.usage.model_dump() if response.usage is not None else None,
            "finish_reason": response.finish_reason,
        }
        if response.tool_calls:
            record["tool_calls"] = [call.model_dump() for call in response.tool_calls]
        return record
    return _error_record(
        custom_id, error or RuntimeError(f"call ended {calling.execution.status.value}")
    )


def _error_record(custom_id: str, error: BaseException) -> dict[str, Any]:
    status = getattr(error, "status_code", None)
    answered = isinstance(status, int)
    return {
        "custom_id": custom_id,
        "response": {"status_code": status, "body": getattr(error, "body", None)}
        if answered
        else None,
        "error": {"code": type(error).__name__, "message": str(error)},
    }


def _rate_text(per_second: float) -> str:
    """A request rate in the unit that keeps a digit: per second, minute or hour."""
    if per_second >= 1 or per_second == 0:
        return f"{per_second:.1f} req/s"
    if per_second * 60 >= 1:
        return f"{per_second * 60:.1f} req/min"
    return f"{per_second * 3600:.1f} req/h"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else format_seconds(seconds)


def _summary(
    summary: Summary,
    state: _RunState,
    bad: list[BadLine],
    configured: float | None,
    *,
    not_sent: int,
    interrupted: bool,
) -> None:
    s = summary
    progress = state.progress
    sent = f"{s.calls} sent: {s.successes} succeeded, {s.failures} failed"
    if state.unanswered:
        sent += f", {state.unanswered} unanswered (stopped in flight)"
    parts = [
        sent,
        f"{progress.skipped - len(bad)} already done",
        f"{len(bad)} bad input line(s)",
    ]
    if state.rejected:
        parts.insert(1, f"{len(state.rejected)} rejected before sending")
    if not_sent > 0:
        parts.insert(1, f"{not_sent} not sent")
    rate = _rate_text(s.rate)
    if configured is not None:
        rate += f" (configured {_rate_text(configured)})"
    lines = [
        "; ".join(parts),
        f"time {_duration(s.elapsed)}, {rate}, latency p50 {secs(s.p50)} p99 {secs(s.p99)}",
        f"tokens {s.tokens_in:,} in / {s.tokens_out:,} out, cost {s.cost_text()}; "
        f"retries {s.retries}, 429s {s.rate_limited}",
    ]
    if s.failures_by_type:
        lines.append(f"failures: {s.failures_text()}")
    if bad:
        shown = ", ".join(str(b.line_no) for b in itertools.islice(bad, 20))
        lines.append(f"bad lines: {shown}{' ...' if len(bad) > 20 else ''}")
    if interrupted:
        if state.writer.resumable:
            lines.append("interrupted: run the same command again to send the rest")
        else:
            lines.append(
                "interrupted: the output is not a regular file, so nothing can be resumed "
                "from it; a rerun sends every request again"
            )
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
