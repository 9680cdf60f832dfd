"""The ``lionpride`` command: batch runs, a streamed chat, a demo and a fake provider.

Commands::

    lionpride demo                                    offline tour on the built-in FakeProvider
    lionpride run IN.jsonl --output OUT.jsonl --provider openai [--model M] [limits]
    lionpride chat --provider anthropic [--model M] [--system S] "prompt"   ("-": stdin)
    lionpride fake-provider [--port N] [--limit-requests N] [--window S] [--script FILE]

Exit codes: 0 success, 1 some requests failed (``run``) or a call failed (``chat``), 2 bad
usage (unknown flag or provider, missing API key, unreadable file), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence

from lionpride.cli._common import (
    DEFAULT_MODELS,
    add_connection_args,
    add_limit_args,
    non_negative_float,
    port_number,
    positive_float,
    positive_int,
)
from lionpride.cli._script_format import SCRIPT_FORMAT
from lionpride.errors import UsageError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lionpride",
        description="Rate-limited LLM calls from the command line.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "demo",
        help="offline tour: limits, retries, breaker, streaming, tools (no key, no network)",
        description="Run a few hundred calls against a local FakeProvider and show the numbers.",
    )

    run = commands.add_parser(
        "run",
        help="send a JSONL file of requests (OpenAI Batch format or plain bodies), resumably",
        description="Send every request of INPUT, append each result to --output as it "
        "finishes; run again over the same output file to resume (only requests without a "
        "successful result are sent; a pipe or /dev/stdout keeps nothing to resume from).",
    )
    run.add_argument("input", metavar="INPUT.jsonl")
    run.add_argument("--output", "-o", required=True, metavar="OUT.jsonl")
    add_connection_args(run)
    add_limit_args(run)

    defaults = "".join(f"\n  {name:<10} {model}" for name, model in DEFAULT_MODELS.items())
    chat = commands.add_parser(
        "chat",
        help="stream one reply to the terminal",
        description="Stream one reply to PROMPT to the terminal.",
        epilog=f"default models (when --model is not given):{defaults}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument(
        "prompt", metavar="PROMPT", help='the prompt; "-" reads it from stdin (UTF-8)'
    )
    add_connection_args(chat)
    chat.add_argument("--system", metavar="TEXT", help="a system prompt")
    chat.add_argument("--max-tokens", type=positive_int, metavar="N", help="most output tokens")
    chat.add_argument(
        "--temperature", type=non_negative_float, metavar="T", help="sampling temperature"
    )
    chat.add_argument(
        "--no-stream-usage",
        action="store_true",
        help="do not send stream_options.include_usage (for an OpenAI-compatible server that "
        "rejects it)",
    )

    fake = commands.add_parser(
        "fake-provider",
        help="serve the FakeProvider (OpenAI, Anthropic, Gemini formats) for your own tests",
        description="Serve the FakeProvider on loopback until SIGINT or SIGTERM. The first "
        "line printed names its URL.",
        epilog=SCRIPT_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument(
        "--port", type=port_number, default=8000, help="0 picks a free port (default 8000)"
    )
    fake.add_argument("--limit-requests", type=positive_int, metavar="N")
    fake.add_argument("--limit-tokens", type=positive_int, metavar="N")
    fake.add_argument("--window", type=positive_float, default=60.0, metavar="S", help="default 60")
    fake.add_argument("--latency", type=non_negative_float, default=0.0, metavar="S")
    fake.add_argument("--reply-text", metavar="TEXT")
    fake.add_argument(
        "--script", metavar="FILE", help="serve the replies FILE lists first (JSON, see below)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lionpride`` command line and return its exit code.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 for --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with _library_warnings():
            return _dispatch(args)
    except UsageError as exc:
        sys.stderr.write(f"lionpride {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130


@contextlib.contextmanager
def _library_warnings() -> Iterator[None]:
    """Show the library's warnings on stderr while a command runs.

    The library logs to the ``lionpride`` loggers and configures no handler; a command is the
    application, and its user must see a warning such as "Redis is unreachable: limits are
    local now". The handler is removed afterwards, so calling :func:`main` twice in one
    process (tests) never prints a line twice.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("lionpride: %(levelname)s: %(message)s"))
    logger = logging.getLogger("lionpride")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _dispatch(args: argparse.Namespace) -> int:
    # Commands import the library only when they run, so `lionpride --help` stays instant.
    if args.command == "run":
        from lionpride.cli._run import run_batch

        return run_batch(args)
    if args.command == "chat":
        from lionpride.cli._chat import chat

        return chat(args)
    if args.command == "demo":
        from lionpride.cli._demo import demo

        return demo()
    from lionpride.cli._fake import serve

    return serve(args)
