"""``ResilientBackend``: what HTTP endpoints and CLI backends share.

Both are configured by an :class:`EndpointConfig` (built by a provider's ``config_factory``
from keyword arguments), run their attempts under a retry policy and a circuit breaker, and
are saved as a JSON-safe dict with their request schema kept by name. How one attempt is made
(an HTTP request, a CLI process) is the subclass's: :class:`~lionpride.services.types.endpoint.
Endpoint` and ``CLIEndpoint`` (:mod:`lionpride.services.providers._cli_endpoint`).

Layers: :meth:`ResilientBackend._resilient` runs once per call; inside it
``retry_with_backoff`` makes every attempt (the first included) and the breaker runs once per
attempt, so every attempt is counted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, ClassVar, TypeVar

from pydantic import ConfigDict, field_serializer
from pydantic import ValidationError as PydanticValidationError

from lionpride import errors
from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.core.element import Element
from lionpride.services.types._endpoint_config import EndpointConfig
from lionpride.services.types._fast_request import plain_payload
from lionpride.services.types.backend import RetryObserver, ServiceBackend
from lionpride.services.types.request import RequestModel, request_schema, request_schema_name
from lionpride.services.utilities.resilience import (
    CircuitBreaker,
    RetryConfig,
    retry_with_backoff,
)

__all__ = ["ResilientBackend"]

T = TypeVar("T")

#: The fields every resilient backend is saved with, besides its identity.
_SAVED = ("config", "circuit_breaker", "retry_config")


class ResilientBackend(ServiceBackend):
    """A backend configured by an :class:`EndpointConfig`, its attempts under retry and breaker.

    Args:
        config: An :class:`EndpointConfig` or a dict of its fields; built by the class's
            ``config_factory`` from ``kwargs`` when omitted.
        circuit_breaker: Fails fast while the provider is down (inside the retry loop).
        retry_config: Retry policy; the default retries as ``config.max_retries`` says,
            ``None`` turns retries off.
        **kwargs: Config fields, or default request parameters (``model=...``).
    """

    model_config = ConfigDict(extra="forbid")

    config: EndpointConfig
    circuit_breaker: CircuitBreaker | None = None
    retry_config: RetryConfig | None = None

    #: Sentinel default for ``retry_config``: SDK-like retries (D7).
    DEFAULT_RETRY: ClassVar[object] = object()
    #: Builds the config dict from keyword arguments when no ``config`` is given
    #: (provider subclasses set their ``create_*_config`` factory).
    config_factory: ClassVar[Callable[..., dict[str, Any]] | None] = None

    def __init__(
        self,
        *,
        config: dict[str, Any] | EndpointConfig | None = None,
        circuit_breaker: CircuitBreaker | dict[str, Any] | None = None,
        retry_config: RetryConfig | dict[str, Any] | object | None = DEFAULT_RETRY,
        **kwargs: Any,
    ) -> None:
        element_keys: dict[str, Any] = {
            k: kwargs.pop(k) for k in ("id", "created_at", "metadata") if k in kwargs
        }
        factory = type(self).config_factory
        if config is None and factory is not None:
            config, kwargs = factory(**kwargs), {}
        cfg = _build_config(config, kwargs)
        if retry_config is ResilientBackend.DEFAULT_RETRY:
            retry_config = RetryConfig(max_retries=cfg.max_retries)
        elif isinstance(retry_config, dict):
            retry_config = RetryConfig.from_dict(retry_config)
        if isinstance(circuit_breaker, dict):
            circuit_breaker = CircuitBreaker.from_dict(circuit_breaker)
        fields: dict[str, Any] = {
            "config": cfg,
            "circuit_breaker": circuit_breaker,
            "retry_config": retry_config,
            **element_keys,
        }
        super().__init__(**fields)

    @field_serializer("circuit_breaker")
    def _ser_breaker(self, breaker: CircuitBreaker | None) -> dict[str, Any] | None:
        return breaker.to_dict() if breaker is not None else None

    @field_serializer("retry_config")
    def _ser_retry(self, retry: RetryConfig | None) -> dict[str, Any] | None:
        return retry.to_dict() if retry is not None else None

    @property
    def clock(self) -> Clock:
        """The time source of the call's deadline and of the retry waits."""
        return SYSTEM_CLOCK

    def to_dict(self, mode: Any = "python", **dump_kw: Any) -> dict[str, Any]:
        """Dump as :meth:`Element.to_dict` does, with the request schema kept by name.

        Raises:
            NotImplementedError: A request schema that could not be found again on load.
        """
        data = super().to_dict(mode, **dump_kw)
        data["config"]["request_options"] = request_schema_name(self.config.request_options)
        return data

    @classmethod
    def from_dict(cls, data: Any, **kw: Any) -> ResilientBackend:
        """Rebuild a backend from :meth:`to_dict` output.

        The class is the one recorded in ``metadata["lion_class"]`` (a defined subclass of
        this one), the request schema is found again by name; keys are read from the
        environment again, never from the dict.

        Raises:
            ValueError: A malformed dict, an unknown class or request schema.
        """
        if kw:
            raise errors.ValidationError(
                f"{cls.__name__}.from_dict takes no extra arguments, got {sorted(kw)}"
            )
        if not isinstance(data, dict):
            raise errors.ValidationError(f"'backend' must be a dict, got {data!r}")
        meta = data.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("lion_class"), str):
            raise errors.ValidationError("backend: metadata.lion_class is missing")
        klass = Element.resolve_class(meta["lion_class"])
        if not issubclass(klass, cls):
            kinds = "Endpoint or CLIEndpoint" if cls is ResilientBackend else cls.class_name()
            raise errors.ValidationError(
                f"backend: lion_class {meta['lion_class']!r} is not a subclass of {kinds}"
            )
        config = data.get("config")
        if not isinstance(config, dict):
            raise errors.ValidationError("backend: config must be a dict")
        config = dict(config)
        schema = config.pop("request_options", None)
        if schema is not None:
            config["request_options"] = request_schema(schema)
        # Besides the three every backend has: identity (``id``, ``created_at``) and a
        # class's own fields (a CLI's ``cli_path``).
        own = set(klass.model_fields) - _NOT_OWN
        unknown = set(data) - set(_SAVED) - {"metadata"} - own
        if unknown:
            raise errors.ValidationError(f"backend: unknown key(s) {sorted(unknown)}")
        extra = {key: data[key] for key in own if data.get(key) is not None}
        try:
            return klass(
                config=config,
                circuit_breaker=data.get("circuit_breaker"),
                retry_config=data.get("retry_config"),
                metadata={k: v for k, v in meta.items() if k != "lion_class"},
                **extra,
            )
        except PydanticValidationError as exc:
            raise errors.ValidationError(f"backend: invalid config: {exc}") from exc

    def _validated(self, request: dict[str, Any]) -> dict[str, Any]:
        """``request`` validated into ``config.request_options``; the dump is what is sent.

        Raises:
            lionpride.errors.ValidationError: No schema, unknown parameters (named, with the
                valid ones; dropped instead with ``drop_unknown``) or invalid values.
        """
        options = self.config.request_options
        if options is None:
            raise errors.ValidationError(f"Endpoint {self.name} must define request_options")
        fields = options.__pydantic_fields__
        if not fields.keys() >= request.keys():
            unknown = [k for k in request if k not in fields]
            if not self.config.drop_unknown:
                raise errors.ValidationError(
                    f"unknown parameter(s) for {self.name}: {', '.join(map(repr, unknown))}; "
                    f"valid: {', '.join(sorted(fields))}; a field newer than this library "
                    "goes in extra_body={...}"
                )
            request = {k: v for k, v in request.items() if k in fields}
        payload = plain_payload(options, request)
        if payload is not None:
            return payload  # what validation would give, checked without it
        try:
            model = options.__pydantic_validator__.validate_python(request)
        except PydanticValidationError as exc:
            raise errors.ValidationError(
                f"invalid request for {self.name}: {_short(exc)}", cause=exc
            ) from exc
        if isinstance(model, RequestModel):
            return model.to_payload()
        dump: dict[str, Any] = model.model_dump(exclude_none=True, by_alias=True)
        return dump

    def _deadline(self, timeout: float | None) -> float:
        """The call's deadline on :attr:`clock`: ``timeout`` (else the config's) from now."""
        return float(self.clock.now()) + (timeout or self.config.timeout)

    def _resilient(
        self,
        attempt: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        deadline: float,
        on_retry: RetryObserver | None,
    ) -> Awaitable[T]:
        """``attempt(*args)`` under the retry policy, each attempt through the breaker.

        Runs once per call; ``attempt`` runs once per attempt, the first included. Not a
        coroutine: the caller awaits the retry loop itself, one frame fewer per call.
        """
        breaker = self.circuit_breaker
        once = attempt if breaker is None else partial(breaker.execute, attempt)
        # The deadline was read on this clock, so the waits are measured on it too.
        return retry_with_backoff(
            once,
            args=args,
            config=self.retry_config or _NO_RETRY,
            deadline=deadline,
            clock=self.clock,
            on_retry=on_retry,
        )


#: Fields read apart from the rest: the metadata and the saved three.
_NOT_OWN = frozenset({"metadata", *_SAVED})

#: The policy of ``retry_config=None``: one attempt.
_NO_RETRY = RetryConfig(max_retries=0)


def _build_config(config: Any, kwargs: dict[str, Any]) -> EndpointConfig:
    """The config from an ``EndpointConfig`` or a dict, with ``kwargs`` laid over it."""
    if isinstance(config, EndpointConfig):
        if not kwargs:
            return config
        data = config.model_dump(exclude={"request_options"})
        data["request_options"] = config.request_options
        secret = config.secret()
        if secret is not None and "api_key" not in kwargs and not config.api_key_is_env:
            data["api_key"] = secret
        return EndpointConfig.build({**data, **kwargs})
    if isinstance(config, dict):
        return EndpointConfig.build({**config, **kwargs})
    if config is None:
        return EndpointConfig.build(kwargs)
    raise errors.ValidationError(
        f"config must be a dict or EndpointConfig, got {type(config).__name__}"
    )


def _short(exc: PydanticValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "request"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
