"""GeminiCodeEndpoint driving the real ``gemini`` CLI (npm/, pinned) against FakeProvider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests._programs import (
    closed_port_url,
    gemini_env,
    program,
)

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.providers import GeminiCodeEndpoint
from lionpride.services.providers.gemini_code import GeminiCodeError
from lionpride.testing import FakeProvider, Reply

STREAM = ":streamGenerateContent"


@pytest.fixture
def gemini() -> Path:
    """The pinned ``gemini`` executable."""
    return program("gemini")


def endpoint(gemini: Path, tmp_path: Path, fp: FakeProvider, **kwargs: Any) -> GeminiCodeEndpoint:
    """An endpoint running the real CLI in ``tmp_path/repo`` with its home in ``tmp_path``."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    return GeminiCodeEndpoint(
        cli_path=gemini, env=gemini_env(tmp_path / "home", fp.url), repo=str(repo), **kwargs
    )


def posts(fp: FakeProvider) -> list[Any]:
    """The streamGenerateContent requests the CLI sent (the answers, not the routing)."""
    return [r for r in fp.requests if r.method == "POST" and STREAM in r.path]


async def test_streamed_call_yields_the_text_in_pieces(
    gemini: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """In a workspace it was never told to trust, the CLI runs and streams the text in pieces."""
    fake_provider.stream_chunks = 5
    backend = endpoint(gemini, tmp_path, fake_provider)
    chunks = [c async for c in backend.stream(backend.create_payload({"prompt": "hello"}))]
    texts = [c.content for c in chunks if c.content]
    final = chunks[-1].response
    assert final is not None and final.status == "success"
    assert len(texts) == 5 and "".join(texts) == final.data
    assert final.usage is not None and final.usage.output_tokens == len(final.data.split())
    (post,) = posts(fake_provider)
    assert post.path.startswith("/v1beta/models/gemini-2.5-pro:streamGenerateContent")


async def test_model_none_lets_the_cli_route(
    gemini: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """model=None sends no --model: the CLI's auto router asks which model, then uses it."""
    routing = {"complexity_reasoning": "a greeting", "complexity_score": 3}
    fake_provider.script(Reply(text=json.dumps(routing)), path=":generateContent")
    backend = endpoint(gemini, tmp_path, fake_provider, model=None)
    response = await backend.call(backend.create_payload({"prompt": "hello"}))
    assert response.status == "success" and response.metadata["model"] == "auto"
    router, answer = [r for r in fake_provider.requests if r.method == "POST"]
    assert router.path.endswith(":generateContent")
    assert answer.path.split(":")[1].startswith("streamGenerateContent")
    assert "gemini-2.5-pro" not in answer.path


async def test_untrusted_workspace_fails_when_skip_trust_is_off(
    gemini: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """skip_trust=False leaves the decision to the CLI, which refuses an untrusted directory."""
    backend = endpoint(gemini, tmp_path, fake_provider, skip_trust=False)
    with pytest.raises(GeminiCodeError, match="trusted") as caught:
        await backend.call(backend.create_payload({"prompt": "hello"}))
    assert caught.value.returncode == 55 and posts(fake_provider) == []


async def test_resumed_call_carries_the_earlier_turn(
    gemini: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """A session started with session_id= is resumed by that id with the first turn in it."""
    session = "7d4c2b1a-9e8f-4a6b-8c5d-3e2f1a0b9c8d"
    backend = endpoint(gemini, tmp_path, fake_provider)
    first = await backend.call(
        backend.create_payload({"prompt": "first turn", "session_id": session})
    )
    assert first.metadata["session_id"] == session
    second = await backend.call(
        backend.create_payload({"prompt": "second turn", "resume": session})
    )
    assert second.status == "success"
    contents = posts(fake_provider)[-1].body["contents"]
    sent = json.dumps(contents)
    assert sent.count("first turn") == 1 and sent.count("second turn") == 1
    assert [c["role"] for c in contents][-3:] == ["user", "model", "user"]


async def test_imodel_chat_goes_on_in_the_session_without_repeating_it(
    gemini: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """A second chat call on an iModel resumes its session and sends only the new message."""
    model = iModel(backend=endpoint(gemini, tmp_path, fake_provider))
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "first turn"}]
    first = await model.invoke(messages=chat)
    chat += [
        {"role": "assistant", "content": first.response.data},
        {"role": "user", "content": "second turn"},
    ]
    second = await model.invoke(messages=chat)
    assert second.response.metadata["session_id"] == first.response.metadata["session_id"]
    sent = json.dumps(posts(fake_provider)[-1].body["contents"])
    assert sent.count("first turn") == 1 and sent.count("second turn") == 1
    assert sent.count("Be brief.") == 1


async def test_imodel_with_a_session_id_goes_on_in_that_session(
    gemini: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """A model whose calls name a session_id starts it, then resumes it (not both flags)."""
    session = "2f0e9d8c-7b6a-4c5d-9e4f-3a2b1c0d9e8f"
    model = iModel(backend=endpoint(gemini, tmp_path, fake_provider, session_id=session))
    await model.invoke(prompt="first turn")
    second = await model.invoke(prompt="second turn")
    assert second.response.metadata["session_id"] == session
    assert json.dumps(posts(fake_provider)[-1].body["contents"]).count("first turn") == 1
    with pytest.raises(errors.ValidationError, match="give one of them"):
        await model.invoke(prompt="third turn", resume="another-session")


async def test_tool_use_and_a_failed_tool_keep_their_messages(
    gemini: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """The CLI runs the read_file calls; the failed one keeps the CLI's full error message."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "b.py").write_text("y = 7\n")
    calls = [
        {"name": "read_file", "arguments": {"file_path": "b.py"}},
        {"name": "read_file", "arguments": {"file_path": "nope.py"}},
    ]
    fake_provider.script(Reply(text="Checking.", tool_calls=calls), path=STREAM)
    fake_provider.reply_text = "Done."
    backend = endpoint(gemini, tmp_path, fake_provider)
    response = await backend.call(backend.create_payload({"prompt": "do it"}))
    assert response.status == "success" and response.data.endswith("Done.")
    assert [u["name"] for u in response.metadata["tool_uses"]] == ["read_file", "read_file"]
    ok, missing = response.metadata["tool_results"]
    assert not ok["is_error"]
    assert missing["is_error"] and missing["error_type"] == "file_not_found"
    assert missing["content"].startswith("File not found: ")
    assert missing["content"].endswith("nope.py")
    replied = json.dumps(posts(fake_provider)[-1].body["contents"][-1])
    assert "y = 7" in replied


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, errors.AuthenticationError),
        (429, errors.RateLimitError),
        (500, errors.ServerError),
    ],
)
async def test_api_failure_raises_the_typed_error(
    gemini: Path,
    tmp_path: Path,
    fake_provider: FakeProvider,
    status: int,
    kind: type[errors.APIStatusError],
) -> None:
    """An API status the CLI gives up on is raised as its typed error with the CLI's message."""
    fake_provider.script(*[Reply(status=status) for _ in range(3)], path=STREAM)
    backend = endpoint(gemini, tmp_path, fake_provider)
    with pytest.raises(kind, match=r"^\[API Error") as caught:
        await backend.call(backend.create_payload({"prompt": "hello"}))
    assert caught.value.status_code == status and caught.value.provider == "gemini_code"


async def test_unknown_model_raises_not_found(
    gemini: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """A 404 for the model, which the CLI reports without its status, raises NotFoundError."""
    message = "models/gemini-nonexistent is not found for API version v1beta"
    body = {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}
    fake_provider.script(Reply(status=404, body=body), path=STREAM)
    backend = endpoint(gemini, tmp_path, fake_provider, model="gemini-nonexistent")
    with pytest.raises(errors.NotFoundError, match=message) as caught:
        await backend.call(backend.create_payload({"prompt": "hello"}))
    assert caught.value.status_code == 404 and caught.value.provider == "gemini_code"


async def test_unreachable_api_raises_connection_error(gemini: Path, tmp_path: Path) -> None:
    """An API the CLI cannot reach (a closed port) raises ConnectionError with its message."""
    env = gemini_env(tmp_path / "home", closed_port_url())
    backend = GeminiCodeEndpoint(cli_path=gemini, env=env, repo=str(tmp_path))
    with pytest.raises(errors.ConnectionError, match="fetch failed"):
        await backend.call(backend.create_payload({"prompt": "hello"}))


async def test_api_failure_in_a_stream_is_raised(
    gemini: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """A stream whose run failed on a 500 raises ServerError after the chunks it had."""
    fake_provider.script(*[Reply(status=500) for _ in range(3)], path=STREAM)
    backend = endpoint(gemini, tmp_path, fake_provider)
    seen: list[Any] = []
    with pytest.raises(errors.ServerError):
        async for chunk in backend.stream(backend.create_payload({"prompt": "hello"})):
            seen.append(chunk)
    assert [c.metadata.get("event") for c in seen] == ["system"]


async def test_empty_model_response_keeps_the_clis_message(
    gemini: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """An empty model answer is a failed response whose error is the CLI's own explanation."""
    empty = {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}]}
    reply = Reply(
        headers={"content-type": "text/event-stream"},
        chunks=[f"data: {json.dumps(empty)}\r\n\r\n"],
    )
    fake_provider.script(*[reply for _ in range(3)], path=STREAM)
    backend = endpoint(gemini, tmp_path, fake_provider)
    response = await backend.call(backend.create_payload({"prompt": "hello"}))
    assert response.status == "error"
    assert response.error is not None and "empty response" in response.error


async def test_cli_options_are_accepted_by_the_cli(
    gemini: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """allowed_mcp_server_names, policy and extensions reach the CLI, which runs with them."""
    policy = tmp_path / "policies"
    policy.mkdir()
    backend = endpoint(gemini, tmp_path, fake_provider)
    payload = backend.create_payload(
        {
            "prompt": "hello",
            "allowed_mcp_server_names": ["nothing"],
            "policy": [str(policy)],
            "extensions": ["none"],
        }
    )
    response = await backend.call(payload)
    assert response.status == "success" and len(posts(fake_provider)) == 1
