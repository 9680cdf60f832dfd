"""Run the ``lionpride`` command as a real child process, the way its users do."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without provider keys or URLs, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env.update(extra)
    return env


async def start_cli(*args: str, env: dict[str, str], **kw: Any) -> asyncio.subprocess.Process:
    """Start ``python -m lionpride.cli *args`` with piped output (``kw`` for the spawn)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lionpride.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        **kw,
    )


async def run_cli(
    *args: str, env: dict[str, str], limit: float = 45, stdin: bytes | None = None, **kw: Any
) -> tuple[int, str, str]:
    """Run the command to its end within ``limit`` seconds: exit code, stdout, stderr.

    ``stdin`` is written to the child's standard input, which is then closed. A child that
    outlives the limit (a hang) is killed, never left behind.
    """
    if stdin is not None:
        kw["stdin"] = asyncio.subprocess.PIPE
    proc = await start_cli(*args, env=env, **kw)
    try:
        async with asyncio.timeout(limit):
            out, err = await proc.communicate(stdin)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
