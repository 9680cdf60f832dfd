"""Checks on the child processes the tests start (CLI runs, MCP servers)."""

from __future__ import annotations

import os


def gone(pid: int) -> bool:
    """Whether no process with this id exists any more (it ended and was reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
