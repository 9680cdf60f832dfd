"""GeminiCodeEndpoint against a stand-in ``gemini`` that prints stream-json events."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tests._programs import recording
from tests.providers._fake_cli import FakeCLI, install_fake_cli

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.providers import GeminiCodeEndpoint, match_endpoint
from lionpride.services.providers.gemini_code import GeminiCodeError, GeminiCodeRequest

SESSION = "6c1d2e3f-0a1b-4c5d-8e9f-001122334455"
MODEL = "gemini-2.5-pro"
TS = "2025-11-25T03:27:51.000Z"


def ev(kind: str, **fields: Any) -> dict[str, Any]:
    """One stream-json event of the documented shape."""
    return {"type": kind, "timestamp": TS, **fields}


STATS = {
    "total_tokens": 1234,
    "input_tokens": 1100,
    "output_tokens": 134,
    "cached": 800,
    "input": 300,
    "duration_ms": 5120,
    "tool_calls": 1,
}
FULL_RUN: list[Any] = [
    ev("init", session_id=SESSION, model=MODEL),
    ev("message", role="user", content="What is x?"),
    "YOLO mode is enabled. All tool calls will be automatically approved.",
    ev("message", role="assistant", content="Let me ", delta=True),
    ev("message", role="assistant", content="check.", delta=True),
    ev("tool_use", tool_name="read_file", tool_id="call_1", parameters={"path": "a.py"}),
    ev("tool_result", tool_id="call_1", status="success", output="x = 42"),
    ev("error", severity="warning", message="Loop detection skipped"),
    ev("message", role="assistant", content="The answer is 42.", delta=True),
    ev("result", status="success", stats=STATS),
]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCLI:
    """A stand-in ``gemini`` playing a full run."""
    fake: FakeCLI = install_fake_cli("gemini", tmp_path, monkeypatch)
    fake.play(lines=FULL_RUN)
    return fake


async def test_invoke_normalizes_a_run(cli: FakeCLI, tmp_path: Path) -> None:
    """invoke returns the joined assistant text, usage, session id and the tool traffic."""
    model = iModel(backend=GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path)))
    calling = await model.invoke(prompt="What is x?")
    resp = calling.response
    assert resp is not None and resp.status == "success" and resp.finish_reason == "stop"
    assert resp.data == "Let me check.\nThe answer is 42."
    assert resp.usage is not None
    usage = resp.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (1100, 134, 1234)
    assert usage.cached_tokens == 800
    meta = resp.metadata
    assert meta["session_id"] == SESSION and meta["model"] == MODEL
    assert meta["duration_ms"] == 5120 and meta["usage"] == STATS
    assert meta["tool_uses"] == [{"id": "call_1", "name": "read_file", "input": {"path": "a.py"}}]
    assert meta["tool_results"] == [
        {"tool_use_id": "call_1", "content": "x = 42", "is_error": False}
    ]
    assert meta["warnings"] == ["Loop detection skipped"]
    (record,) = cli.records()
    assert record["argv"] == [
        "-p", "What is x?", "--output-format", "stream-json", "--model", MODEL,
        "--skip-trust",
    ]  # fmt: skip
    assert Path(record["cwd"]) == tmp_path.resolve()


NEW = "0b9e7f2c-3d1a-4e5f-8a6b-7c8d9e0f1a2b"


async def test_options_reach_the_cli(cli: FakeCLI, tmp_path: Path) -> None:
    """Model, approval mode, sandbox, debug, include dirs, resume and the rest become flags."""
    backend = GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path))
    payload = backend.create_payload(
        {
            "prompt": "fix it",
            "ws": "sub",
            "model": "gemini-2.5-flash",
            "approval_mode": "auto_edit",
            "sandbox": False,
            "debug": True,
            "include_directories": ["../shared", "/abs/docs"],
            "resume": SESSION,
            "allowed_mcp_server_names": ["fs", "everything"],
            "policy": tmp_path / "policy.toml",
            "extensions": ["none"],
        }
    )
    await backend.call(payload)
    yolo = backend.create_payload(
        {"prompt": "-h", "yolo": True, "sandbox": True, "skip_trust": False, "session_id": NEW}
    )
    await backend.call(yolo)
    first, second = cli.records()
    assert first["argv"] == [
        "-p", "fix it", "--output-format", "stream-json",
        "--model", "gemini-2.5-flash",
        "--approval-mode", "auto_edit",
        "--no-sandbox",
        "--debug",
        "--include-directories", "../shared",
        "--include-directories", "/abs/docs",
        "--resume", SESSION,
        "--skip-trust",
        "--allowed-mcp-server-names", "fs",
        "--allowed-mcp-server-names", "everything",
        "--policy", str(tmp_path / "policy.toml"),
        "--extensions", "none",
    ]  # fmt: skip
    assert Path(first["cwd"]) == (tmp_path / "sub").resolve()
    assert second["argv"][:2] == ["-p", " -h"]
    assert second["argv"][4:] == [
        "--model", MODEL, "--approval-mode", "yolo", "--sandbox", "--session-id", NEW
    ]  # fmt: skip
    # The CLI refuses --session-id with --resume: resuming that session sends --resume alone.
    again = backend.create_payload({"prompt": "go on", "session_id": NEW, "resume": NEW})
    args = GeminiCodeRequest.model_validate(again).cli_args()[0]
    assert "--session-id" not in args and args[args.index("--resume") + 1] == NEW


async def test_huge_prompt_goes_on_stdin(cli: FakeCLI, tmp_path: Path) -> None:
    """A prompt over the argument limit is written to stdin, with its system prompt first."""
    backend = GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path))
    big = "x" * 200_000
    await backend.call(backend.create_payload({"prompt": big, "system_prompt": "Be brief."}))
    (record,) = cli.records()
    assert record["argv"][:2] == ["-p", " "]
    assert record["stdin"] == "Be brief.\n\n" + big


def test_messages_become_the_prompt(tmp_path: Path) -> None:
    """Non-system messages are joined with newlines; the first system one is system_prompt."""
    backend = GeminiCodeEndpoint(repo=str(tmp_path))
    payload = backend.create_payload(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "user", "content": "Sum 1 and 2"},
            ]
        }
    )
    assert payload["prompt"] == "Hello\nHi\nSum 1 and 2"
    assert payload["system_prompt"] == "Be brief."
    assert payload["model"] == MODEL


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    """No prompt, unknown options, bad workspaces and yolo with another mode are refused."""
    backend = GeminiCodeEndpoint(repo=str(tmp_path))
    with pytest.raises(ValueError, match="prompt"):
        backend.create_payload({})
    with pytest.raises(ValueError, match="temperature"):
        backend.create_payload({"prompt": "x", "temperature": 0.2})
    for ws in ("../escape", "/etc"):
        with pytest.raises(ValueError, match="ws"):
            backend.create_payload({"prompt": "x", "ws": ws})
    with pytest.raises(ValueError, match="yolo"):
        backend.create_payload({"prompt": "x", "yolo": True, "approval_mode": "auto_edit"})
    with pytest.raises(ValueError, match="approval_mode"):
        backend.create_payload({"prompt": "x", "approval_mode": "sometimes"})
    assert backend.create_payload({"prompt": "x", "approval_mode": "full_auto"})[
        "approval_mode"
    ] == ("yolo")


async def test_error_result_is_a_response_with_error_status(cli: FakeCLI, tmp_path: Path) -> None:
    """A result with status "error" (the CLI then exits 1) is returned, not raised."""
    cli.play(
        lines=[
            ev("init", session_id=SESSION, model=MODEL),
            ev(
                "result",
                status="error",
                error={"type": "TerminalQuotaError", "message": "Quota exhausted"},
                stats={"total_tokens": 0, "input_tokens": 0, "output_tokens": 0},
            ),
        ],
        exit=1,
    )
    backend = GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path))
    resp = await backend.call(backend.create_payload({"prompt": "x"}))
    assert resp.status == "error" and resp.finish_reason == "error"
    assert resp.error == "Quota exhausted"
    assert resp.metadata["is_error"] is True and resp.metadata["session_id"] == SESSION
    assert resp.usage is None


async def test_nonzero_exit_without_result_raises(cli: FakeCLI, tmp_path: Path) -> None:
    """An exit without a result (an auth failure, say) is a GeminiCodeError with stderr."""
    cli.play(lines=[], stderr="Please set an Auth method", exit=41)
    backend = GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path))
    with pytest.raises(GeminiCodeError, match=r"(?s)status 41.*Auth method") as info:
        await backend.call(backend.create_payload({"prompt": "x"}))
    assert info.value.returncode == 41 and info.value.retryable is False
    assert isinstance(info.value, errors.ExecutionError)
    cli.play(lines=[ev("init", session_id=SESSION, model=MODEL)])
    with pytest.raises(GeminiCodeError, match="without a result"):
        await backend.call(backend.create_payload({"prompt": "x"}))


async def test_stream_yields_each_kind_of_chunk(cli: FakeCLI, tmp_path: Path) -> None:
    """invoke_stream yields system, text, tool and warning chunks, then the response."""
    model = iModel(backend=GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path)))
    chunks = [c async for c in model.invoke_stream(prompt="What is x?")]
    kinds = [c.metadata.get("event") for c in chunks[:-1]]
    assert kinds == ["system", "text", "text", "tool_use", "tool_result", "warning", "text"]
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].metadata["session_id"] == SESSION
    assert chunks[3].tool_call_delta == {
        "index": 0, "id": "call_1", "name": "read_file", "arguments": '{"path": "a.py"}'
    }  # fmt: skip
    assert chunks[4].metadata["content"] == "x = 42"
    assert "".join(c.content for c in chunks) == "Let me check.The answer is 42."
    final = chunks[-1]
    assert final.is_final and final.response is not None
    assert final.response.data == "Let me check.\nThe answer is 42."
    assert final.response.usage is not None and final.response.usage.output_tokens == 134


async def test_missing_cli_names_gemini_and_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without gemini on PATH (or at cli_path) the call fails with a ConfigurationError."""
    monkeypatch.setenv("PATH", str(tmp_path))
    model = iModel(provider="gemini_code", repo=str(tmp_path))
    with pytest.raises(
        errors.ConfigurationError, match=r"`gemini`.*npm install -g @google/gemini-cli"
    ):
        await model.invoke(prompt="x")
    backend = GeminiCodeEndpoint(cli_path=tmp_path / "nope" / "gemini", repo=str(tmp_path))
    with pytest.raises(errors.ConfigurationError, match="cli_path"):
        await backend.call(backend.create_payload({"prompt": "x"}))


