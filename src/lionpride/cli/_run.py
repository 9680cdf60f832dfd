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
request. Bad input lines (not JSON, not UTF-8, no body, a duplicate custom_id, a body asking
for ``"stream": true``) are reported on stderr
with their line numbers, skipped, and make the exit code 1. Exit codes: 0 every request
succeeded, 1 some failed or were bad, 2 bad usage (flags, missing key, unreadable input, an
output that cannot be written, also when the disk fills up mid-run), 130 interrupted (Ctrl-C
or SIGTERM: the calls in flight are abandoned, the summary is printed, a rerun resumes).
Do not run two processes on the same output file at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lionpride.cli._batch_io import (
    BadLine,
    BatchItem,
    ResultWriter,
    WriteError,
    count_lines,
    load_done,
    read_requests,
)
from lionpride.cli._common import UsageError, build_model
from lionpride.cli._progress import Progress, format_seconds
from lionpride.cli._stats import Stopwatch, Summary, secs

if TYPE_CHECKING:
    from lionpride.services.imodel import iModel
    from lionpride.services.types.backend import Calling

__all__ = ["result_record", "run_batch"]


def run_batch(args: argparse.Namespace) -> int:
    """Run the ``run`` command; return the exit code."""
    try:
        total = count_lines(args.input)
    except OSError as exc:
        raise UsageError(f"cannot read {args.input}: {exc.strerror or exc}") from exc
    if _same_file(args.output, args.input):
        # Resuming rewrites the output without its non-result lines: it would empty the input.
        raise UsageError("--output must not be the input file")
    model = build_model(args)
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


class _Terminated:
    """Set when SIGTERM cancelled the run, which asyncio.run reports as a cancellation."""

    def __init__(self) -> None:
        self.received = False


async def _run(
    args: argparse.Namespace,
    model: iModel,
    writer: ResultWriter,
    done: set[str],
    total: int,
    terminated: _Terminated,
) -> int:
    clock = Stopwatch()
    rejected: list[str] = []
    progress = Progress(total, label="run", limits=model.learned_limits)
    bad: list[BadLine] = []
    items = _pending(read_requests(args.input), done, bad, progress)
    interrupted = False
    _cancel_on_sigterm(terminated)
    try:
        try:
            async with progress, asyncio.TaskGroup() as group:
                for _ in range(args.concurrency):
                    group.create_task(_worker(items, model, args.model, writer, rejected, progress))
        except* WriteError as failed:
            # Every worker writes to the one file: the first failure says it all.
            raise UsageError(
                f"{failed.exceptions[0]}; the results written before are kept, and running "
                "the same command again sends only the rest"
            ) from None
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM
        interrupted = True
        raise
    finally:
        clock.stop()
        _default_sigterm()
        try:
            # Read before closing: metrics() also asks the executor, which aclose stops.
            summary = Summary.of(model, clock.elapsed)
        finally:
            await model.aclose()
        _summary(summary, len(rejected), progress, bad, _configured_rate(args), interrupted)
    return 1 if summary.failures or rejected or bad else 0


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


def _configured_rate(args: argparse.Namespace) -> float | None:
    """Requests per second that ``--limit-requests`` allows in the long run, if set."""
    limit = getattr(args, "limit_requests", None)
    if limit is None:
        return None
    return float(limit) / float(getattr(args, "capacity_refresh_time", 60.0))


def _pending(
    requests: Iterator[BatchItem | BadLine],
    done: set[str],
    bad: list[BadLine],
    progress: Progress,
) -> Iterator[BatchItem]:
    """The requests still to send; bad lines are reported and done ones counted on the way."""
    for item in requests:
        if isinstance(item, BadLine):
            bad.append(item)
            progress.message(f"line {item.line_no}: {item.reason}; skipped")
            progress.skip()
        elif item.custom_id in done:
            progress.skip()
        else:
            yield item


async def _worker(
    items: Iterator[BatchItem],
    model: iModel,
    model_name: str | None,
    writer: ResultWriter,
    rejected: list[str],
    progress: Progress,
) -> None:
    """Take requests from the shared iterator until it is empty.

    Each worker pulls the next line only when it is free, so a huge input is never loaded at
    once; ``next()`` on the shared generator is synchronous, so workers never race on it.
    Requests rejected before sending (invalid parameters) never reach the model, so its
    metrics cannot count them: their ids go to ``rejected``.
    """
    for item in items:
        record = await _send(item, model, model_name, rejected)
        writer.append(record)
        usage = record.get("usage") or {}
        tokens = int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        progress.advance(ok=record["error"] is None, tokens=tokens)


async def _send(
    item: BatchItem, model: iModel, model_name: str | None, rejected: list[str]
) -> dict[str, Any]:
    body = dict(item.body)
    if model_name:
        body["model"] = model_name
    try:
        calling = await model.create_calling(**body)
    except (ValueError, TypeError) as exc:
        rejected.append(item.custom_id)
        return _error_record(item.custom_id, exc)
    await model.invoke(calling=calling, raise_on_error=False)
    return result_record(item.custom_id, calling)


def result_record(custom_id: str, calling: Calling) -> dict[str, Any]:
    """The output line for a finished call, in the OpenAI Batch output shape."""
    error = calling.execution.error
    response = calling.response
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


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else format_seconds(seconds)


def _summary(
    summary: Summary,
    rejected: int,
    progress: Progress,
    bad: list[BadLine],
    configured: float | None,
    interrupted: bool = False,
) -> None:
    s = summary
    parts = [
        f"{s.calls} sent: {s.successes} succeeded, {s.failures} failed",
        f"{progress.skipped - len(bad)} already done",
        f"{len(bad)} bad input line(s)",
    ]
    if rejected:
        parts.insert(1, f"{rejected} rejected before sending")
    rate = f"{s.rate:.1f} req/s"
    if configured is not None:
        rate += f" (configured {configured:.1f} req/s)"
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
        lines.append("interrupted: run the same command again to send the rest")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
