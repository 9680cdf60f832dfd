"""ClaudeCodeEndpoint against a stand-in ``claude`` that prints recorded-format events."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from tests._processes import gone
from tests._programs import recording
from tests.providers._fake_cli import FakeCLI, install_fake_cli

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.providers import ClaudeCodeEndpoint, claude_code, match_endpoint
from lionpride.services.providers.claude_code import ClaudeCodeError, ClaudeCodeRequest

SESSION = "5b8c1e7a-0d1f-4a52-9a57-3c2d1f0e9b11"
MODEL = "claude-sonnet-4-5-20250929"


def init_event() -> dict[str, Any]:
    """The ``system``/``init`` event the CLI prints first."""
    return {
        "type": "system",
        "subtype": "init",
        "cwd": "/repo",
        "session_id": SESSION,
        "tools": ["Read", "Bash", "Edit"],
        "mcp_servers": [],
        "model": MODEL,
        "permissionMode": "default",
        "apiKeySource": "none",
    }


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    """An ``assistant`` event wrapping a Messages API message."""
    return {
        "type": "assistant",
        "message": {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": list(blocks),
            "stop_reason": None,
            "usage": {"input_tokens": 4, "output_tokens": 12},
        },
        "parent_tool_use_id": None,
        "session_id": SESSION,
    }


def tool_result(content: str, is_error: bool = False) -> dict[str, Any]:
    """A ``user`` event carrying a tool result."""
    return {
        "type": "user",
        "message": {
            "role": "user",
            "content": [
                {
                    "tool_use_id": "toolu_01",
                    "type": "tool_result",
                    "content": content,
                    "is_error": is_error,
                }
            ],
        },
        "parent_tool_use_id": None,
        "session_id": SESSION,
    }


def result_event(text: str = "The answer is 42.", **over: Any) -> dict[str, Any]:
    """The final ``result`` event."""
    event = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 2100,
        "duration_api_ms": 1800,
        "num_turns": 2,
        "result": text,
        "session_id": SESSION,
        "total_cost_usd": 0.0123,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 200,
            "output_tokens": 50,
            "service_tier": "standard",
        },
        "permission_denials": [],
    }
    event.update(over)
    return event


FULL_RUN = [
    init_event(),
    assistant({"type": "thinking", "thinking": "Read the file first.", "signature": "sig"}),
    assistant(
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "/r/a.py"}},
    ),
    tool_result("x = 42"),
    assistant({"type": "text", "text": "The answer is 42."}),
    result_event(),
]


class ClaudeCLI(FakeCLI):
    """The stand-in ``claude``."""

    def endpoint(self, **kwargs: Any) -> ClaudeCodeEndpoint:
        """An endpoint running the stand-in."""
        return ClaudeCodeEndpoint(cli_path=str(self.path), **kwargs)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ClaudeCLI:
    """A stand-in ``claude`` playing a full run."""
    fake: ClaudeCLI = install_fake_cli("claude", tmp_path, monkeypatch, ClaudeCLI)
    fake.play({"lines": FULL_RUN})
    return fake


# -- invoke ------------------------------------------------------------------------------------


async def test_invoke_normalizes_a_run(cli: ClaudeCLI, tmp_path: Path) -> None:
    """invoke returns the result text, usage, cost and the tool traffic of the run."""
    model = iModel(backend=cli.endpoint(repo=str(tmp_path)))
    calling = await model.invoke(prompt="What is x?")
    resp = calling.response
    assert resp is not None and resp.status == "success"
    assert resp.data == "The answer is 42."
    assert resp.finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (310, 50)
    assert resp.usage.cached_tokens == 200
    meta = resp.metadata
    assert meta["session_id"] == SESSION and meta["model"] == MODEL
    assert meta["total_cost_usd"] == pytest.approx(0.0123)
    assert (meta["num_turns"], meta["duration_ms"], meta["duration_api_ms"]) == (2, 2100, 1800)
    assert meta["tool_uses"] == [
        {"id": "toolu_01", "name": "Read", "input": {"file_path": "/r/a.py"}}
    ]
    assert meta["tool_results"] == [
        {"tool_use_id": "toolu_01", "content": "x = 42", "is_error": False}
    ]
    assert meta["thinking_log"] == ["Read the file first."]
    assert resp.tool_calls == []  # the agent ran its tools itself
    (record,) = cli.records()
    assert record["argv"][:7] == [
        "-p",
        "What is x?",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--model",
    ]
    assert Path(record["cwd"]) == tmp_path.resolve()


async def test_match_endpoint_builds_the_cli_backend(cli: ClaudeCLI) -> None:
    """provider="claude_code" gives a ClaudeCodeEndpoint with CLI tags and no retries."""
    backend = match_endpoint("claude_code", cli_path=str(cli.path), model="opus")
    assert isinstance(backend, ClaudeCodeEndpoint)
    assert backend.name == "claude_code_cli" and backend.provider == "claude_code"
    assert backend.tags == {"llm", "claude_code", "cli"}
    assert backend.config.auth_type == "none"
    assert backend.create_payload({"prompt": "hi"})["model"] == "opus"


async def test_every_option_reaches_the_cli_unquoted(cli: ClaudeCLI, tmp_path: Path) -> None:
    """Each request option becomes its CLI flag, each value one argument without quotes."""
    backend = cli.endpoint(env={"IS_SANDBOX": "1"})
    payload = backend.create_payload(
        {
            "prompt": "fix it",
            "repo": str(tmp_path),
            "ws": "sub/dir",
            "model": "opus",
            "system_prompt": "You are terse.",
            "append_system_prompt": "Answer in English.",
            "max_turns": 3,
            "allowed_tools": ["Read", "Bash(git:*)"],
            "mcp_tools": ["mcp__echo__echo"],
            "disallowed_tools": "WebSearch",
            "resume": "sess-0",
            "continue_conversation": True,
            "permission_mode": "dangerously-skip-permissions",
            "permission_prompt_tool_name": "mcp__auth__ask",
            "add_dir": ["../other", "/abs"],
            "mcp_config": str(tmp_path / "mcp.json"),
            "mcp_servers": {"echo": {"command": "echo-server"}},
            "max_thinking_tokens": 2048,
            "thinking": "enabled",
            "effort": "high",
        }
    )
    await backend.call(payload)
    (record,) = cli.records()
    assert record["argv"] == [
        "-p", "fix it", "--output-format", "stream-json", "--verbose",
        "--include-partial-messages",
        "--model", "opus",
        "--thinking", "enabled",
        "--effort", "high",
        "--system-prompt", "You are terse.",
        "--append-system-prompt", "Answer in English.",
        "--max-turns", "3",
        "--allowedTools", "Read", "Bash(git:*)", "mcp__echo__echo",
        "--disallowedTools", "WebSearch",
        "--resume", "sess-0",
        "--dangerously-skip-permissions",
        "--permission-prompt-tool", "mcp__auth__ask",
        "--add-dir", "../other", "/abs",
        "--mcp-config", str(tmp_path / "mcp.json"), record["argv"][-1],
    ]  # fmt: skip
    # mcp_servers come in a file of their own (their env may hold keys), gone after the run.
    servers = json.loads(record["json_files"][record["argv"][-1]])
    assert servers == {"mcpServers": {"echo": {"command": "echo-server"}}}
    assert not Path(record["argv"][-1]).exists()
    assert Path(record["cwd"]) == (tmp_path / "sub" / "dir").resolve()
    assert record["thinking"] == "2048"


async def test_continue_and_permission_mode_flags(cli: ClaudeCLI, tmp_path: Path) -> None:
    """continue_conversation without resume sends --continue; other modes --permission-mode."""
    backend = cli.endpoint(repo=str(tmp_path), model="opus")
    payload = backend.create_payload(
        {"prompt": "go on", "continue_conversation": True, "permission_mode": "acceptEdits"}
    )
    await backend.call(payload)
    argv = cli.records()[0]["argv"]
    assert argv[6:] == ["--model", "opus", "--continue", "--permission-mode", "acceptEdits"]


async def test_prompt_edge_cases(cli: ClaudeCLI, tmp_path: Path) -> None:
    """A prompt that looks like an option is not parsed as one; a huge one goes on stdin."""
    backend = cli.endpoint(repo=str(tmp_path))
    await backend.call(backend.create_payload({"prompt": "-h"}))
    big = "x" * 200_000
    await backend.call(backend.create_payload({"prompt": big}))
    first, second = cli.records()
    assert first["argv"][:2] == ["-p", " -h"]
    assert second["argv"][:2] == ["-p", "--output-format"] and second["stdin"] == big


# -- messages → prompt ---------------------------------------------------------------------------


def test_messages_are_joined_into_one_prompt(tmp_path: Path) -> None:
    """Without resume, non-system messages are joined and the system one becomes system_prompt."""
    backend = ClaudeCodeEndpoint(repo=str(tmp_path))
    payload = backend.create_payload(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "user", "content": {"task": "sum", "args": [1, 2]}},
            ],
        }
    )
    assert payload["prompt"] == 'Hello\nHi\n{"task": "sum", "args": [1, 2]}'
    assert payload["system_prompt"] == "Be brief."
    assert payload["continue_conversation"] is False


def test_resume_sends_only_the_last_message(tmp_path: Path) -> None:
    """With resume the session holds the history, so only the last message is the prompt."""
    backend = ClaudeCodeEndpoint(repo=str(tmp_path))
    payload = backend.create_payload(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "first"},
                {"role": "user", "content": "second"},
            ],
            "resume": SESSION,
        }
    )
    assert (payload["prompt"], payload["resume"]) == ("second", SESSION)
    assert payload["system_prompt"] == "Be brief."


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    """No prompt, unknown options and workspaces outside the repository raise ValueError."""
    backend = ClaudeCodeEndpoint(repo=str(tmp_path))
    with pytest.raises(ValueError, match="prompt"):
        backend.create_payload({})
    with pytest.raises(ValueError, match="temperature"):
        backend.create_payload({"prompt": "x", "temperature": 0.2})
    for ws in ("../escape", "/etc", "a/../../b"):
        with pytest.raises(ValueError, match="ws"):
            backend.create_payload({"prompt": "x", "ws": ws})
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(ValueError, match="outside the repository"):
        ClaudeCodeRequest(prompt="x", repo=str(tmp_path), ws="link")


# -- streaming -------------------------------------------------------------------------------


async def test_stream_yields_each_kind_of_chunk(cli: ClaudeCLI, tmp_path: Path) -> None:
    """invoke_stream yields system, thinking, text and tool chunks, then the response."""
    model = iModel(backend=cli.endpoint(repo=str(tmp_path)))
    chunks = [c async for c in model.invoke_stream(prompt="What is x?")]
    kinds = [c.metadata.get("event") for c in chunks[:-1]]
    assert kinds == ["system", "thinking", "text", "tool_use", "tool_result", "text"]
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].metadata["session_id"] == SESSION
    assert chunks[1].reasoning == "Read the file first."
    assert chunks[3].tool_call_delta == {
        "index": 0, "id": "toolu_01", "name": "Read", "arguments": '{"file_path": "/r/a.py"}'
    }  # fmt: skip
    assert chunks[4].metadata["content"] == "x = 42"
    assert "".join(c.content for c in chunks) == "Let me check.The answer is 42."
    final = chunks[-1]
    assert final.is_final and final.response is not None
    assert final.response.data == "The answer is 42."
    assert final.response.metadata["session_id"] == SESSION


async def test_leaving_a_stream_early_stops_the_process(cli: ClaudeCLI, tmp_path: Path) -> None:
    """Breaking out of the stream terminates the CLI instead of leaving it running."""
    cli.play({"lines": [init_event()], "hang": True})
    stream = cli.endpoint(repo=str(tmp_path)).stream({"prompt": "x", "repo": str(tmp_path)})
    first = await anext(stream)
    assert first.metadata["event"] == "system"
    await stream.aclose()
    assert gone(cli.records()[0]["pid"])


async def test_idle_timeout_ends_a_silent_stream(cli: ClaudeCLI, tmp_path: Path) -> None:
    """A CLI that stops printing is stopped with TimeoutError after idle_timeout."""
    cli.play({"lines": [init_event()], "hang": True})
    backend = cli.endpoint(repo=str(tmp_path))
    with pytest.raises(errors.TimeoutError, match="silent"):
        async for _ in backend.stream({"prompt": "x", "repo": str(tmp_path)}, idle_timeout=0.3):
            pass
    assert gone(cli.records()[0]["pid"])


# -- errors and process hygiene ----------------------------------------------------------------


async def test_error_result_is_a_response_with_error_status(cli: ClaudeCLI, tmp_path: Path) -> None:
    """An error result (the CLI then exits 1) is returned with status="error", not raised."""
    cli.play(
        {
            "lines": [
                init_event(),
                result_event("Credit balance is too low", subtype="success", is_error=True),
            ],
            "exit": 1,
        }
    )
    resp = await cli.endpoint().call(ClaudeCodeRequest(prompt="x", repo=str(tmp_path)).model_dump())
    assert resp.status == "error" and resp.finish_reason == "error"
    assert resp.error == "Credit balance is too low"
    assert resp.metadata["is_error"] is True


async def test_missing_cli_names_claude_and_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without claude on PATH (or at cli_path) the call fails with a ConfigurationError."""
    monkeypatch.setenv("PATH", str(tmp_path))
    model = iModel(provider="claude_code", repo=str(tmp_path))
    with pytest.raises(errors.ConfigurationError, match=r"`claude`.*npm install"):
        await model.invoke(prompt="x")
    backend = ClaudeCodeEndpoint(cli_path=str(tmp_path / "nope" / "claude"), repo=str(tmp_path))
    with pytest.raises(errors.ConfigurationError, match="cli_path"):
        await backend.call(backend.create_payload({"prompt": "x"}))


