"""ClaudeCodeEndpoint driving the real ``claude`` CLI (npm/, pinned) against FakeProvider."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from tests._programs import (
    claude_env,
    closed_port_url,
    command_lines_of_child,
    program,
    start_until_request,
)

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.services import iModel
from lionpride.services.providers import ClaudeCodeEndpoint
from lionpride.services.types.hook import HookPhase, HookRegistry
from lionpride.services.utilities.rate_limiter import RateLimitConfig, TokenBucket
from lionpride.services.utilities.resilience import CircuitBreaker
from lionpride.testing import FakeProvider, Reply

MESSAGES = "/v1/messages"


@pytest.fixture
def claude() -> Path:
    """The pinned ``claude`` executable."""
    return program("claude")


def endpoint(
    claude: Path, tmp_path: Path, fp: FakeProvider, *, max_retries: int = 0, **kwargs: Any
) -> ClaudeCodeEndpoint:
    """An endpoint running the real CLI in ``tmp_path/repo`` with its home in ``tmp_path``."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    return ClaudeCodeEndpoint(
        cli_path=claude,
        env=claude_env(tmp_path / "home", fp.url, max_retries=max_retries),
        repo=str(repo),
        **kwargs,
    )


def posts(fp: FakeProvider) -> list[Any]:
    """The Messages API requests the CLI sent (it also sends a ``HEAD /`` first)."""
    return [r for r in fp.requests if r.method == "POST" and r.path.startswith(MESSAGES)]


def script_a_read(tmp_path: Path, fp: FakeProvider) -> str:
    """Write ``repo/a.py`` and script the provider's next answer to Read it; its path."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "a.py").write_text("x = 42\n")
    path = str((tmp_path / "repo" / "a.py").resolve())
    call = {"name": "Read", "arguments": {"file_path": path}}
    fp.script(Reply(text="Let me read it.", tool_calls=[call]), path=MESSAGES)
    return path


async def test_call_returns_the_providers_text(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """A call runs the CLI once, which asks FakeProvider, and returns its text and usage."""
    fake_provider.reply_text = "Paris is the capital."
    backend = endpoint(claude, tmp_path, fake_provider)
    response = await backend.call(backend.create_payload({"prompt": "capital?"}))
    assert response.status == "success"
    assert response.data == "Paris is the capital."
    assert response.usage is not None and response.usage.output_tokens == 4
    (post,) = posts(fake_provider)
    assert post.body["model"] == response.metadata["model"] == "claude-sonnet-5"


async def test_metadata_keeps_what_the_cli_reports(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """The init event's tools, MCP servers, mode and version and the result's extras are kept."""
    backend = endpoint(claude, tmp_path, fake_provider)
    meta = (await backend.call(backend.create_payload({"prompt": "hi"}))).metadata
    assert "Read" in meta["tools"] and meta["mcp_servers"] == []
    assert meta["permissionMode"] == "default"
    assert meta["claude_code_version"] == "2.1.197"
    assert meta["permission_denials"] == [] and meta["terminal_reason"] == "completed"
    assert meta["stop_reason"] == "end_turn"
    assert set(meta["modelUsage"]) == {"claude-sonnet-5"}


async def test_model_none_lets_the_cli_choose(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """model=None sends no --model, so the request carries the CLI's own default model."""
    backend = endpoint(claude, tmp_path, fake_provider, model=None)
    payload = backend.create_payload({"prompt": "hi"})
    assert "--model" not in ClaudeCodeEndpoint.request_model.model_validate(payload).cli_args()[0]
    response = await backend.call(payload)
    (post,) = posts(fake_provider)
    assert post.body["model"] == "claude-opus-4-8"
    assert response.metadata["model"] == "claude-opus-4-8[1m]"


