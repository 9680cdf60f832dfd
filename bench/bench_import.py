"""Import time of ``from lionpride.services import iModel`` against ``import aiohttp`` (D9).

Each import runs in a fresh interpreter, timed inside it (interpreter start-up excluded); the
two alternate so that drift on the machine falls on both. The figure is the ratio of the medians.
The children may write bytecode (``PYTHONDONTWRITEBYTECODE`` is dropped) and one untimed run of
each comes first: an installed package is imported from its ``.pyc`` files, as aiohttp is here.

Run: ``.venv/bin/python -m bench.bench_import`` (target: ratio <= 1.0).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys

ROUNDS = 15
STATEMENTS = {
    "aiohttp": "import aiohttp",
    "iModel": "from lionpride.services import iModel",
}
_TIMED = "import time; t = time.perf_counter(); {}; print(time.perf_counter() - t)"


def time_import(statement: str) -> float:
    """Seconds one fresh interpreter takes to run the import ``statement``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run(
        [sys.executable, "-c", _TIMED.format(statement)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return float(out.stdout)


async def main(rounds: int = ROUNDS) -> dict[str, float]:
    """Time both imports ``rounds`` times each; print and return the medians and ratio."""
    samples: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    for statement in STATEMENTS.values():
        time_import(statement)  # writes the bytecode caches
    for _ in range(rounds):
        for name, statement in STATEMENTS.items():
            samples[name].append(time_import(statement))
    results = {name: statistics.median(times) * 1e3 for name, times in samples.items()}
    results["ratio"] = results["iModel"] / results["aiohttp"]
    print(
        f"import aiohttp {results['aiohttp']:.1f} ms, "
        f"from lionpride.services import iModel {results['iModel']:.1f} ms: "
        f"ratio {results['ratio']:.2f} (median of {rounds} fresh processes each)"
    )
    return results


if __name__ == "__main__":
    asyncio.run(main())
