"""`lionpride run` edge cases found in review: the output naming the input by another path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lionpride.cli import main
from lionpride.cli._batch_io import ResultWriter, load_done


def _write_input(path: Path, n: int = 3) -> str:
    text = "".join(
        json.dumps({"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}) + "\n"
        for i in range(n)
    )
    path.write_text(text)
    return text


def test_output_that_is_the_input_by_another_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An --output naming the input through another spelling exits 2 and leaves it intact."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "in.jsonl"
    text = _write_input(src)
    link = tmp_path / "link.jsonl"
    os.symlink(src, link)
    for output in ("./in.jsonl", str(src), str(link)):
        code = main(["run", "in.jsonl", "--output", output, "--provider", "openai"])
        assert code == 2
        assert "must not be the input" in capsys.readouterr().err
        assert src.read_text() == text


def test_result_with_a_lone_surrogate_is_written_and_counted_done(tmp_path: Path) -> None:
    """A reply holding a lone surrogate (valid JSON escape, invalid UTF-8) is still one line."""
    out = tmp_path / "out.jsonl"
    writer = ResultWriter(str(out))
    try:
        writer.append(
            {
                "custom_id": "odd\ud83d",
                "response": {"status_code": 200, "body": {"text": "half an emoji \ud83d"}},
                "error": None,
                "text": "half an emoji \ud83d",
            }
        )
        writer.append({"custom_id": "next", "response": {"status_code": 200}, "error": None})
    finally:
        writer.close()
    assert load_done(str(out)) == {"odd\ud83d", "next"}
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert records[0]["text"] == "half an emoji \ud83d"


def test_a_descriptor_name_is_never_read_back_or_replaced(tmp_path: Path) -> None:
    """``/dev/fd/N`` leading to a file with a failed line is neither resumed from nor
    rewritten (a repair would replace the ``/dev`` entry itself), and promises no resume."""
    out = tmp_path / "out.jsonl"
    failed = {"custom_id": "a", "response": None, "error": {"code": "X", "message": "m"}}
    out.write_text(json.dumps(failed) + "\n")
    fd = os.open(out, os.O_RDWR | os.O_APPEND)
    try:
        name = f"/dev/fd/{fd}"
        assert load_done(name) == set()
        writer = ResultWriter(name)
        try:
            assert not writer.resumable
        finally:
            writer.close()
    finally:
        os.close(fd)
    assert out.read_text() == json.dumps(failed) + "\n"
    plain = ResultWriter(str(tmp_path / "plain.jsonl"))
    assert plain.resumable
    plain.close()
