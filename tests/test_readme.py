"""The README's self-contained examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from pydantic import SecretStr

from lionpride.services import iModel

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


def test_readme_examples_close_what_they_open() -> None:
    """Each README block that makes a model, registry or Fallback closes it (``aclose``,
    ``close`` or a ``with`` block) or hands it to a block that does."""
    opened = re.compile(r"(?<![\w.])(iModel|ServiceRegistry|Fallback)\(")
    closes = re.compile(r"\.a?close\(\)|^\s*(async )?with ", re.M)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    unclosed = [b.splitlines()[0] for b in blocks if opened.search(b) and not closes.search(b)]
    assert unclosed == []


def test_readme_openai_compatible_names_do_not_warn() -> None:
    """The provider names the README's table lists as OpenAI-compatible build quietly."""
    row = next(
        line for line in README.read_text().splitlines() if "OpenAI-compatible servers" in line
    )
    names = re.findall(r"`([a-z]+)`", row.split("|")[1])
    assert len(names) >= 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in names:
            model = iModel(provider=name, base_url="http://127.0.0.1:9/v1", api_key=SecretStr("k"))
            assert model.backend.provider == name


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
