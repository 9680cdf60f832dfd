"""The README's self-contained examples run as written."""

from __future__ import annotations

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


async def test_one_request_every_provider_example_runs(capsys: object) -> None:
    """The README's tool loop and structured-output call run unchanged on all three providers."""
    block = block_containing("class Forecast")
    code = "async def _example():\n" + textwrap.indent(block, "    ")
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)
    await namespace["_example"]()  # type: ignore[operator]
    out = capsys.readouterr().out.splitlines()  # type: ignore[attr-defined]
    assert out == [
        line
        for provider in ("openai", "anthropic", "gemini")
        for line in (f"{provider} Sunny in Oslo.", "city='Oslo' sky='sunny'")
    ]


def test_importing_the_package_is_cheap() -> None:
    """``import lionpride.services`` loads neither aiohttp nor any optional dependency;
    the names load on first use."""
    code = (
        "import sys, lionpride.services as s; "
        "print(sorted(m for m in ('aiohttp', 'redis', 'mcp', 'tiktoken', 'opentelemetry') "
        "if m in sys.modules)); s.iModel; print('aiohttp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


async def run_block(marker: str, function: str) -> None:
    """Define the README block that contains ``marker`` and await its ``function``."""
    namespace: dict[str, object] = {}
    exec(compile(block_containing(marker), str(README), "exec"), namespace)
    await namespace[function]()  # type: ignore[operator]


async def test_responses_tool_loop_example_runs(capsys: object) -> None:
    """The Responses tool loop replays reasoning and ends with a stop, as shown."""
    await run_block("async def responses_tool_loop", "responses_tool_loop")
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out == "stop ['message', 'reasoning', 'function_call', 'function_call_output']\n"


async def test_embeddings_and_count_tokens_example_runs(capsys: object) -> None:
    """5,000 texts come back as 5,000 vectors of 256 floats; the count is FakeProvider's."""
    await run_block("async def embed_and_count", "embed_and_count")
    assert capsys.readouterr().out.split() == ["5000", "256", "9"]  # type: ignore[attr-defined]