async def test_cli_found_on_path_at_call_time(
    cli: ClaudeCLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executable is looked up when the call is made, not when the model is built."""
    monkeypatch.setenv("PATH", str(tmp_path))
    model = iModel(provider="claude_code", repo=str(tmp_path))
    monkeypatch.setenv("PATH", f"{cli.path.parent}{os.pathsep}{os.environ['PATH']}")
    calling = await model.invoke(prompt="x")
    assert calling.response is not None and calling.response.data == "The answer is 42."


async def test_nonzero_exit_without_result_raises(cli: ClaudeCLI, tmp_path: Path) -> None:
    """A crash is a ClaudeCodeError with the exit status and the stderr tail."""
    noise = "x" * 300_000  # more than a pipe holds: stderr must be drained as it comes
    cli.play({"lines": [init_event()], "stderr": noise + "\nError: Invalid API key", "exit": 2})
    backend = cli.endpoint(repo=str(tmp_path))
    with pytest.raises(ClaudeCodeError, match=r"(?s)status 2.*Invalid API key") as info:
        await backend.call(backend.create_payload({"prompt": "x"}))
    assert info.value.returncode == 2 and info.value.retryable is False
    assert isinstance(info.value, errors.ExecutionError)


async def test_malformed_line_raises_and_stops_the_process(cli: ClaudeCLI, tmp_path: Path) -> None:
    """A stdout line that is not a JSON object is a ClaudeCodeError; the CLI is stopped."""
    cli.play({"lines": [init_event(), "not json {", result_event()], "hang": True})
    backend = cli.endpoint(repo=str(tmp_path))
    with pytest.raises(ClaudeCodeError, match="not a JSON event"):
        await backend.call(backend.create_payload({"prompt": "x"}))
    assert gone(cli.records()[0]["pid"])


async def test_run_without_result_event_raises(cli: ClaudeCLI, tmp_path: Path) -> None:
    """A run that exits 0 without a result event is a ClaudeCodeError, not an empty answer."""
    cli.play({"lines": [init_event(), assistant({"type": "text", "text": "partial"})]})
    backend = cli.endpoint(repo=str(tmp_path))
    with pytest.raises(ClaudeCodeError, match="without a result"):
        await backend.call(backend.create_payload({"prompt": "x"}))


async def test_cancelling_a_call_terminates_the_process(cli: ClaudeCLI, tmp_path: Path) -> None:
    """Cancelling the task that runs a call kills the CLI process before the task ends."""
    cli.play({"lines": [init_event()], "hang": True})
    backend = cli.endpoint(repo=str(tmp_path))
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.stream(backend.create_payload({"prompt": "x"})):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gone(cli.records()[0]["pid"])


async def test_call_timeout_stops_the_process(cli: ClaudeCLI, tmp_path: Path) -> None:
    """A call past its timeout raises TimeoutError and leaves no process behind."""
    cli.play({"lines": [init_event()], "hang": True})
    backend = cli.endpoint(repo=str(tmp_path))
    with pytest.raises(errors.TimeoutError, match="did not finish"):
        await backend.call(backend.create_payload({"prompt": "x"}), timeout=0.3)
    assert gone(cli.records()[0]["pid"])


# -- sessions --------------------------------------------------------------------------------


async def test_resume_reaches_the_cli(cli: ClaudeCLI, tmp_path: Path) -> None:
    """A payload with resume runs ``--resume <id>``, continuing the earlier session."""
    backend = cli.endpoint(repo=str(tmp_path))
    first = await backend.call(backend.create_payload({"prompt": "one"}))
    session = first.metadata["session_id"]
    await backend.call(backend.create_payload({"prompt": "two", "resume": session}))
    first_argv, second_argv = (r["argv"] for r in cli.records())
    assert "--resume" not in first_argv
    assert second_argv[second_argv.index("--resume") + 1] == SESSION


async def test_auto_finish_asks_for_the_final_answer(cli: ClaudeCLI, tmp_path: Path) -> None:
    """Out of turns with auto_finish, a one-turn resumed run gets the answer; costs add up."""
    cli.play(
        {"lines": [init_event(), result_event("", subtype="error_max_turns", num_turns=3)]},
        {"lines": [init_event(), result_event("Final: 42", num_turns=1)]},
    )
    backend = cli.endpoint(repo=str(tmp_path))
    resp = await backend.call(
        backend.create_payload(
            {"prompt": "x", "max_turns": 3, "auto_finish": True, "cli_include_summary": True}
        )
    )
    assert resp.status == "success" and resp.data == "Final: 42"
    assert resp.metadata["num_turns"] == 4
    assert resp.metadata["total_cost_usd"] == pytest.approx(0.0246)
    assert resp.usage is not None and resp.usage.output_tokens == 100
    assert resp.metadata["summary"]["result_preview"] == "Final: 42"
    follow = cli.records()[1]["argv"]
    assert follow[follow.index("--resume") + 1] == SESSION
    assert follow[follow.index("--max-turns") + 1] == "1"


async def test_imodel_keeps_and_resumes_the_session(cli: ClaudeCLI, tmp_path: Path) -> None:
    """iModel stores the run's session id and resumes it on the next call; resume= wins."""
    model = iModel(backend=cli.endpoint(repo=str(tmp_path)))
    first = await model.invoke(prompt="Start.")
    assert first.response is not None and model.provider_metadata["session_id"] == SESSION
    await model.invoke(prompt="Go on.")
    await model.invoke(prompt="Elsewhere.", resume="other-session")
    argvs = [record["argv"] for record in cli.records()]
    assert "--resume" not in argvs[0]
    assert argvs[1][argvs[1].index("--resume") + 1] == SESSION
    assert argvs[2][argvs[2].index("--resume") + 1] == "other-session"


async def test_calling_cost_is_claude_codes_own_total(cli: ClaudeCLI, tmp_path: Path) -> None:
    """``calling.cost`` is the run's ``total_cost_usd`` as Claude Code reports it (the model
    alias has no price in the table, and the CLI knows its own bill best)."""
    async with iModel(backend=cli.endpoint(repo=str(tmp_path))) as model:
        calling = await model.invoke(prompt="Start.", model="sonnet")
    assert calling.cost == pytest.approx(0.0123)
    assert model.metrics()["cost_usd"] == pytest.approx(0.0123)


async def test_imodel_streams_and_keeps_the_session(cli: ClaudeCLI, tmp_path: Path) -> None:
    """invoke_stream ends with the assembled response and also keeps the session id."""
    model = iModel(backend=cli.endpoint(repo=str(tmp_path)))
    chunks = [chunk async for chunk in model.invoke_stream(prompt="Start.")]
    assert chunks[-1].is_final and chunks[-1].response is not None
    assert chunks[-1].response.data == "The answer is 42."
    assert model.provider_metadata["session_id"] == SESSION


async def test_cli_lingering_after_its_result_is_stopped(
    cli: ClaudeCLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CLI that prints its result and then hangs is stopped after a short grace; the
    result is returned and the process is gone."""
    monkeypatch.setattr(claude_code, "_EXIT_GRACE", 0.2)
    cli.play({"lines": FULL_RUN, "hang": True})
    backend = cli.endpoint(repo=str(tmp_path))
    loop = asyncio.get_running_loop()
    start = loop.time()
    response = await backend.call(backend.create_payload({"prompt": "x"}), timeout=30)
    assert response.data == "The answer is 42."
    assert loop.time() - start < 5
    assert gone(cli.records()[-1]["pid"])


# -- the real CLI's recorded output, replayed by the stand-in --------------------------------------


async def test_recorded_401_raises_after_its_two_retries(cli: ClaudeCLI, tmp_path: Path) -> None:
    """The recorded 401 run raises AuthenticationError; its two api_retry events are reported."""
    cli.play({"lines": recording("claude-error-401.stream-json.jsonl"), "exit": 1})
    backend = cli.endpoint(repo=str(tmp_path))
    heard: list[int] = []
    with pytest.raises(errors.AuthenticationError, match="Invalid API key") as caught:
        await backend.call(
            backend.create_payload({"prompt": "hello"}),
            on_retry=lambda attempt, error, delay: heard.append(attempt),
        )
    assert caught.value.status_code == 401 and heard == [1, 2]


async def test_recorded_partial_messages_stream_eight_text_chunks(
    cli: ClaudeCLI, tmp_path: Path
) -> None:
    """The recorded --include-partial-messages run streams its 8 deltas, not the whole block."""
    cli.play({"lines": recording("claude-partial-messages.stream-json.jsonl")})
    backend = cli.endpoint(repo=str(tmp_path))
    chunks = [c async for c in backend.stream(backend.create_payload({"prompt": "hi"}))]
    texts = [c.content for c in chunks if c.content]
    final = chunks[-1].response
    assert final is not None and len(texts) == 8 and "".join(texts) == final.data


async def test_recorded_tool_use_keeps_the_tool_use_result(cli: ClaudeCLI, tmp_path: Path) -> None:
    """The recorded Read run keeps the CLI's structured tool_use_result beside the tool result."""
    cli.play({"lines": recording("claude-tool-read.stream-json.jsonl")})
    backend = cli.endpoint(repo=str(tmp_path))
    response = await backend.call(backend.create_payload({"prompt": "what is in a.py"}))
    (result,) = response.metadata["tool_results"]
    assert result["tool_use_result"]["file"]["content"] == "x = 42\n"
    assert [u["name"] for u in response.metadata["tool_uses"]] == ["Read"]


async def test_recorded_max_turns_reports_the_clis_message(cli: ClaudeCLI, tmp_path: Path) -> None:
    """The recorded error_max_turns run's error is the CLI's message, not the assistant's text."""
    cli.play({"lines": recording("claude-max-turns.stream-json.jsonl"), "exit": 1})
    backend = cli.endpoint(repo=str(tmp_path))
    response = await backend.call(backend.create_payload({"prompt": "read"}))
    assert response.error == "Reached maximum number of turns (1)"


async def test_env_reaches_the_cli_and_is_never_serialized(cli: ClaudeCLI, tmp_path: Path) -> None:
    """env= is set for the CLI process, and neither to_dict nor repr shows its values."""
    model = iModel(
        provider="claude_code",
        cli_path=str(cli.path),
        repo=str(tmp_path),
        env={"ANTHROPIC_API_KEY": "sk-ant-secret-value", "MAX_THINKING_TOKENS": "77"},
    )
    await model.invoke(prompt="hi")
    assert cli.records()[0]["thinking"] == "77"
    dumped = json.dumps(model.to_dict(), default=str) + repr(model) + repr(model.backend)
    assert "sk-ant-secret-value" not in dumped
    again = iModel.from_dict(model.to_dict())
    assert isinstance(again.backend, ClaudeCodeEndpoint) and again.backend.child_env() is None
