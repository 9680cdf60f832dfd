"""Tests for the sans-IO SSE decoder against the WHATWG rules and the recorded provider streams."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.conftest import WIRE_DIR, wire_files, wire_missing

from lionpride.services.streaming import SSEDecoder, SSEEvent


def decode(*pieces: bytes) -> list[SSEEvent]:
    """Feed ``pieces`` to a fresh decoder in order, flush it and return every event."""
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.flush())
    return events


def stream_bodies() -> list[Any]:
    """(file name, body bytes) params for every recorded ``text/event-stream`` response, or
    one skipped param naming what is missing."""
    if not WIRE_DIR.is_dir():
        return [pytest.param("", b"", marks=wire_files()[0].marks)]
    bodies = []
    for path in sorted(WIRE_DIR.glob("*.json")):
        response = json.loads(path.read_text(encoding="utf-8"))["response"]
        if response["headers"].get("content-type", "").startswith("text/event-stream"):
            body = response["body_text"].encode("utf-8")
            bodies.append(pytest.param(path.name, body, id=path.name))
    return bodies


STREAMS = stream_bodies()


# --- the WHATWG examples -------------------------------------------------------------------


def test_multiline_data_is_joined_with_newlines() -> None:
    """Several data lines of one event are joined with LF, the type defaulting to message."""
    assert decode(b"data: YHOO\ndata: +2\ndata: 10\n\n") == [SSEEvent("message", "YHOO\n+2\n10")]


def test_comments_ids_and_unterminated_last_event() -> None:
    """The spec's second example: comment skipped, id set then reset, last block discarded."""
    body = (
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event"
    )
    assert decode(body) == [
        SSEEvent("message", "first event", "1"),
        SSEEvent("message", "second event", None),
    ]


def test_data_without_colon_or_value() -> None:
    """A bare ``data`` line is an empty data line; two of them give a single LF."""
    assert decode(b"data\n\ndata\ndata\n\ndata:") == [SSEEvent(data=""), SSEEvent(data="\n")]


def test_space_after_colon_is_optional() -> None:
    """``data:test`` and ``data: test`` give the same event."""
    assert decode(b"data:test\n\ndata: test\n\n") == [SSEEvent(data="test")] * 2


def test_only_one_space_is_removed_and_colons_in_value_kept() -> None:
    """Only the first space after the colon goes; later colons belong to the value."""
    assert decode(b"data:  a:b\n\n") == [SSEEvent(data=" a:b")]


# --- fields ---------------------------------------------------------------------------------


def test_event_field_names_the_event_and_resets_after_dispatch() -> None:
    """``event:`` sets the type of one event only; an empty type means ``message``."""
    body = b"event: content_block_delta\ndata: {}\n\ndata: x\n\nevent:\ndata: y\n\n"
    assert [e.event for e in decode(body)] == ["content_block_delta", "message", "message"]


def test_event_without_data_is_not_dispatched() -> None:
    """A block with an event line but no data line dispatches nothing and leaks no type."""
    assert decode(b"event: ping\n\ndata: x\n\n") == [SSEEvent("message", "x")]


def test_comment_lines_are_ignored() -> None:
    """Comment lines, including keep-alives and a lone colon, neither add data nor dispatch."""
    body = b": OPENROUTER PROCESSING\n\n:\ndata: a\n: inside\ndata: b\n\n"
    assert decode(body) == [SSEEvent(data="a\nb")]


def test_unknown_fields_are_ignored() -> None:
    """Fields other than event, data, id and retry change nothing."""
    assert decode(b"foo: bar\ndatax: no\nDATA: no\ndata: yes\nbaz\n\n") == [SSEEvent(data="yes")]


def test_id_persists_across_events_and_can_be_cleared() -> None:
    """The last event id carries over to later events until an empty id clears it."""
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 7\ndata: a\n\ndata: b\n\nid:\ndata: c\n\n")
    assert [e.id for e in events] == ["7", "7", None]
    assert decoder.last_event_id == ""


def test_id_with_nul_is_ignored() -> None:
    """An id containing NUL leaves the last event id unchanged."""
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [e.id for e in events] == ["1", "1"]
    assert decoder.last_event_id == "1"


def test_last_event_id_updates_at_blank_line_even_without_data() -> None:
    """The decoder's last_event_id takes the id buffer at every blank line, not at the id line."""
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 42\n") == []
    assert decoder.last_event_id == ""
    assert decoder.feed(b"\n") == []
    assert decoder.last_event_id == "42"


@pytest.mark.parametrize("value", [b"10a", b"-5", b"", b"  5", b"1.5", "\u00b2".encode()])
def test_retry_accepts_ascii_digits_only(value: bytes) -> None:
    """A retry value that is not all ASCII digits is ignored."""
    decoder = SSEDecoder()
    assert decoder.feed(b"retry:" + value + b"\ndata: x\n\n") == [SSEEvent(data="x")]
    assert decoder.retry is None


