"""``lionpride fake-provider``: serve the FakeProvider until interrupted, scripted from a
file if asked (:mod:`lionpride.testing._script_file` describes the format)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from lionpride.errors import UsageError

__all__ = ["serve"]


def serve(args: argparse.Namespace) -> int:
    """Run the ``fake-provider`` command until SIGINT or SIGTERM; return 0.

    Raises:
        UsageError: The address cannot be listened on (port taken, unknown host), or the
            ``--script`` file is unreadable or malformed.
    """
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    from lionpride.testing import FakeProvider, ScriptError, load_script

    script = []
    if args.script is not None:
        try:
            script = load_script(args.script)
        except ScriptError as exc:
            raise UsageError(str(exc)) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    provider = FakeProvider(
        host=args.host,
        port=args.port,
        limit_requests=args.limit_requests,
        limit_tokens=args.limit_tokens,
        window=args.window,
        latency=args.latency,
        reply_text=args.reply_text,
    )
    for needle, reply in script:
        provider.script(reply, path=needle)
    try:
        await provider.start()
    except OSError as exc:  # the port is taken, or the host is not this machine's
        raise UsageError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from exc
    try:
        # The first line names the address, so scripts can read it (useful with --port 0).
        print(f"FakeProvider listening on {provider.url}", flush=True)
        for name in ("openai", "anthropic", "gemini"):
            print(f"  {name:<9} base URL {provider.base_url(name)}", flush=True)
        if args.script is not None:
            print(f"  script    {len(script)} replies from {args.script}", flush=True)
        sys.stdout.flush()
        await stop.wait()
        unused = f", {provider.pending} scripted replies unused" if provider.pending else ""
        print(f"stopping after {len(provider.requests)} requests{unused}", flush=True)
    finally:
        await provider.stop()
    return 0
