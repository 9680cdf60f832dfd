"""ClaudeCodeEndpoint driving the real ``claude`` CLI (npm/, pinned) against FakeProvider."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests._programs import claude_env, program

from lionpride.services.providers import ClaudeCodeEndpoint
from lionpride.testing import FakeProvider


@pytest.fixture
def claude() -> Path:
    """The pinned ``claude`` executable."""
    return program("claude")


def endpoint(
    claude: Path, tmp_path: Path, fp: FakeProvider, **kwargs: object
) -> ClaudeCodeEndpoint:
    """An endpoint running the real CLI in ``tmp_path/repo`` with its home in ``tmp_path``."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    return ClaudeCodeEndpoint(
        cli_path=claude,
        env=claude_env(tmp_path / "home", fp.url),
        repo=str(repo),
        **kwargs,
    )


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
    posts = [r for r in fake_provider.requests if r.method == "POST"]
    assert len(posts) == 1 and posts[0].path.startswith("/v1/messages")
    assert posts[0].body["model"] == response.metadata["model"] == "claude-sonnet-5"
