"""What the commands share: connection flags, the API key, building the iModel.

Bad setup (unknown provider, missing key, a flag the library cannot honour) raises
:class:`lionpride.errors.UsageError`, which ``main`` turns into a message on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import TYPE_CHECKING, Any

from lionpride.errors import UsageError

if TYPE_CHECKING:
    from lionpride.services import Limits, iModel

__all__ = [
    "DEFAULT_MODELS",
    "add_connection_args",
    "add_limit_args",
    "build_model",
    "key_env",
    "limits_of",
    "non_negative_float",
    "port_number",
    "positive_float",
    "positive_int",
    "retry_count",
]


#: ``chat``'s model when ``--model`` is not given (current models, checked 2026-12); here,
#: not in ``_chat``, so that ``lionpride --help`` can list them without loading asyncio.
DEFAULT_MODELS = {
    "openai": "gpt-5-mini",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
}


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    """``--provider``, ``--model``, ``--base-url``, ``--api-key-env``, ``--max-retries``
    and ``--timeout``."""
    parser.add_argument(
        "--provider", required=True, help="openai, anthropic, gemini, groq, openrouter, ..."
    )
    parser.add_argument("--model", help="model name (overrides the one in each request)")
    parser.add_argument(
        "--base-url",
        help="API base URL (default: $<PROVIDER>_BASE_URL, then the provider's own)",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable holding the API key (default: <PROVIDER>_API_KEY)",
    )
    parser.add_argument(
        "--max-retries",
        type=retry_count,
        metavar="N",
        help="retries of a request after a 429, 5xx, timeout or lost connection, 0 to 10 "
        "(default 2)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        metavar="S",
        help="seconds a request may take from when it is sent, its retries included; the "
        "wait for the limits does not count, and a stream's is the wait for its first words "
        "and for each word after (default 300)",
    )


def add_limit_args(parser: argparse.ArgumentParser) -> None:
    """Client-side limits: requests and tokens per window, concurrency, Redis."""
    parser.add_argument(
        "--limit-requests", type=positive_int, metavar="N", help="requests per window"
    )
    parser.add_argument(
        "--limit-tokens",
        type=positive_int,
        metavar="N",
        help="tokens per window (prompt estimate plus output budget); a request larger than "
        "this stops the run with exit code 2",
    )
    parser.add_argument(
        "--capacity-refresh-time",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="the window of --limit-requests/--limit-tokens in seconds (default 60)",
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=16, metavar="N", help="default 16"
    )
    parser.add_argument(
        "--redis-url", metavar="URL", help="share the limits through Redis (several processes)"
    )


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def retry_count(text: str) -> int:
    """An argparse type: a number of retries, 0 to 10."""
    value = int(text)
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be 0 to 10, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number of at least 0."""
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0 picks a free one)."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {value}")
    return value


def key_env(provider: str, api_key_env: str | None) -> str:
    """The name of the variable that holds the key: the flag, else ``<PROVIDER>_API_KEY``."""
    from lionpride.services.providers.common import env_name

    return api_key_env or env_name(provider, "API_KEY")


def limits_of(args: argparse.Namespace) -> Limits:
    """The limits the flags of :func:`add_limit_args` describe (the library's defaults for
    a command without them).

    Raises:
        UsageError: A bad value, such as a ``--redis-url`` that is no Redis URL.
    """
    from lionpride import errors
    from lionpride.services import Limits

    redis_url = getattr(args, "redis_url", None)
    try:
        return Limits(
            limit_requests=getattr(args, "limit_requests", None),
            limit_tokens=getattr(args, "limit_tokens", None),
            capacity_refresh_time=getattr(args, "capacity_refresh_time", 60.0),
            concurrency_limit=getattr(args, "concurrency", 100),
            redis_url=redis_url or None,
        )
    except errors.ConfigurationError as exc:
        if "redis_url" in str(exc):
            # Caught here, not by every request of the run failing with the same error.
            raise UsageError(
                f"--redis-url {redis_url!r}: expected redis://, rediss:// or unix:// URL"
            ) from exc
        raise UsageError(str(exc)) from exc


def build_model(args: argparse.Namespace, **extra: Any) -> iModel:
    """Build the iModel the flags describe.

    Args:
        args: Parsed flags from :func:`add_connection_args` (and :func:`add_limit_args`).
        **extra: More iModel or endpoint arguments (``circuit_breaker``, ...).

    Raises:
        UsageError: Unknown provider, missing API key, or a bad ``--redis-url``.
    """
    from pydantic import SecretStr

    from lionpride import errors
    from lionpride.services.imodel import iModel

    provider = args.provider.lower()
    env_name = key_env(provider, args.api_key_env)
    key = os.environ.get(env_name, "").strip()
    kwargs: dict[str, Any] = dict(extra)
    if args.base_url:
        kwargs["base_url"] = args.base_url
    for flag in ("max_retries", "timeout"):
        value = getattr(args, flag, None)
        if value is not None:
            kwargs[flag] = value
    if key:
        kwargs["api_key"] = SecretStr(key)
    limits = limits_of(args)
    if not key:  # before the model, which would name the provider's default variable
        hint = "" if args.api_key_env else " (or --api-key-env NAME)"
        raise UsageError(f"no API key: set {env_name}{hint}")
    try:
        model = iModel(provider=provider, limits=limits, **kwargs)
    except errors.ConfigurationError as exc:
        raise UsageError(str(exc)) from exc
    except ValueError as exc:
        raise UsageError(f"cannot set up provider {provider!r}: {exc}") from exc
    return model
