"""``lionpride chat``: one streamed reply, printed as it arrives."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from lionpride.cli._common import DEFAULT_MODELS, build_model
from lionpride.errors import UsageError

if TYPE_CHECKING:
    from lionpride.services.imodel import iModel

__all__ = ["chat"]


def chat(args: argparse.Namespace) -> int:
    """Run the ``chat`` command; return 0, or 1 when the call failed.

    Raises:
        UsageError: No model for the provider, or an empty prompt.
    """
    provider = args.provider.lower()
    name = args.model or DEFAULT_MODELS.get(provider)
    if name is None:
        raise UsageError(f"--model is required for provider {args.provider!r}")
    prompt = _stdin_text() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        where = "on stdin" if args.prompt == "-" else "given"
        raise UsageError(f"the prompt {where} is empty")
    extra = {"stream_usage": False} if args.no_stream_usage else {}
    model = build_model(args, model=name, **extra)
    return asyncio.run(_chat(model, _request(args, provider, prompt)))


def _stdin_text() -> str:
    """The prompt on stdin, which must be UTF-8 (as the request that carries it).

    Raises:
        UsageError: A byte that is not UTF-8 (named, with its offset): sending a guess would
            change the prompt silently.
    """
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        raise UsageError(
            f"the prompt on stdin is not UTF-8 (byte 0x{bad:02x} at offset {exc.start}); "
            "convert it first, e.g. with iconv -f latin1 -t utf-8"
        ) from exc


def _request(args: argparse.Namespace, provider: str, prompt: str) -> dict[str, Any]:
    """The chat request the flags describe, in the canonical (OpenAI chat) form that every
    built-in provider translates into its own."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    request: dict[str, Any] = {"messages": messages}
    if args.temperature is not None:
        request["temperature"] = args.temperature
    if args.max_tokens is not None:
        # OpenAI's own API refuses max_tokens for its reasoning models (gpt-5 and later); other
        # OpenAI-compatible servers may know only max_tokens, which Anthropic and Gemini take too.
        key = "max_completion_tokens" if provider == "openai" else "max_tokens"
        request[key] = args.max_tokens
    return request


async def _chat(model: iModel, request: dict[str, Any]) -> int:
    from lionpride import errors

    out = sys.stdout
    try:
        async for chunk in model.invoke_stream(**request):
            if chunk.content:
                out.write(chunk.content)
                out.flush()
    except ValueError as exc:  # the request itself is refused, before it is sent
        raise UsageError(str(exc)) from exc
    except errors.LionprideError as exc:
        out.write("\n")
        sys.stderr.write(f"lionpride chat: {type(exc).__name__}: {exc}\n")
        for note in getattr(exc, "__notes__", ()):  # what to do about it, when known
            sys.stderr.write(f"lionpride chat: {note}\n")
        return 1
    finally:
        await model.aclose()
    out.write("\n")
    out.flush()
    return 0
