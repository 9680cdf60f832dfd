"""A stand-in agent CLI for the CLI backends' tests: it records how it was run (argv, cwd,
stdin, pid, ``MAX_THINKING_TOKENS``, the JSON files it was given) and plays scripted runs."""

from __future__ import annotations

import json
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The stand-in CLI: records how it was run, then plays its run (the last one repeats).
FAKE_CLI = """\
import json, os, sys, time
scenario = json.load(open(os.environ["FAKE_CLI_SCENARIO"]))
record_path = os.environ["FAKE_CLI_RECORD"]
runs = open(record_path).read().count("\\n") if os.path.exists(record_path) else 0
run = scenario["runs"][min(runs, len(scenario["runs"]) - 1)]
record = {
    "argv": sys.argv[1:], "cwd": os.getcwd(), "stdin": sys.stdin.read(), "pid": os.getpid(),
    "thinking": os.environ.get("MAX_THINKING_TOKENS"),
    "json_files": {a: open(a).read() for a in sys.argv if a[-5:] == ".json" and os.path.isfile(a)},
}
with open(record_path, "a") as f:
    f.write(json.dumps(record) + "\\n")
sys.stderr.write(run.get("stderr", ""))
sys.stderr.flush()
for line in run.get("lines", []):
    print(line if isinstance(line, str) else json.dumps(line), flush=True)
if run.get("hang"):
    time.sleep(60)
sys.exit(run.get("exit", 0))
"""


@dataclass
class FakeCLI:
    """The stand-in executable and what it recorded."""

    path: Path
    scenario: Path
    record: Path

    def play(self, *runs: dict[str, Any], **run: Any) -> None:
        """Script the next runs (the last one repeats): dicts, or one run's fields."""
        self.scenario.write_text(json.dumps({"runs": list(runs) or [run]}))

    def records(self) -> list[dict[str, Any]]:
        """One record per run: argv, cwd, stdin, pid."""
        return [json.loads(line) for line in self.record.read_text().splitlines()]


def install_fake_cli(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: type[FakeCLI] = FakeCLI
) -> Any:
    """A stand-in ``name`` in its own directory, scripted through environment variables."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    path = bindir / name
    path.write_text(f"#!{sys.executable}\n{FAKE_CLI}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    fake = kind(path, tmp_path / "scenario.json", tmp_path / "record.jsonl")
    monkeypatch.setenv("FAKE_CLI_SCENARIO", str(fake.scenario))
    monkeypatch.setenv("FAKE_CLI_RECORD", str(fake.record))
    return fake