async def test_resumed_call_carries_the_earlier_turn(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """A call with resume= continues the session: same id, the first turn sent again."""
    backend = endpoint(claude, tmp_path, fake_provider)
    first = await backend.call(backend.create_payload({"prompt": "first turn"}))
    session = first.metadata["session_id"]
    second = await backend.call(
        backend.create_payload({"prompt": "second turn", "resume": session})
    )
    assert second.status == "success" and second.metadata["session_id"] == session
    sent = posts(fake_provider)[-1].body["messages"]
    # The CLI's reminder, the first turn, its answer, the second turn.
    assert len(sent) == 4 and json.dumps(sent[:3]).count("first turn") == 1
    assert json.dumps(sent[-1]).count("second turn") == 1


async def test_stream_yields_the_text_token_by_token(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """With partial messages each SSE text delta is its own chunk, and they add up to the text."""
    fake_provider.stream_chunks = 6
    backend = endpoint(claude, tmp_path, fake_provider)
    chunks = [c async for c in backend.stream(backend.create_payload({"prompt": "hi"}))]
    texts = [c.content for c in chunks if c.metadata.get("event") == "text"]
    final = chunks[-1].response
    assert final is not None and final.status == "success"
    assert len(texts) == 6 and "".join(texts) == final.data


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, errors.AuthenticationError),
        (429, errors.RateLimitError),
        (500, errors.ServerError),
    ],
)
async def test_api_failure_raises_the_typed_error(
    claude: Path,
    tmp_path: Path,
    fake_provider: FakeProvider,
    status: int,
    kind: type[errors.APIStatusError],
) -> None:
    """An API status the CLI gives up on is raised as its typed error with the CLI's message."""
    fake_provider.script(*[Reply(status=status) for _ in range(3)], path=MESSAGES)
    backend = endpoint(claude, tmp_path, fake_provider)
    with pytest.raises(kind) as caught:
        await backend.call(backend.create_payload({"prompt": "hello"}))
    assert caught.value.status_code == status and caught.value.provider == "claude_code"
    assert "API Error" in str(caught.value) or "Invalid API key" in str(caught.value)


async def test_unreachable_api_raises_connection_error(claude: Path, tmp_path: Path) -> None:
    """An API the CLI cannot reach (a closed port) raises ConnectionError with its message."""
    closed = closed_port_url()
    (tmp_path / "repo").mkdir()
    backend = ClaudeCodeEndpoint(
        cli_path=claude, env=claude_env(tmp_path / "home", closed), repo=str(tmp_path / "repo")
    )
    with pytest.raises(errors.ConnectionError, match="Unable to connect to API"):
        await backend.call(backend.create_payload({"prompt": "hello"}))


