"""What a test gives the FakeProvider and reads back from it: scripted replies and the record
of each request received.

A :class:`Reply` is built by hand, replayed from a recorded exchange in ``wire/``
(:meth:`Reply.from_wire`) or read from a script file (:mod:`lionpride.testing._script_file`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lionpride.testing._plan import split_sse_events

__all__ = ["ReceivedRequest", "Reply"]


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        status: HTTP status.
        headers: Response headers (a ``content-type`` here wins over the default one).
        body: A dict is sent as JSON, ``str``/``bytes`` verbatim; ``None`` means the generated
            reply for the request's format and stream mode (an error body for 4xx/5xx).
        delay: Seconds to wait before sending headers.
        drop: Close the connection without any response.
        truncate: Send only the first N bytes of the body, then close the connection, while
            ``Content-Length`` announces the full size.
        chunks: Pieces of a streamed body, written one at a time with ``chunk_delay`` between.
        chunk_delay: Seconds between pieces; ``None`` uses the provider's ``chunk_delay``.
        text: The text of a generated reply, instead of the provider's default.
        tool_calls: ``[{"name": ..., "arguments": {...}}]`` for a generated reply to call.
        usage: Provider-native usage numbers that replace the computed ones.
        stall_after: Send this many pieces, then go silent with the connection open until the
            client disconnects (or the provider stops).
        limited: Pass the provider-side limits first, as a generated reply does: a refused
            request gets the 429 instead, an admitted one this reply plus the rate-limit headers.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    drop: bool = False
    truncate: int | None = None
    chunks: list[str | bytes] | None = None
    chunk_delay: float | None = None
    text: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    usage: dict[str, Any] | None = None
    stall_after: int | None = None
    limited: bool = False

    @classmethod
    def from_wire(cls, record: Mapping[str, Any] | str | os.PathLike[str]) -> Reply:
        """Replay a recorded exchange from ``wire/`` (the parsed record or its file path,
        as a ``str`` or a path object).

        Status, headers (less ``content-length``, which belonged to the original encoding)
        and the body text are kept byte for byte; an SSE body is split into its events so
        they arrive one write at a time.
        """
        if isinstance(record, str | os.PathLike):
            with open(record, encoding="utf-8") as file:
                response = json.load(file)["response"]
        else:
            response = record["response"]
        headers = {
            name: value
            for name, value in response["headers"].items()
            if name.lower() != "content-length"
        }
        body = response["body_text"]
        kind = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        streamed = kind.startswith("text/event-stream")
        chunks: list[str | bytes] | None = list(split_sse_events(body)) if streamed else None
        return cls(status=int(response["status"]), headers=headers, body=body, chunks=chunks)


@dataclass(slots=True)
class ReceivedRequest:
    """One request as the provider received it.

    Attributes:
        method: HTTP method.
        path: Path plus query string.
        headers: Request headers with lower-cased names.
        body: The parsed JSON body, the raw text if it is not JSON, ``None`` if empty.
        time: Monotonic arrival time (the provider's clock).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float
