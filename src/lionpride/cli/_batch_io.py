"""Batch files: reading requests line by line and appending results that survive ``kill -9``.

Input lines are either OpenAI Batch API requests (``{"custom_id", "method", "url", "body"}``)
or plain request bodies (an optional ``custom_id`` key is taken out; otherwise the id is
``line-N``). Blank lines are ignored. A batch line's ``url`` picks the endpoint
(:data:`BATCH_URLS`: chat completions, responses, embeddings); any other url is a bad line,
never sent. A plain body goes to chat completions.

The output file only ever grows by whole lines: each result is one ``os.write`` of the full
line on a descriptor opened with ``O_APPEND``, so a process killed at any moment leaves every
finished line intact and at most one partial line at the end. :func:`load_done` repairs the
file before a resumed run: it drops that partial line and the records of failed requests
(which the resumed run sends again), by writing the kept lines to a temporary file and
renaming it over the output, so the file is valid at every instant.
"""

from __future__ import annotations

import codecs
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lionpride.errors import WriteError

__all__ = [
    "BATCH_URLS",
    "BadLine",
    "BatchItem",
    "ResultWriter",
    "count_lines",
    "load_done",
    "names_a_stream",
    "read_requests",
]

_BATCH_KEYS = frozenset({"custom_id", "method", "url", "body"})