async def test_match_endpoint_builds_the_cli_backend(
    cli: FakeCLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """provider="gemini_code" gives a GeminiCodeEndpoint that finds gemini on PATH at call time."""
    backend = match_endpoint("gemini_code", model="gemini-2.5-flash", repo=str(tmp_path))
    assert isinstance(backend, GeminiCodeEndpoint)
    assert backend.name == "gemini_code_cli" and backend.provider == "gemini_code"
    assert backend.tags == {"llm", "gemini_code", "cli"}
    assert backend.config.auth_type == "none"
    monkeypatch.setenv("PATH", f"{cli.path.parent}{os.pathsep}{os.environ['PATH']}")
    resp = await backend.call(backend.create_payload({"prompt": "hi"}))
    assert resp.data.endswith("The answer is 42.")
    assert cli.records()[0]["argv"][4:6] == ["--model", "gemini-2.5-flash"]


async def test_imodel_keeps_and_resumes_the_session(cli: FakeCLI, tmp_path: Path) -> None:
    """iModel keeps the run's session id and the next call resumes it; resume= wins."""
    model = iModel(backend=GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path)))
    await model.invoke(prompt="Start.")
    assert model.provider_metadata["session_id"] == SESSION
    await model.invoke(prompt="Go on.")
    await model.invoke(prompt="Elsewhere.", resume="other")
    argvs = [record["argv"] for record in cli.records()]
    assert "--resume" not in argvs[0]
    assert argvs[1][argvs[1].index("--resume") + 1] == SESSION
    assert argvs[2][argvs[2].index("--resume") + 1] == "other"


