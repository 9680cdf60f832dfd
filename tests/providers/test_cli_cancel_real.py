"""Both real agent CLIs (npm/, pinned) leave no process behind when a call or stream ends early.

The same three checks for ``claude`` and ``gemini``: what differs is the route the CLI asks
the provider on, how many stream pieces come before the first text, and the shell tool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests._programs import (
    assert_cancel_during_a_tool_stops_it,
    assert_cancel_stops_the_cli,
    assert_leaving_early_stops_the_cli,
    program,
)
from tests.providers.test_claude_code_real import MESSAGES
from tests.providers.test_claude_code_real import endpoint as claude_endpoint
from tests.providers.test_gemini_code_real import STREAM
from tests.providers.test_gemini_code_real import endpoint as gemini_endpoint

from lionpride.services.types.resilient import ResilientBackend
from lionpride.testing import FakeProvider, Reply


@dataclass(frozen=True)
class CLI:
    """One agent CLI as these tests drive it."""

    name: str
    endpoint: Callable[..., ResilientBackend]
    #: The provider route the CLI's model requests go to.
    path: str
    #: Stream pieces the provider sends before the first text delta.
    first_text_after: int
    #: The CLI's shell tool, and the endpoint options that let it run.
    tool: str
    tool_options: dict[str, Any] = field(default_factory=dict)

    def backend(self, tmp_path: Path, fp: FakeProvider, **kwargs: Any) -> ResilientBackend:
        """An endpoint running the real CLI in ``tmp_path``."""
        return self.endpoint(program(self.name), tmp_path, fp, **kwargs)


CLIS = [
    # message_start, the block's start, a ping, then the first text delta
    CLI("claude", claude_endpoint, MESSAGES, 4, "Bash", {"allowed_tools": ["Bash"]}),
    CLI("gemini", gemini_endpoint, STREAM, 1, "run_shell_command", {"yolo": True}),
]


@pytest.fixture(params=CLIS, ids=lambda cli: cli.name)
def cli(request: pytest.FixtureRequest) -> CLI:
    """Each agent CLI in turn."""
    chosen: CLI = request.param
    return chosen


async def test_early_stream_exit_leaves_no_process(
    cli: CLI, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """Leaving a stream after its first text chunk stops the CLI and everything it started."""
    fake_provider.script(Reply(stall_after=cli.first_text_after), path=cli.path)
    backend = cli.backend(tmp_path, fake_provider)
    stream = backend.stream(backend.create_payload({"prompt": "hi"}))
    await assert_leaving_early_stops_the_cli(stream, cli.name)


async def test_cancelled_call_leaves_no_process(
    cli: CLI, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """Cancelling a call while the CLI waits on the provider stops the CLI and re-raises."""
    backend = cli.backend(tmp_path, fake_provider)
    payload = backend.create_payload({"prompt": "hi"})
    await assert_cancel_stops_the_cli(
        fake_provider, cli.path, cli.name, lambda: backend.call(payload)
    )


async def test_cancel_during_a_tool_run_stops_the_tool(
    cli: CLI, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """Cancelling a call while the CLI runs a shell command stops the command's own group too."""
    backend = cli.backend(tmp_path, fake_provider, **cli.tool_options)
    payload = backend.create_payload({"prompt": "run it"})
    await assert_cancel_during_a_tool_stops_it(
        fake_provider, cli.path, cli.tool, cli.name, lambda: backend.call(payload)
    )
