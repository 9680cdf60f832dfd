"""The README's self-contained examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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


def test_importing_the_package_is_cheap() -> None:
    """``import lionpride.services`` loads neither aiohttp nor any optional dependency;
    ``iModel`` loads without aiohttp and the providers, which load with the first model."""
    code = (
        "import sys, lionpride.services as s; "
        "print(sorted(m for m in ('aiohttp', 'redis', 'mcp', 'tiktoken', 'opentelemetry') "
        "if m in sys.modules)); s.iModel; "
        "print(sorted(m for m in sys.modules if m == 'aiohttp' or '.providers' in m)); "
        "s.iModel(provider='openai', api_key='OPENAI_API_KEY'); print('aiohttp' in sys.modules)"
    )
    env = {**os.environ, "OPENAI_API_KEY": "k"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split("\n")[:3] == ["[]", "[]", "True"]