# -- the real CLI's recorded output, replayed by the stand-in --------------------------------------


@pytest.mark.parametrize(
    ("name", "exit_status", "kind", "status"),
    [
        ("gemini-error-400-badkey", 144, errors.BadRequestError, 400),
        ("gemini-error-403", 147, errors.PermissionDeniedError, 403),
        ("gemini-error-429", 173, errors.RateLimitError, 429),
        ("gemini-error-500", 244, errors.ServerError, 500),
    ],
)
async def test_recorded_api_errors_raise_their_typed_error(
    cli: FakeCLI,
    tmp_path: Path,
    name: str,
    exit_status: int,
    kind: type[errors.APIStatusError],
    status: int,
) -> None:
    """Each recorded API failure raises the typed error of its status with the CLI's message."""
    cli.play(lines=recording(f"{name}.stream-json.jsonl"), exit=exit_status)
    backend = GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path))
    with pytest.raises(kind, match=r"^\[API Error") as caught:
        await backend.call(backend.create_payload({"prompt": "hello"}))
    assert type(caught.value) is kind and caught.value.status_code == status


async def test_recorded_429_without_a_code_is_typed_by_the_exit_status(
    cli: FakeCLI, tmp_path: Path
) -> None:
    """The 429 message names no status: exit 173 (429 mod 256) types it, its wait is kept."""
    lines = recording("gemini-error-429.stream-json.jsonl")
    assert '\\"code\\":429' not in lines[-1]
    cli.play(lines=lines, exit=173)
    backend = GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path))
    with pytest.raises(errors.RateLimitError) as caught:
        await backend.call(backend.create_payload({"prompt": "hello"}))
    assert caught.value.retry_after == 1.0


