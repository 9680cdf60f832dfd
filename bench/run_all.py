"""Run every benchmark in bench/ in turn (``make bench``)."""

from __future__ import annotations

import asyncio

from bench import (
    bench_adaptive,
    bench_executor,
    bench_import,
    bench_invoke,
    bench_redis,
    bench_stream,
)


def main() -> None:
    """Each benchmark prints its own figures."""
    for module in (
        bench_import,
        bench_invoke,
        bench_executor,
        bench_stream,
        bench_redis,
        bench_adaptive,
    ):
        print(f"== {module.__name__}")
        asyncio.run(module.main())


if __name__ == "__main__":
    main()
