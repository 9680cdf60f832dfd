"""EndpointConfig: where and how an Endpoint sends requests, and the API-key rule.

The rule, applied once, when the config is made: a string shaped like a variable name (letters,
digits and underscores, any case, not starting with a digit) names the environment variable that
holds the key; no ``api_key`` means the provider's own variable (``OPENAI_API_KEY``...). Either
way the variable is read then, and one that is unset is a ``ConfigurationError`` naming it. Any
other string, or a ``SecretStr``, is the key itself: kept privately, never serialized, never
shown. ``api_key`` is an environment variable's name or ``None`` once validated. Re-exported from
:mod:`lionpride.services.types.endpoint`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from lionpride import errors
from lionpride.services.types.backend import ServiceConfig

__all__ = ["SYSTEM_ENV_VARS", "EndpointConfig", "env_name"]

SYSTEM_ENV_VARS = frozenset(
    {
        "HOME", "PATH", "USER", "SHELL", "PWD", "LANG", "TERM", "TMPDIR", "LOGNAME",
        "HOSTNAME", "PYTHONPATH", "VIRTUAL_ENV", "PS1", "OLDPWD", "EDITOR", "PAGER",
        "DISPLAY", "SSH_AUTH_SOCK", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
    }
)  # fmt: skip
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Names longer than this that are not upper case may be a key pasted as a name: not shown.
_SHOWN_NAME = 24


class EndpointConfig(ServiceConfig):
    """Where and how to send HTTP requests.

    ``api_key`` is only ever an environment variable's *name* once validated: a raw
    credential (a ``SecretStr``, or a string that is not shaped like a variable name) is kept
    privately and serialized as ``None``. When no key is given, ``api_key_env`` names the
    variable (``OPENAI_API_KEY``, ...). A named variable is read when the config is made, and
    one that is unset raises :class:`~lionpride.errors.ConfigurationError` then, given or
    defaulted alike (for ``auth_type="none"`` nothing is read; with ``api_key_optional``, a
    self-hosted server given no key, requests go without one). A config rebuilt from
    ``to_dict`` reads the environment again, so a key exported since is sent.

    ``stream_usage`` (OpenAI-compatible endpoints only, default ``True``) asks for token usage
    at the end of every stream by sending ``stream_options: {"include_usage": true}``, unless
    the request has its own ``stream_options``: without it most OpenAI-compatible servers end
    a stream with no usage, so its cost is unknown and its token reservation is settled at its
    full size. Set it to ``False`` for a server that rejects ``stream_options``. Anthropic and
    Gemini report usage on every stream and ignore it.
    """

    base_url: str | None = None
    endpoint: str
    endpoint_params: tuple[str, ...] | None = None
    params: dict[str, str] = Field(default_factory=dict)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    content_type: str | None = "application/json"
    auth_type: Literal["bearer", "x-api-key", "x-goog-api-key", "none"] = "bearer"
    default_headers: dict[str, str] = Field(default_factory=dict)
    api_key: str | None = None
    api_key_is_env: bool = False
    api_key_env: str | None = None
    #: No key given to a self-hosted server: ``api_key_env`` is read if set, else none is sent.
    api_key_optional: bool = False
    connect_timeout: float = 10.0
    client_kwargs: dict[str, Any] = Field(default_factory=dict)
    drop_unknown: bool = False
    default_output_tokens: int = 4096
    #: OpenAI-compatible streams ask for a final usage chunk (``stream_options.include_usage``).
    stream_usage: bool = True

    _secret: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _resolve_key(cls, data: Any, handler: Callable[[Any], EndpointConfig]) -> EndpointConfig:
        if isinstance(data, EndpointConfig):
            return handler(data)  # an endpoint's field, made (and its key resolved) already
        # A SecretStr never becomes a field value: it is taken out before validation.
        secret = None
        if isinstance(data, dict) and isinstance(data.get("api_key"), SecretStr):
            data = dict(data)
            secret = data.pop("api_key")
        config = handler(data)
        config._apply_key(secret)
        return config

    def _apply_key(self, secret: SecretStr | None) -> None:
        if secret is not None:
            value = secret.get_secret_value().strip()
            if not value:
                raise errors.ConfigurationError("api_key cannot be empty or whitespace")
            self._secret = SecretStr(value)
            return
        key = self.api_key
        if key is None:
            env = self.api_key_env
            if self.auth_type == "none" or not env:
                return
            if self.api_key_optional and not os.environ.get(env, "").strip():
                return  # decided now, as the variable is read now: keyless
            self._secret = _read_key_variable(env, "api_key_env")
            return
        key = key.strip()
        if not key:
            raise errors.ConfigurationError("api_key cannot be empty or whitespace")
        if self.api_key_is_env or _ENV_NAME.match(key):
            # Checked before the variable is read, also for a restored dict that says
            # api_key_is_env: $HOME or $PATH must never be sent as a credential.
            self._secret = _read_key_variable(key, "api_key")
            object.__setattr__(self, "api_key", key)
            object.__setattr__(self, "api_key_is_env", True)
            return
        # A raw credential: keep it privately, never serialize it.
        self._secret = SecretStr(key)
        object.__setattr__(self, "api_key", None)

    @field_validator("api_key_env")
    @classmethod
    def _check_key_env(cls, value: str | None) -> str | None:
        # Read at first use: a system variable named here would be sent as the credential.
        if value is not None and value in SYSTEM_ENV_VARS:
            raise errors.ConfigurationError(_system_var_message("api_key_env", value))
        return value

    @field_validator("base_url")
    @classmethod
    def _strip_base(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("connect_timeout")
    @classmethod
    def _check_connect(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"connect_timeout must be a finite number > 0, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_params(self) -> EndpointConfig:
        if self.params:
            allowed = set(self.endpoint_params or ())
            unknown = sorted(set(self.params) - allowed)
            if unknown:
                raise ValueError(f"params {unknown} not in endpoint_params {sorted(allowed)}")
        return self

    def secret(self) -> SecretStr | None:
        """The credential, resolved when the config was made (``None``: no auth)."""
        return self._secret

    @property
    def sends_key(self) -> bool:
        """Whether requests carry a credential (an optional key unset when the config was
        made sends none)."""
        return self.auth_type != "none" and not (self.api_key_optional and self._secret is None)

    @property
    def full_url(self) -> str:
        """``base_url/endpoint`` with ``params`` filled in."""
        if not self.base_url:
            raise errors.ConfigurationError(f"endpoint {self.name!r} has no base_url")
        path = self.endpoint.format(**self.params) if self.params else self.endpoint
        return f"{self.base_url}/{path.lstrip('/')}"

    def __repr_args__(self) -> Any:
        return [(k, v) for k, v in super().__repr_args__() if k != "kwargs" or v]

    @classmethod
    def build(cls, data: dict[str, Any]) -> EndpointConfig:
        """Validate ``data`` into a config; a key problem raises its own ConfigurationError.

        Pydantic wraps an error raised inside a validator in its own ``ValidationError``,
        whose text shows the validator's input: for the key checks, that input holds the
        key. The check's own error is raised instead, and it never shows a raw key.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            for detail in exc.errors():
                cause = (detail.get("ctx") or {}).get("error")
                if isinstance(cause, errors.ConfigurationError):
                    raise cause from None
            raise