async def test_recorded_unknown_model_is_not_found(cli: FakeCLI, tmp_path: Path) -> None:
    """The unknown-model failure exits 1 and quotes no status: its words make it a 404."""
    cli.play(lines=recording("gemini-error-404-badmodel.stream-json.jsonl"), exit=1)
    backend = GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path))
    with pytest.raises(errors.NotFoundError, match="is not found") as caught:
        await backend.call(backend.create_payload({"prompt": "hello"}))
    assert caught.value.status_code == 404 and caught.value.provider == "gemini_code"


async def test_recorded_empty_response_keeps_its_message(cli: FakeCLI, tmp_path: Path) -> None:
    """The recorded empty model response fails with the message of the error event before it."""
    cli.play(lines=recording("gemini-error-empty-stream.stream-json.jsonl"))
    backend = GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path))
    resp = await backend.call(backend.create_payload({"prompt": "hello"}))
    assert resp.status == "error"
    assert resp.error is not None and resp.error.startswith("The model returned an empty response")


async def test_recorded_failed_tool_keeps_the_error_message(cli: FakeCLI, tmp_path: Path) -> None:
    """A failed tool_result carries error.message (which file), not the short output."""
    cli.play(lines=recording("gemini-tool-read-missing.stream-json.jsonl"))
    backend = GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path))
    resp = await backend.call(backend.create_payload({"prompt": "do it"}))
    (result,) = resp.metadata["tool_results"]
    assert result["content"] == "File not found: /workspace/grepo/nope.py"
    assert result["is_error"] and result["error_type"] == "file_not_found"


async def test_model_none_leaves_out_the_model_flag(cli: FakeCLI, tmp_path: Path) -> None:
    """model=None (also as the endpoint's default) sends no --model: the CLI chooses."""
    backend = GeminiCodeEndpoint(cli_path=cli.path, repo=str(tmp_path), model=None)
    await backend.call(backend.create_payload({"prompt": "x"}))
    await backend.call(backend.create_payload({"prompt": "x", "model": None}))
    assert all("--model" not in record["argv"] for record in cli.records())
