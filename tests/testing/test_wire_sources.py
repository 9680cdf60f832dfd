"""Recorded exchanges as sources: ``Reply.from_wire`` paths and the replay tests' skip reason."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from tests.conftest import wire_files, wire_records

from lionpride.testing import FakeProvider, Reply

RECORD = {
    "response": {
        "status": 200,
        "headers": {"content-type": "application/json", "content-length": "999", "x-id": "a1"},
        "body_text": '{"recorded": true}',
    }
}


@pytest.mark.parametrize("as_str", [True, False], ids=["str", "Path"])
async def test_from_wire_takes_a_str_path_as_well_as_a_path(tmp_path: Path, as_str: bool) -> None:
    """``Reply.from_wire`` reads a record file named by a ``str`` as by a ``Path``."""
    path = tmp_path / "record.json"
    path.write_text(json.dumps(RECORD), encoding="utf-8")
    reply = Reply.from_wire(str(path) if as_str else path)
    assert reply.status == 200 and reply.body == '{"recorded": true}'
    assert reply.headers == {"content-type": "application/json", "x-id": "a1"}
    async with FakeProvider() as fp, aiohttp.ClientSession() as session:
        fp.script(reply)
        body = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "Hi"}]}
        async with session.post(fp.base_url("openai") + "/chat/completions", json=body) as resp:
            assert resp.headers["x-id"] == "a1"
            assert await resp.read() == b'{"recorded": true}'


@pytest.mark.parametrize("collect", [wire_files, wire_records])
def test_missing_wire_directory_skips_saying_what_and_how(tmp_path: Path, collect: object) -> None:
    """Without the recordings the replay tests skip, naming the folder and how to provide it."""
    missing = tmp_path / "shared" / "wire"
    params = collect(directory=missing)  # type: ignore[operator]
    assert len(params) == 1
    (mark,) = params[0].marks
    reason = mark.kwargs["reason"]
    assert mark.name == "skip"
    assert str(missing) in reason
    assert "not part of this repository" in reason and "../shared/wire" in reason
    assert "LIONPRIDE_WIRE_DIR" in reason