def test_retry_is_reported_on_its_event_and_kept_by_the_decoder() -> None:
    """A valid retry rides on its own event only, and the decoder remembers the latest one."""
    decoder = SSEDecoder()
    events = decoder.feed(b"retry: 3000\ndata: a\n\ndata: b\n\nretry: 10\n\n")
    assert [e.retry for e in events] == [3000, None]
    assert decoder.retry == 10


# --- line ends, BOM, encoding ---------------------------------------------------------------


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_every_line_end_style(end: bytes) -> None:
    """LF, CR and CRLF all end lines, and two of them end an event."""
    body = end.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert decode(body) == [SSEEvent("e", "a\nb"), SSEEvent("message", "c")]


def test_crlf_split_between_feeds_is_one_line_end() -> None:
    """A CR closing one piece and an LF opening the next make a single line end."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == [SSEEvent(data="a\nb")]
    assert decoder.feed(b"\n") == []


def test_cr_at_end_of_feed_then_other_byte() -> None:
    """A CR at the end of a piece ends its line at once, whatever the next piece starts with."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [SSEEvent(data="a")]
    assert decoder.feed(b"data: b\n\n") == [SSEEvent(data="b")]


def test_empty_feed_does_not_forget_a_pending_cr() -> None:
    """An empty piece between CR and LF changes nothing."""
    assert decode(b"data: a\r", b"", b"\n\n") == [SSEEvent(data="a")]


def test_leading_bom_is_stripped_once() -> None:
    """The first BOM goes; a BOM later in the stream is part of the line (an unknown field)."""
    bom = b"\xef\xbb\xbf"
    assert decode(bom + b"data: a\n\n" + bom + b"data: b\n\ndata: c\n\n") == [
        SSEEvent(data="a"),
        SSEEvent(data="c"),
    ]


def test_bom_split_across_feeds_is_stripped() -> None:
    """A BOM arriving one byte at a time is still recognised and dropped."""
    assert decode(b"\xef", b"\xbb", b"\xbfdata: a\n\n") == [SSEEvent(data="a")]


def test_partial_bom_prefix_is_kept() -> None:
    """Bytes that only start like a BOM stay in the line (here turning it into an unknown field)."""
    assert decode(b"\xef\xbb", b"\xbfdata: a\n\n") == [SSEEvent(data="a")]
    assert decode(b"\xef\xbb", b"data: a\n\ndata: b\n\n") == [SSEEvent(data="b")]


def test_multibyte_character_split_across_feeds() -> None:
    """A UTF-8 character cut between two pieces is decoded whole."""
    text = "data: México → ok\n\n".encode()
    cut = text.index("→".encode()) + 1
    assert decode(text[:cut], text[cut:]) == [SSEEvent(data="México → ok")]


def test_invalid_utf8_is_replaced() -> None:
    """Bytes that are not UTF-8 become U+FFFD rather than failing the stream."""
    assert decode(b"data: a\xffb\n\n") == [SSEEvent(data="a\ufffdb")]


def test_flush_discards_incomplete_event_and_resets() -> None:
    """At end of body an event lacking its blank line is dropped and the decoder starts over."""
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 9\n\nevent: e\ndata: done\ndata: unterminated") == []
    assert decoder.flush() == []
    assert decoder.feed(b"data: next\n\n") == [SSEEvent("message", "next", "9")]


# --- the recorded provider streams ----------------------------------------------------------


def test_recorded_streams_found() -> None:
    """The wire directory holds SSE recordings to run the property tests on."""
    if not WIRE_DIR.is_dir():
        pytest.skip(wire_missing())
    assert len(STREAMS) >= 5


@pytest.mark.parametrize(("name", "body"), STREAMS)
def test_recorded_stream_decodes_the_same_however_split(name: str, body: bytes) -> None:
    """Whole, cut in two at every byte, or fed byte by byte, a stream gives the same events."""
    whole = decode(body)
    assert whole, name
    assert all("\r" not in e.data and not e.data.startswith(":") for e in whole)
    for cut in range(1, len(body)):
        assert decode(body[:cut], body[cut:]) == whole, f"{name} cut at byte {cut}"
    assert decode(*(body[i : i + 1] for i in range(len(body)))) == whole


@pytest.mark.parametrize(("name", "body"), STREAMS)
def test_recorded_stream_events_are_json_or_done(name: str, body: bytes) -> None:
    """Every recorded event's data is one JSON document or the ``[DONE]`` sentinel."""
    for event in decode(body):
        if event.data != "[DONE]":
            json.loads(event.data)
