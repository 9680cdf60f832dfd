"""What the HTTP provider packages share: config defaults from the environment, and the
reading of tool-call arguments and stream events.

Public so that each provider package (and the CLI, for ``env_name``) imports it by a public
path; it imports only ``types`` and ``errors``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import BaseModel

from lionpride import errors
from lionpride.services.types.endpoint import env_name

__all__ = [
    "decode_object",
    "env_base_url",
    "env_name",
    "incomplete_stream",
    "parse_arguments",
    "provider_config",
]


def env_base_url(provider: str) -> str | None:
    """``<PROVIDER>_BASE_URL`` from the environment, if set."""
    value = os.environ.get(env_name(provider, "BASE_URL"), "").strip()
    return value or None


def provider_config(
    *,
    provider: str,
    name: str,
    base_url: str | None,
    default_base_url: str | None,
    endpoint: str,
    api_key: Any,
    default_key_env: str,
    auth_type: str,
    request_options: type[BaseModel],
    **extra: Any,
) -> dict[str, Any]:
    """Build an EndpointConfig dict; explicit arguments win over the environment (D5).

    ``default_key_env`` names the provider's usual key variable; an ``api_key_env`` among
    ``extra`` (the caller's own variable) takes its place.
    """
    config: dict[str, Any] = {
        "provider": provider,
        "name": name,
        "base_url": base_url or env_base_url(provider) or default_base_url,
        "endpoint": endpoint,
        "auth_type": auth_type,
        "api_key_env": extra.pop("api_key_env", None) or default_key_env,
        "request_options": request_options,
        "tags": extra.pop("tags", None) or ("llm", provider),
    }
    if api_key is not None:
        config["api_key"] = api_key
    config.update(extra)
    return config


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments as a dict; unparsable JSON is kept under ``"_raw"``."""
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_value": value}


def decode_object(data: str, provider: str) -> dict[str, Any]:
    """Parse one stream event's data, which must be a JSON object.

    Raises:
        InvalidResponseError: Data that is not JSON, or JSON that is not an object.
    """
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise errors.InvalidResponseError(
            f"{provider}: stream event is not JSON: {data[:200]!r}",
            status_code=200,
            body=data[:2000],
            provider=provider,
        ) from exc
    if obj.__class__ is not dict:
        raise errors.InvalidResponseError(
            f"{provider}: stream event is not a JSON object: {data[:200]!r}",
            status_code=200,
            provider=provider,
        )
    return obj


def incomplete_stream(provider: str, missing: str) -> errors.ConnectionError:
    """The error for a stream whose body ended before the provider finished it."""
    return errors.ConnectionError(f"{provider}: stream ended before {missing}")
