"""`lionpride demo`, `chat` and `fake-provider` run as real subprocesses."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest
from tests.cli._subprocess import cli_env, run_cli

from lionpride.cli import main
from lionpride.testing import FakeProvider, Reply


@pytest.mark.timeout(60)
async def test_demo_runs_offline_and_prints_the_table() -> None:
    """`lionpride demo` exits 0 well within 60 s and ends with the per-provider table."""
    code, out, err = await run_cli("demo", env=cli_env(), limit=50)
    assert code == 0, err
    for name in ("openai", "anthropic", "gemini"):
        assert f"\n{name} " in out
    assert "p99" in out and "achieved" in out and "configured" in out
    assert "CircuitBreakerOpenError" in out and "failed fast" in out
    assert "get_weather" in out
    assert "300/300" in err


async def test_chat_streams_one_reply() -> None:
    """`lionpride chat` prints the provider's reply and exits 0."""
    async with FakeProvider() as fp:
        fp.script(Reply(text="Paris is the capital."))
        args = ["chat", "--provider", "openai", "--base-url", fp.base_url("openai"), "Capital?"]
        code, out, err = await run_cli(*args, env=cli_env(OPENAI_API_KEY="test"))
        assert code == 0, err
        assert out.strip() == "Paris is the capital."
        assert fp.requests[0].body["stream"] is True
        assert fp.requests[0].body["messages"] == [{"role": "user", "content": "Capital?"}]


async def test_chat_failure_exits_1() -> None:
    """A call that fails after its retries is reported on stderr with exit code 1."""
    async with FakeProvider() as fp:
        fp.script(Reply(status=401))
        args = ["chat", "--provider", "openai", "--base-url", fp.base_url("openai"), "hi"]
        code, _, err = await run_cli(*args, env=cli_env(OPENAI_API_KEY="bad"))
    assert code == 1
    assert "AuthenticationError" in err


async def test_chat_shows_the_way_out_for_a_server_rejecting_stream_options() -> None:
    """A server that rejects stream_options: the error's note is printed, and
    ``--no-stream-usage`` then streams without the option."""
    rejection = {"detail": [{"loc": ["body", "stream_options"], "msg": "extra inputs"}]}
    async with FakeProvider() as fp:
        fp.script(Reply(status=422, body=rejection), Reply(text="Fine."))
        url = fp.base_url("openai")
        args = ["chat", "--provider", "my-vllm", "--model", "m", "--base-url", url, "hi"]
        env = cli_env(MY_VLLM_API_KEY="k")
        code, _, err = await run_cli(*args, env=env)
        assert code == 1
        assert "BadRequestError" in err and "stream_usage=False" in err
        code, out, err = await run_cli(*args, "--no-stream-usage", env=env)
        assert code == 0, err
        assert out.strip() == "Fine."
        assert "stream_options" in fp.requests[0].body
        assert "stream_options" not in fp.requests[1].body


async def test_fake_provider_command_serves_until_sigterm() -> None:
    """`lionpride fake-provider --port 0` announces its URL, answers, and stops on SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lionpride.cli",
        "fake-provider",
        "--port",
        "0",
        "--reply-text",
        "pong",
        stdout=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        first = (await proc.stdout.readline()).decode()
        url = first.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:")
        body = {"model": "m", "messages": [{"role": "user", "content": "ping"}]}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/v1/chat/completions", json=body) as resp,
        ):
            reply = await resp.json()
        assert reply["choices"][0]["message"]["content"] == "pong"
        proc.send_signal(signal.SIGTERM)
        rest, _ = await proc.communicate()
    assert proc.returncode == 0
    assert b"stopping after 1 requests" in rest


def test_help_and_unknown_command_exit_codes() -> None:
    """`--help` exits 0 and an unknown command exits 2, in process."""
    assert main(["--help"]) == 0
    assert main(["nosuch"]) == 2
