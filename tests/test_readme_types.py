"""The README's Python code type-checks as a user's would: mypy --strict, and pyright."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_module(tmp_path: Path) -> Path:
    """Every README python block, in order, as the body of one async function (the blocks
    use top-level ``await`` and the names earlier blocks made)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    body = "".join(textwrap.indent(block, "    ") for block in blocks)
    path = tmp_path / "readme_blocks.py"
    path.write_text("async def _readme() -> None:\n" + body)
    return path


def test_readme_type_checks_under_mypy_strict(tmp_path: Path) -> None:
    """mypy --strict finds nothing in the README's code, which uses no ``type: ignore``."""
    path = readme_module(tmp_path)
    assert "type: ignore" not in path.read_text()
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_readme_type_checks_under_pyright(tmp_path: Path) -> None:
    """pyright finds nothing in the README's code (``pyright: ignore`` is not used)."""
    pyright = shutil.which("pyright", path=str(Path(sys.executable).parent))
    if pyright is None:
        pytest.skip("pyright is not installed: pip install -e '.[dev]' installs it")
    path = readme_module(tmp_path)
    assert "pyright: ignore" not in path.read_text()
    out = subprocess.run(
        [pyright, "--pythonpath", sys.executable, str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
