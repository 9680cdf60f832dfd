"""``lionpride chat``: one streamed reply, printed as it arrives."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from lionpride.cli._common import UsageError, build_model

if TYPE_CHECKING:
    from lionpride.services.imodel import iModel

__all__ = ["DEFAULT_MODELS", "chat"]

#: The model used when ``--model`` is not given: a small, cheap one per provider.
DEFAULT_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "gemini": "gemini-2.0-flash",
}


def chat(args: argparse.Namespace) -> int:
    """Run the ``chat`` command; return 0, or 1 when the call failed."""
    name = args.model or DEFAULT_MODELS.get(args.provider.lower())
    if name is None:
        raise UsageError(f"--model is required for provider {args.provider!r}")
    extra = {"stream_usage": False} if args.no_stream_usage else {}
    model = build_model(args, model=name, **extra)
    return asyncio.run(_chat(model, args.prompt))


async def _chat(model: iModel, prompt: str) -> int:
    from lionpride import errors

    out = sys.stdout
    try:
        async for chunk in model.invoke_stream(messages=[{"role": "user", "content": prompt}]):
            if chunk.content:
                out.write(chunk.content)
                out.flush()
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
