"""`lionpride chat` flags and defaults, run as a real subprocess against a FakeProvider."""

from __future__ import annotations

import pytest
from tests.cli._subprocess import cli_env, run_cli

from lionpride.cli import main
from lionpride.testing import FakeProvider, Reply


async def test_chat_reads_the_prompt_from_stdin_with_system_and_sampling_flags() -> None:
    """``-`` takes the prompt from stdin; --system, --max-tokens and --temperature are sent."""
    async with FakeProvider() as fp:
        fp.script(Reply(text="Bonjour."))
        args = ["chat", "--provider", "openai", "--base-url", fp.base_url("openai"), "-"]
        flags = ["--system", "Answer in French.", "--max-tokens", "64", "--temperature", "0.2"]
        code, out, err = await run_cli(
            *args, *flags, env=cli_env(OPENAI_API_KEY="t"), stdin=b"Say hello\nplease\n"
        )
        body = fp.requests[0].body
    assert code == 0, err
    assert out.strip() == "Bonjour."
    assert body["model"] == "gpt-5-mini"
    assert body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Say hello\nplease\n"},
    ]
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body
    assert body["temperature"] == 0.2


async def test_chat_puts_the_flags_where_anthropic_and_gemini_want_them() -> None:
    """Anthropic gets ``system`` and ``max_tokens``, Gemini a systemInstruction and a
    generationConfig, each with its current default model."""
    flags = ["--system", "Be brief.", "--max-tokens", "32", "--temperature", "0.5", "Hi"]
    env = cli_env(ANTHROPIC_API_KEY="t", GEMINI_API_KEY="t")
    async with FakeProvider() as fp:
        for provider in ("anthropic", "gemini"):
            args = ["chat", "--provider", provider, "--base-url", fp.base_url(provider)]
            code, out, err = await run_cli(*args, *flags, env=env)
            assert code == 0, err
            assert out.strip()
        anthropic, gemini = fp.requests
    assert anthropic.body["model"] == "claude-sonnet-4-5"
    assert anthropic.body["system"] == "Be brief."
    assert (anthropic.body["max_tokens"], anthropic.body["temperature"]) == (32, 0.5)
    assert anthropic.body["messages"] == [{"role": "user", "content": "Hi"}]
    assert "/models/gemini-2.5-flash:streamGenerateContent" in gemini.path
    assert gemini.body["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert gemini.body["generationConfig"] == {"maxOutputTokens": 32, "temperature": 0.5}


async def test_chat_with_an_empty_stdin_prompt_exits_2() -> None:
    """An empty prompt on stdin is bad usage, not a call."""
    args = ["chat", "--provider", "openai", "--base-url", "http://127.0.0.1:9/v1", "-"]
    code, _, err = await run_cli(*args, env=cli_env(OPENAI_API_KEY="t"), stdin=b"\n")
    assert code == 2
    assert "the prompt on stdin is empty" in err


async def test_chat_with_a_stdin_prompt_that_is_not_utf8_exits_2_naming_the_byte() -> None:
    """A Latin-1 byte on stdin is named with its offset, not reported as an encoding
    failure at some position of the request body."""
    args = ["chat", "--provider", "openai", "--base-url", "http://127.0.0.1:9/v1", "-"]
    code, _, err = await run_cli(*args, env=cli_env(OPENAI_API_KEY="t"), stdin=b"caf\xe9\n")
    assert code == 2
    assert "the prompt on stdin is not UTF-8 (byte 0xe9 at offset 3)" in err


def test_chat_help_shows_the_current_default_models(capsys: pytest.CaptureFixture[str]) -> None:
    """`chat --help` lists the model each provider uses without --model."""
    assert main(["chat", "--help"]) == 0
    help_text = capsys.readouterr().out
    for provider, model in [
        ("openai", "gpt-5-mini"),
        ("anthropic", "claude-sonnet-4-5"),
        ("gemini", "gemini-2.5-flash"),
    ]:
        assert f"  {provider:<10} {model}\n" in help_text
    assert "--system" in help_text and "--temperature" in help_text


async def test_chat_request_the_provider_cannot_take_exits_2_without_a_traceback() -> None:
    """A temperature above Anthropic's range is refused before sending, as bad usage."""
    args = ["chat", "--provider", "anthropic", "--base-url", "http://127.0.0.1:9", "hi"]
    code, _, err = await run_cli(*args, "--temperature", "5", env=cli_env(ANTHROPIC_API_KEY="t"))
    assert code == 2
    assert "lionpride chat: error: invalid request for anthropic_messages: temperature" in err
    assert "Traceback" not in err
