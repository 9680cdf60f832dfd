"""A sans-IO decoder for ``text/event-stream`` bodies (WHATWG HTML, "Server-sent events").

The decoder owns no socket and no task: feed it the bytes of the response body as they
arrive, in pieces of any size, and it returns the events those bytes completed::

    decoder = SSEDecoder()
    async for piece in response.content.iter_any():
        for event in decoder.feed(piece):
            handle(event)
    decoder.flush()

It follows the WHATWG event-stream interpretation rules:

* lines end with LF, CR or CRLF, and a CR at the end of one piece followed by an LF at the
  start of the next is a single line end (Gemini sends CRLF);
* one leading UTF-8 byte-order mark is dropped;
* a line starting with ``:`` is a comment (keep-alives such as ``: OPENROUTER PROCESSING``);
* ``field:value`` loses one space after the colon; a line without a colon is a field with an
  empty value; unknown fields are ignored;
* ``data`` lines are joined with ``"\\n"``; a blank line dispatches the event, unless no
  ``data`` line was seen since the last dispatch (so an ``event:`` line alone dispatches
  nothing);
* ``id`` sets the last event id, which persists across events; an ``id`` containing NUL is
  ignored; ``retry`` is honoured only when it is all ASCII digits.

The hot path (every streamed chunk of every provider goes through here) works on whole
pieces: line ends are found with ``bytes.split``, each run of complete lines is decoded with
one ``bytes.decode`` call, and ``data:`` lines take a short branch of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent"]

_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True, frozen=True)
class SSEEvent:
    """One dispatched server-sent event.

    Attributes:
        event: The ``event:`` field, ``"message"`` when the server sent none.
        data: The ``data:`` lines of the event joined with ``"\\n"``.
        id: The last event id at dispatch time (it persists across events, as the spec
            says), or ``None`` while it is empty.
        retry: The reconnection time in milliseconds from a ``retry:`` line inside this
            event, or ``None``.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Incremental, sans-IO decoder from event-stream bytes to :class:`SSEEvent` objects.

    Attributes:
        last_event_id: The last event id string, updated at every blank line from the ``id``
            fields seen so far (``""`` until the server sends one).
        retry: The latest valid ``retry:`` value in milliseconds, kept for the whole stream
            (a ``retry:`` block without data dispatches no event but still lands here).
    """

    __slots__ = (
        "_bom_pending",
        "_data",
        "_event",
        "_event_retry",
        "_id_buffer",
        "_skip_lf",
        "_tail",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        """Start at the beginning of a stream."""
        self.last_event_id: str = ""
        self.retry: int | None = None
        # Bytes after the last line end seen: an unfinished line.
        self._tail = b""
        # The previous piece ended with CR, so an LF opening the next piece closes nothing.
        self._skip_lf = False
        self._bom_pending = True
        self._data: list[str] = []
        self._event = ""
        self._event_retry: int | None = None
        self._id_buffer = ""

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Take the next piece of the body and return the events it completed.

        Args:
            data: Any number of bytes; a piece may end anywhere, including inside a
                multi-byte UTF-8 character or between the CR and LF of a CRLF.

        Returns:
            The events dispatched by blank lines inside ``data``, in order (often empty).
        """
        if self._bom_pending:
            data = self._tail + data
            if len(data) < len(_BOM) and _BOM.startswith(data):
                # Too short to tell whether this is the byte-order mark; wait for more.
                self._tail = data
                return []
            self._bom_pending = False
            self._tail = b""
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
        if not data:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == 0x0A:
                data = data[1:]
        if b"\r" in data:
            # Rare (Gemini): turn every line end into LF so one split finds them all. A CR
            # closing the piece ends its line now; the LF that may follow is dropped above.
            self._skip_lf = data[-1] == 0x0D
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        last_lf = data.rfind(b"\n")
        if last_lf < 0:
            self._tail += data
            return []
        # LF never occurs inside a multi-byte UTF-8 sequence, so decoding every complete
        # line at once equals decoding them one by one, with far fewer calls.
        complete = self._tail + data[:last_lf] if self._tail else data[:last_lf]
        self._tail = data[last_lf + 1 :]
        return self._process(complete.decode("utf-8", "replace").split("\n"))

    def flush(self) -> list[SSEEvent]:
        """Signal the end of the body and reset the decoder for a new stream.

        The spec discards whatever is pending at end of file: an unterminated last line and
        an event whose blank line never came are not dispatched (a stream cut short must not
        pass for a whole one). ``last_event_id`` and ``retry`` are kept, as a reconnecting
        client needs them.

        Returns:
            Always an empty list; the return value keeps ``feed`` and ``flush`` symmetric
            for callers that loop over both.
        """
        self._tail = b""
        self._skip_lf = False
        self._bom_pending = True
        self._data = []
        self._event = ""
        self._event_retry = None
        return []

    def _process(self, lines: list[str]) -> list[SSEEvent]:
        """Interpret complete lines (without their line ends) and return dispatched events."""
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if line.startswith("data:"):
                data.append(line[6:] if line.startswith(" ", 5) else line[5:])
            elif not line:
                self.last_event_id = self._id_buffer
                if data:
                    events.append(
                        SSEEvent(
                            self._event or "message",
                            "\n".join(data),
                            self._id_buffer or None,
                            self._event_retry,
                        )
                    )
                    data.clear()
                self._event = ""
                self._event_retry = None
            elif line[0] != ":":
                self._field(line)
        return events

    def _field(self, line: str) -> None:
        """Apply one non-data, non-comment field line to the event being built."""
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            # "data" with no colon: an empty data line.
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._event_retry = self.retry = int(value)
