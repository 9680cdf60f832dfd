"""The real programs the tests drive (DESIGN D16), installed by ``make programs`` into npm/.

:func:`program` finds one of them or skips the test with the reason; under
``LIONPRIDE_REQUIRE_CLIS=1`` (set by ``.ci/run``) a missing program fails the test instead.
:func:`claude_env` and :func:`gemini_env` give each CLI an isolated home under ``tmp_path``,
pointed at a FakeProvider on loopback, as ``../shared/cli/README.md`` describes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

NPM_DIR = Path(__file__).resolve().parents[1] / "npm"
BIN_DIR = NPM_DIR / "node_modules" / ".bin"

#: The executables and the npm packages that provide them (pinned in npm/package.json).
PACKAGES = {
    "claude": "@anthropic-ai/claude-code",
    "gemini": "@google/gemini-cli",
    "mcp-server-everything": "@modelcontextprotocol/server-everything",
    "mcp-server-filesystem": "@modelcontextprotocol/server-filesystem",
}


def program(name: str) -> Path:
    """The installed executable ``name``, or skip (fail under LIONPRIDE_REQUIRE_CLIS=1)."""
    path = BIN_DIR / name
    reason = None
    if name != "claude" and shutil.which("node") is None:
        reason = f"node is not on PATH, so {PACKAGES[name]} cannot run"
    elif not path.exists():
        reason = f"{PACKAGES[name]} is not installed in {BIN_DIR} (run `make programs`)"
    if reason is not None:
        if os.environ.get("LIONPRIDE_REQUIRE_CLIS") == "1":
            pytest.fail(f"LIONPRIDE_REQUIRE_CLIS=1 but {reason}")
        pytest.skip(reason)
    return path


def _base_env(home: Path) -> dict[str, str]:
    """A minimal environment: PATH (for node), an empty home and temp dir, a dumb terminal."""
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "TERM": "dumb",
        "NO_COLOR": "1",
    }


def claude_env(home: Path, base_url: str, *, max_retries: int = 0) -> dict[str, str]:
    """The environment that points ``claude`` at ``base_url`` with nothing else reached."""
    return {
        **_base_env(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-ant-fake-key-for-tests",
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "DISABLE_GROWTHBOOK": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(max_retries),
    }


def gemini_env(home: Path, base_url: str, *, max_attempts: int = 1) -> dict[str, str]:
    """The environment (and settings file) that points ``gemini`` at ``base_url``."""
    settings = {
        "general": {
            "enableAutoUpdate": False,
            "enableAutoUpdateNotification": False,
            "maxAttempts": max_attempts,
        },
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "security": {"auth": {"selectedType": "gemini-api-key"}},
    }
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    return {
        **_base_env(home),
        "GEMINI_API_KEY": "fake-gemini-key-for-tests",
        "GOOGLE_GEMINI_BASE_URL": base_url,
    }


#: The real CLIs' recorded output (``../shared/cli`` beside the repository).
CLI_RECORDINGS = Path(__file__).resolve().parents[1].parent / "shared" / "cli"


def recording(name: str) -> list[str]:
    """The lines of one recording in ``../shared/cli``, or skip when it is absent."""
    path = CLI_RECORDINGS / name
    if not path.is_file():
        pytest.skip(f"{path} is missing (the recordings live in ../shared/cli)")
    return [line for line in path.read_text().splitlines() if line.strip()]
