"""`lionpride fake-provider --script FILE`: a FakeProvider scripted from JSON, as a subprocess."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.cli._subprocess import cli_env, start_cli

from lionpride.cli import main
from lionpride.testing import ScriptError, load_script

RECORDED_BODY = '{"id":"chatcmpl-rec","object":"chat.completion","choices":[]}'
OPENAI_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_BODY = {"model": "c", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def _write_script(tmp_path: Path, replies: list[Any]) -> Path:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"replies": replies}))
    return script


async def test_script_file_serves_statuses_tool_calls_stalls_replays_and_delays(
    tmp_path: Path,
) -> None:
    """Each scripted reply of the file reaches the client in order, path filters apply, and
    the rest of the requests get generated replies."""
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    recording = {
        "response": {
            "status": 200,
            "headers": {"content-type": "application/json", "x-request-id": "req-7"},
            "body_text": RECORDED_BODY,
        }
    }
    (recordings / "openai_text.json").write_text(json.dumps(recording))
    script = _write_script(
        tmp_path,
        [
            {"path": "/messages", "status": 529, "repeat": 2},
            {"status": 429, "headers": {"retry-after": "1"}},
            {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
            {"chunks": ['data: {"n": 1}\n\n', "data: [DONE]\n\n"], "stall_after": 1},
            {"wire": "recordings/openai_text.json"},
            {"text": "Paris.", "delay": 0.1},
        ],
    )
    proc = await start_cli("fake-provider", "--port", "0", "--script", str(script), env=cli_env())
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            url = (await proc.stdout.readline()).decode().rsplit(" ", 1)[-1].strip()
            announced = [(await proc.stdout.readline()).decode() for _ in range(4)]
            assert f"script    7 replies from {script}" in announced[-1]
            openai, anthropic = url + "/v1/chat/completions", url + "/v1/messages"
            async with aiohttp.ClientSession() as session:
                async with session.post(openai, json=OPENAI_BODY) as resp:
                    assert (resp.status, resp.headers["retry-after"]) == (429, "1")
                for _ in range(2):
                    async with session.post(anthropic, json=ANTHROPIC_BODY) as resp:
                        assert resp.status == 529
                        assert (await resp.json())["error"]["type"] == "overloaded_error"
                async with session.post(openai, json=OPENAI_BODY) as resp:
                    call = (await resp.json())["choices"][0]["message"]["tool_calls"][0]
                    assert call["function"]["name"] == "get_weather"
                    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
                async with session.post(openai, json={**OPENAI_BODY, "stream": True}) as resp:
                    assert await resp.content.readline() == b'data: {"n": 1}\n'
                    with pytest.raises(TimeoutError):  # stalled, the connection open
                        async with asyncio.timeout(0.3):
                            await resp.content.read()
                async with session.post(openai, json=OPENAI_BODY) as resp:
                    assert resp.headers["x-request-id"] == "req-7"
                    assert await resp.text() == RECORDED_BODY
                async with session.post(openai, json=OPENAI_BODY) as resp:
                    assert (await resp.json())["choices"][0]["message"]["content"] == "Paris."
                async with session.post(anthropic, json=ANTHROPIC_BODY) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["type"] == "message"
            proc.send_signal(signal.SIGTERM)
            rest, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert b"stopping after 8 requests\n" in rest


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"replies": [{"status": 200}, {"stauts": 500}]}', "replies[1]: unknown field(s) stauts"),
        ('{"replies": [{"status": 700}]}', '"status" must be an HTTP status from 100 to 599'),
        ('{"replies": [{"delay": -1}]}', '"delay" must be a finite number >= 0, got -1'),
        ('{"replies": [{"repeat": 0}]}', '"repeat" must be 1 to 100,000, got 0'),
        ('{"replies": [{"wire": "nope.json"}]}', "replies[0]: cannot read "),
        ('{"replies": [{"wire": "x.json", "status": 500}]}', "drop status"),
        ('[{"status": 200}]', 'expected {"replies": [...]}'),
        ('{"replies": [', "is not JSON"),
    ],
)
def test_malformed_script_exits_2_naming_the_reply_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    """A script the provider cannot serve is bad usage, named before anything is served."""
    script = tmp_path / "script.json"
    script.write_text(content)
    assert main(["fake-provider", "--port", "0", "--script", str(script)]) == 2
    err = capsys.readouterr().err
    assert f"lionpride fake-provider: error: {script}" in err
    assert message in err


def test_tool_call_arguments_as_json_text_are_refused(tmp_path: Path) -> None:
    """Arguments given as a JSON string (as OpenAI's wire carries them) are named as the
    mistake, not served as a string where Anthropic and Gemini replies need an object."""
    script = _write_script(tmp_path, [{"tool_calls": [{"name": "f", "arguments": '{"a": 1}'}]}])
    with pytest.raises(ScriptError, match=r'replies\[0\]: "tool_calls" must be a list of'):
        load_script(script)


def test_fake_provider_help_documents_the_script_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`fake-provider --help` shows the file format and every reply field."""
    assert main(["fake-provider", "--help"]) == 0
    text = capsys.readouterr().out
    assert '{"replies": [' in text
    for name in ("status, headers", "tool_calls", "stall_after", "wire", "delay", "repeat"):
        assert name in text
