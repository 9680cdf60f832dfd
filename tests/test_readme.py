"""The README's self-contained examples run as written."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def block_containing(marker: str) -> str:
    """The README python block that contains ``marker``."""
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S):
        if marker in block:
            return str(block)
    raise AssertionError(f"no README python block contains {marker!r}")


async def test_custom_backend_example_runs(capsys: object) -> None:
    """The ServiceBackend subclass example works behind iModel with limits, as shown."""
    code = "async def _example():\n" + textwrap.indent(block_containing("class Echo"), "    ")
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)
    await namespace["_example"]()  # type: ignore[operator]
    assert "HI" in capsys.readouterr().out  # type: ignore[attr-defined]
