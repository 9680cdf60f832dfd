"""Build request headers for the supported authentication schemes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import SecretStr

from lionpride import errors

__all__ = ["AUTH_TYPES", "AuthType", "HeaderFactory"]

AuthType = Literal["bearer", "x-api-key", "x-goog-api-key", "none"]
AUTH_TYPES: tuple[str, ...] = ("bearer", "x-api-key", "x-goog-api-key", "none")


class HeaderFactory:
    """Turns an auth scheme and a key into HTTP headers."""

    @staticmethod
    def get_header(
        auth_type: str,
        content_type: str | None = "application/json",
        api_key: str | SecretStr | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Return the headers for one request.

        Args:
            auth_type: One of :data:`AUTH_TYPES`.
            content_type: The Content-Type header, or ``None`` for none.
            api_key: The credential (required unless ``auth_type == "none"``).
            default_headers: Extra headers, applied last.

        Raises:
            ValueError: Unknown ``auth_type`` or a missing key.
        """
        if auth_type not in AUTH_TYPES:
            raise errors.ValidationError(
                f"auth_type must be one of {AUTH_TYPES}, got {auth_type!r}"
            )
        headers: dict[str, str] = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if auth_type != "none":
            key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
            if not key or not key.strip():
                raise errors.ValidationError("API key is required for authentication")
            if auth_type == "bearer":
                headers["Authorization"] = f"Bearer {key.strip()}"
            else:
                headers[auth_type] = key.strip()
        if default_headers:
            headers.update(default_headers)
        return headers