#: The batch ``url`` values run serves, and the endpoint each goes to.
BATCH_URLS = {
    "/v1/chat/completions": "chat/completions",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
}


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request to send: its id, its 1-based line number, its body and its endpoint."""

    custom_id: str
    line_no: int
    body: dict[str, Any]
    endpoint: str = "chat/completions"


@dataclass(frozen=True, slots=True)
class BadLine:
    """An input line that cannot be sent, and why."""

    line_no: int
    reason: str


def count_lines(path: str) -> int:
    """Non-blank lines in ``path`` (for the progress total)."""
    count = 0
    with open(path, "rb") as file:
        for line in file:
            count += bool(line.strip())
    return count


def read_requests(path: str) -> Iterator[BatchItem | BadLine]:
    """Yield each non-blank line of ``path`` as a request or as a bad line, in order.

    A later line with the ``custom_id`` of an earlier one is a bad line (a duplicate), and so
    is a line that is not UTF-8 (JSON text is UTF-8; a leading byte order mark is ignored).
    """
    first_line: dict[str, int] = {}
    with open(path, "rb") as file:
        for line_no, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            if line_no == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)  # as some Windows editors save
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                # Never send a guess: a replaced byte would change the prompt silently.
                bad = raw[exc.start]
                yield BadLine(line_no, f"not UTF-8 (byte 0x{bad:02x} at offset {exc.start})")
                continue
            parsed = _parse(text, line_no)
            if isinstance(parsed, BatchItem):
                earlier = first_line.setdefault(parsed.custom_id, line_no)
                if earlier != line_no:
                    parsed = BadLine(
                        line_no,
                        f"duplicate custom_id {parsed.custom_id!r} (first on line {earlier})",
                    )
            yield parsed


def _parse(text: str, line_no: int) -> BatchItem | BadLine:
    try:
        data = json.loads(text)
    except ValueError as exc:
        return BadLine(line_no, f"not JSON ({exc})")
    if not isinstance(data, dict):
        return BadLine(line_no, f"expected a JSON object, got {type(data).__name__}")
    if data.keys() & (_BATCH_KEYS - {"custom_id"}):
        # The OpenAI Batch API format: the request is under "body".
        body = data.get("body")
        if body is None:
            return BadLine(line_no, 'missing "body" (batch format: custom_id, method, url, body)')
        if not isinstance(body, dict):
            return BadLine(line_no, f'"body" must be a JSON object, got {type(body).__name__}')
        custom_id = data.get("custom_id")
        if custom_id is None:
            return BadLine(line_no, 'missing "custom_id" (a non-empty string)')
        if not isinstance(custom_id, str) or not custom_id:
            return BadLine(line_no, f'"custom_id" must be a non-empty string, got {custom_id!r}')
        method = data.get("method", "POST")
        if method != "POST":
            return BadLine(line_no, f'"method" must be "POST", got {method!r}')
        url = data.get("url", "/v1/chat/completions")
        endpoint = BATCH_URLS.get(url) if isinstance(url, str) else None
        if endpoint is None:
            return BadLine(line_no, f'"url" must be one of {", ".join(BATCH_URLS)}, got {url!r}')
        return _checked(BatchItem(custom_id, line_no, body, endpoint))
    body = dict(data)
    custom_id = body.pop("custom_id", None)
    if custom_id is None:
        custom_id = f"line-{line_no}"
    elif not isinstance(custom_id, str) or not custom_id:
        return BadLine(line_no, f'"custom_id" must be a non-empty string, got {custom_id!r}')
    return _checked(BatchItem(custom_id, line_no, body))


def _checked(item: BatchItem) -> BatchItem | BadLine:
    """``item``, or a bad line when its body asks for something a batch cannot do."""
    stream = item.body.get("stream")
    if stream is not None and stream is not False:
        # A streamed reply is no JSON body: the provider would bill a call whose result
        # could never be recorded, and every resume would send (and bill) it again.
        return BadLine(
            item.line_no, f'"stream": {json.dumps(stream)} is not supported by run; remove it'
        )
    return item


def load_done(path: str) -> set[str]:
    """The custom_ids with a successful result in ``path``, after repairing the file.

    Kept: the first successful line of each custom_id. Dropped: a partial last line (the
    process was killed while writing it), lines that are not valid records, failed results
    (they are sent again) and repeated successes. The file is rewritten only when something
    is dropped, through a temporary file renamed over it. An output that is no regular file
    (a pipe, a terminal, ``/dev/stdout``) holds nothing to resume and is not read: reading it
    would wait forever for lines this very run is to write. Nor is a descriptor's name
    (``/dev/stdout`` redirected to a file, see :func:`names_a_stream`).
    """
    if names_a_stream(path):
        return set()
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return set()
    if not stat.S_ISREG(mode):
        return set()
    done, dropped = _scan(path, None)
    if dropped:
        tmp = f"{path}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _scan(path, fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return done


def names_a_stream(path: str) -> bool:
    """Whether ``path`` names a descriptor (``/dev/stdout``, ``/dev/fd/3``, ``/proc/...``).

    Where such a name leads is the caller's redirection, which differs from run to run (a
    rerun's ``> out.jsonl`` empties the file before the run starts): it is written as a
    stream, never read back for a resume, and never replaced by a repaired copy (which would
    put a file in place of the ``/dev`` entry itself). A file of its own under ``/dev`` or
    ``/proc`` (``/dev/shm/out.jsonl``, a regular file when its last link is not followed)
    is a file like any other.
    """
    if not os.path.abspath(path).startswith(("/dev/", "/proc/")):
        return False
    try:
        return not stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False  # a new file, which this run creates there


def _scan(path: str, out_fd: int | None) -> tuple[set[str], bool]:
    """Read ``path`` line by line; return the kept ids and whether any line is dropped.

    With ``out_fd``, the kept lines are also written there.
    """
    done: set[str] = set()
    dropped = False
    with open(path, "rb") as file:
        for raw in file:
            # A line without its newline is the partial tail a kill left behind.
            custom_id = _successful_id(raw) if raw.endswith(b"\n") else None
            if custom_id is None or custom_id in done:
                dropped = True
                continue
            done.add(custom_id)
            if out_fd is not None:
                _write_all(out_fd, raw)
    return done, dropped


def _successful_id(raw: bytes) -> str | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("error") is not None:
        return None
    response = record.get("response")
    custom_id = record.get("custom_id")
    if not isinstance(response, dict) or not isinstance(custom_id, str):
        return None
    return custom_id if response.get("status_code") == 200 else None


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # Some platforms cannot open a directory; the rename is still atomic.
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _encode(record: dict[str, Any]) -> bytes:
    """``record`` as one UTF-8 JSON line; readable text unless it holds a lone surrogate."""
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
    try:
        return (line + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (half an emoji in a reply) has no UTF-8 form; as a \u escape it
        # is valid JSON that reads back to the same string.
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str)
        return (line + "\n").encode("ascii")


class ResultWriter:
    """Appends result records to a JSONL file, one ``os.write`` per line.

    After a failed write (disk full, file too large) the writer refuses every later line:
    the failed one may have left a partial line, which a later line must not extend into an
    unreadable one (the resumed run drops the partial line alone).

    Attributes:
        resumable: Whether the output is a regular file named as such, which a rerun reads
            to resume; a pipe, a terminal or a descriptor's name (``/dev/stdout``, even
            redirected to a file) keeps nothing to resume from.

    Args:
        path: The output file, created if missing; a pipe or terminal works too (not synced).
        sync_every: ``fsync`` after this many lines...
        sync_seconds: ...or when this many seconds passed since the last one; always at close.
    """

    def __init__(self, path: str, *, sync_every: int = 200, sync_seconds: float = 1.0) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        # fsync fails on a pipe or terminal (EINVAL); there is no disk to flush to anyway.
        self._syncable = stat.S_ISREG(os.fstat(self._fd).st_mode)
        self.resumable = self._syncable and not names_a_stream(path)
        self._failed: WriteError | None = None
        self._sync_every = sync_every
        self._sync_seconds = sync_seconds
        self._unsynced = 0
        self._synced_at = time.monotonic()
        self.written = 0

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one JSON line.

        Raises:
            WriteError: This or an earlier write failed.
        """
        if self._fd is None:
            raise ValueError("ResultWriter is closed")
        if self._failed is not None:
            raise self._failed
        try:
            # One write of the whole line: a kill leaves either all of it or a tail to drop.
            _write_all(self._fd, _encode(record))
            self.written += 1
            self._unsynced += 1
            now = time.monotonic()
            if self._unsynced >= self._sync_every or now - self._synced_at >= self._sync_seconds:
                self.sync()
        except OSError as exc:
            self._failed = WriteError(f"cannot write {self.path}: {exc.strerror or exc}")
            raise self._failed from exc

    def sync(self) -> None:
        """Flush written lines to disk."""
        if self._fd is not None and self._unsynced:
            if self._syncable:
                os.fsync(self._fd)
            self._unsynced = 0
            self._synced_at = time.monotonic()

    def close(self) -> None:
        """Sync and close; safe to call twice."""
        if self._fd is None:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)
            self._fd = None