def _read_key_variable(name: str, field: str) -> SecretStr:
    """The key held in environment variable ``name``, or the error that names it."""
    if name in SYSTEM_ENV_VARS:
        raise errors.ConfigurationError(_system_var_message(field, name))
    value = os.environ.get(name, "").strip()
    if value:
        return SecretStr(value)
    if len(name) > _SHOWN_NAME and name != name.upper():
        # Shaped like a name, but it may be a key pasted in: never echoed.
        raise errors.ConfigurationError(
            f"{field} ({len(name)} characters, not shown) is shaped like an environment "
            "variable name, and no such variable is set: if it is the key itself, pass "
            "api_key=SecretStr('...')"
        )
    state = "is empty" if name in os.environ else "is not set"
    raise errors.ConfigurationError(
        f"environment variable {name} {state}: export {name}=<your key>, or pass the key "
        "itself as api_key=SecretStr('...')"
    )


def _system_var_message(field: str, name: str) -> str:
    return (
        f"{field} {name!r} is a system environment variable, not an API key; "
        "pass the key as SecretStr('...') or name the variable that holds it"
    )


def env_name(provider: str, suffix: str) -> str:
    """The provider's environment variable ``<PROVIDER>_<suffix>``: upper case, with every
    run of characters a variable name cannot hold (``my-vllm``, ``local.llm``) as ``_``."""
    return f"{re.sub(r'[^A-Z0-9]+', '_', provider.upper())}_{suffix}"