async def test_api_failure_in_a_stream_is_raised_and_never_text(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """A stream whose run failed raises the typed error; the CLI's retries arrive as api_retry."""
    fake_provider.script(*[Reply(status=500) for _ in range(3)], path=MESSAGES)
    backend = endpoint(claude, tmp_path, fake_provider, max_retries=1)
    seen: list[Any] = []
    with pytest.raises(errors.ServerError, match="API Error"):
        async for chunk in backend.stream(backend.create_payload({"prompt": "hello"})):
            seen.append(chunk)
    assert [c.content for c in seen if c.content] == []
    retries = [c.metadata for c in seen if c.metadata.get("event") == "api_retry"]
    assert len(retries) == 1 and retries[0]["error_status"] == 500
    assert len(posts(fake_provider)) == 2


async def test_imodel_raises_the_typed_error_and_reports_the_cli_retries(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """Through iModel: invoke raises with the failed calling, and each CLI retry is observed."""
    fake_provider.script(*[Reply(status=429) for _ in range(3)], path=MESSAGES)
    backend = endpoint(claude, tmp_path, fake_provider, max_retries=1)
    heard: list[tuple[int, BaseException, float]] = []
    with pytest.raises(errors.RateLimitError) as caught:
        await backend.call(
            backend.create_payload({"prompt": "hello"}),
            on_retry=lambda attempt, error, delay: heard.append((attempt, error, delay)),
        )
    assert [(a, type(e), e.status_code) for a, e, _ in heard] == [  # type: ignore[attr-defined]
        (1, errors.RateLimitError, 429)
    ]
    model = iModel(backend=endpoint(claude, tmp_path, fake_provider))
    fake_provider.reset()
    fake_provider.script(Reply(status=401), path=MESSAGES)
    with pytest.raises(errors.AuthenticationError) as raised:
        await model.invoke(prompt="hello")
    assert raised.value.calling is not None  # type: ignore[attr-defined]
    assert caught.value.status_code == 429


async def test_a_429_the_cli_retries_pauses_the_models_limits(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """The CLI's wait before retrying a 429 (its retry-after) pauses the model's rate limiter."""
    fake_provider.script(
        *[Reply(status=429, headers={"retry-after": "1"}) for _ in range(2)], path=MESSAGES
    )
    clock = FakeClock(100.0)
    bucket = TokenBucket(RateLimitConfig(capacity=100, refill_rate=100.0), clock=clock)
    backend = endpoint(claude, tmp_path, fake_provider, max_retries=1)
    model = iModel(backend=backend, rate_limiter=bucket)
    with pytest.raises(errors.RateLimitError):
        await model.invoke(prompt="hello")
    assert not bucket.try_acquire(1)  # paused for the CLI's 1 s
    await clock.advance(1.5)
    assert bucket.try_acquire(1)


async def test_an_open_breaker_refuses_a_stream_before_the_cli_starts(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """A breaker opened by a failed call refuses a stream too, and no CLI run starts."""
    fake_provider.script(Reply(status=500), path=MESSAGES)
    breaker = CircuitBreaker(failure_threshold=1)
    backend = endpoint(claude, tmp_path, fake_provider, circuit_breaker=breaker)
    payload = backend.create_payload({"prompt": "hello"})
    with pytest.raises(errors.ServerError):
        await backend.call(payload)
    with pytest.raises(errors.CircuitBreakerOpenError):
        async for _ in backend.stream(payload):
            pass
    assert len(posts(fake_provider)) == 1 and breaker.metrics["rejected_count"] == 1


async def test_max_turns_keeps_the_clis_message(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """A run stopped by max_turns reports the CLI's own message as the response's error."""
    script_a_read(tmp_path, fake_provider)
    backend = endpoint(claude, tmp_path, fake_provider)
    response = await backend.call(
        backend.create_payload({"prompt": "read", "allowed_tools": ["Read"], "max_turns": 1})
    )
    assert response.status == "error" and response.finish_reason == "length"
    assert response.error == "Reached maximum number of turns (1)"
    assert response.metadata["terminal_reason"] == "max_turns"


@pytest.mark.parametrize(
    ("options", "thinking", "effort"),
    [
        ({"thinking": "disabled"}, {"type": "disabled"}, "high"),
        ({"effort": "low"}, {"type": "adaptive"}, "low"),
        (
            {"model": "haiku", "max_thinking_tokens": 2048},
            {"type": "enabled", "budget_tokens": 2048},
            None,
        ),
    ],
)
async def test_thinking_options_reach_the_api_request(
    claude: Path,
    tmp_path: Path,
    fake_provider: FakeProvider,
    options: dict[str, Any],
    thinking: dict[str, Any],
    effort: str | None,
) -> None:
    """thinking= and effort= become the request's thinking and effort; the old field still works."""
    backend = endpoint(claude, tmp_path, fake_provider)
    await backend.call(backend.create_payload({"prompt": "think", **options}))
    (post,) = posts(fake_provider)
    assert post.body["thinking"] == thinking
    assert (post.body.get("output_config") or {}).get("effort") == effort


@pytest.mark.parametrize("mode", ["auto", "dontAsk"])
async def test_newer_permission_modes_reach_the_cli(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider, mode: str
) -> None:
    """permission_mode auto and dontAsk are accepted and the CLI runs in that mode."""
    backend = endpoint(claude, tmp_path, fake_provider)
    response = await backend.call(backend.create_payload({"prompt": "hi", "permission_mode": mode}))
    assert response.status == "success" and response.metadata["permissionMode"] == mode


@pytest.mark.skipif(os.geteuid() != 0, reason="the CLI refuses bypassPermissions only as root")
async def test_bypass_permissions_as_root_needs_is_sandbox(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root, bypassPermissions without IS_SANDBOX=1 is a clear error; with it the CLI runs."""
    monkeypatch.delenv("IS_SANDBOX", raising=False)
    request = {"prompt": "hi", "permission_mode": "bypassPermissions"}
    backend = endpoint(claude, tmp_path, fake_provider)
    with pytest.raises(errors.ConfigurationError, match=r"IS_SANDBOX=1.*env=\{'IS_SANDBOX': '1'\}"):
        await backend.call(backend.create_payload(request))
    assert posts(fake_provider) == []
    sandboxed = ClaudeCodeEndpoint(
        cli_path=claude,
        env={**claude_env(tmp_path / "home", fake_provider.url), "IS_SANDBOX": "1"},
        repo=str(tmp_path / "repo"),
    )
    response = await sandboxed.call(sandboxed.create_payload(request))
    assert response.status == "success"
    assert response.metadata["permissionMode"] == "bypassPermissions"


async def test_tool_use_runs_the_tool_and_streams_its_input(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """The CLI runs the Read the provider asked for; its input streams as JSON pieces."""
    path = script_a_read(tmp_path, fake_provider)
    fake_provider.reply_text = "x is 42."
    backend = endpoint(claude, tmp_path, fake_provider)
    payload = backend.create_payload({"prompt": "what is in a.py", "allowed_tools": ["Read"]})
    chunks = [c async for c in backend.stream(payload)]
    final = chunks[-1].response
    assert final is not None and final.status == "success" and final.data == "x is 42."
    deltas = [c.tool_call_delta for c in chunks if c.tool_call_delta]
    assert deltas[0]["name"] == "Read" and deltas[0]["index"] == 0
    assert json.loads("".join(d["arguments"] for d in deltas)) == {"file_path": path}
    (result,) = final.metadata["tool_results"]
    assert "x = 42" in json.dumps(result["content"]) and not result["is_error"]
    assert result["tool_use_result"]["file"]["filePath"] == path
    assert len(posts(fake_provider)) == 2


async def test_mcp_servers_reach_the_cli_but_not_its_command_line(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """The CLI offers the tools of mcp_servers; their env never shows in a process listing,
    and the file that holds them is gone once the call is."""
    secret = "sk-never-on-a-command-line"
    everything = {"command": str(program("mcp-server-everything")), "env": {"TOKEN": secret}}
    backend = endpoint(claude, tmp_path, fake_provider, mcp_servers={"ev": everything})
    payload = backend.create_payload({"prompt": "hi"})
    task = await start_until_request(fake_provider, MESSAGES, lambda: backend.call(payload))
    lines = command_lines_of_child("claude")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "mcp__ev__echo" in [tool["name"] for tool in posts(fake_provider)[0].body["tools"]]
    assert lines and not [line for line in lines if secret in line]
    (argv,) = [line.split() for line in lines if "--mcp-config" in line]
    config = Path(argv[argv.index("--mcp-config") + 1])
    assert config.name.startswith("lionpride-mcp-") and not config.exists()


async def test_imodel_stream_hooks_see_the_cli_retry_then_the_answer(
    claude: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """Through iModel, a retried-then-answered stream shows its api_retry to chunk hooks only."""
    fake_provider.script(Reply(status=500), path=MESSAGES)
    fake_provider.reply_text = "Recovered."
    hooks = HookRegistry()
    seen: list[dict[str, Any]] = []
    hooks.register(HookPhase.StreamChunk, lambda event, chunk, **kw: seen.append(chunk.metadata))
    model = iModel(
        backend=endpoint(claude, tmp_path, fake_provider, max_retries=1), hook_registry=hooks
    )
    chunks = [c async for c in model.invoke_stream(prompt="hello")]
    final = chunks[-1].response
    assert final is not None and final.status == "success" and final.data == "Recovered."
    assert "".join(c.content for c in chunks) == "Recovered."
    assert [m["error_status"] for m in seen if m.get("event") == "api_retry"] == [500]
    assert [r["error_status"] for r in final.metadata["api_retries"]] == [500]
