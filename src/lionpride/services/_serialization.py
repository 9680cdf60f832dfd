"""iModel configuration as a JSON-safe dict and back (no runtime state, no credentials)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, cast

# The built-in endpoints and request schemas, defined so that the allow-lists hold them
# (iModel loads the providers on first use, which may not have happened yet).
import lionpride.services.providers  # noqa: F401
from lionpride import errors
from lionpride.services._limits import learns_limits
from lionpride.services.distributed import RedisCircuitBreaker
from lionpride.services.execution import RateLimitedExecutor
from lionpride.services.observability.pricing import PriceTable
from lionpride.services.types.resilient import ResilientBackend
from lionpride.services.utilities.adaptive import LimitLearner
from lionpride.services.utilities.rate_limiter import LocalCapacity, RateLimitConfig, TokenBucket

if TYPE_CHECKING:
    from lionpride.services.imodel import iModel

__all__ = ["model_from_dict", "model_to_dict"]


_DICT_KEYS = frozenset(
    {
        "adaptive_limits",
        "backend",
        "executor",
        "rate_limiter",
        "shared_limits",
        "prices",
        "provider_metadata",
        "metadata",
        "hook_registry",
    }
)


#: The name an executor has unless its maker named it (``RateLimitedExecutor``'s default).
_EXECUTOR_NAME = "rate_limited_executor"


def _json_default(value: Any) -> Any:
    raise errors.ValidationError(f"iModel.to_dict: {type(value).__name__} is not JSON-serializable")


def model_to_dict(model: iModel, mode: Literal["python", "json", "db"] = "json") -> dict[str, Any]:
    """The body of :meth:`iModel.to_dict`: read through the model's public properties."""
    backend = model.backend
    if not isinstance(backend, ResilientBackend):
        # Tool.to_dict raises its own explanation; other backends get a generic one.
        backend.to_dict()
        raise NotImplementedError(
            f"{type(backend).__name__} backends cannot be serialized; use an Endpoint"
        )
    json_mode: Literal["python", "json"] = "python" if mode == "python" else "json"
    data = backend.to_dict(mode=json_mode, exclude={"id", "created_at"})
    shared = _shared_settings(model)
    prices = model.prices
    out: dict[str, Any] = {
        "backend": data,
        # Limits shared through Redis are kept as their settings (the URL is given again on
        # load: it may hold a password); the executor itself is rebuilt from them.
        "executor": _executor_dict(model.executor, shared),
        # Whether the limits are learned: then the executor's buckets are their configured
        # bounds (an executor passed in is kept as it is, and learns nothing).
        "adaptive_limits": model.learned_limits() is not None,
        "shared_limits": shared,
        "rate_limiter": model.rate_limiter.to_dict() if model.rate_limiter is not None else None,
        # A price table the caller gave (the shipped one is the library's, not the model's).
        "prices": prices.to_dict() if prices is not None else None,
        "provider_metadata": dict(model.provider_metadata),
        "metadata": {**model.metadata, "lion_class": model.class_name(full=True)},
    }
    if json_mode == "json":
        out = json.loads(json.dumps(out, default=_json_default))
    return out


def _shared_settings(model: iModel) -> dict[str, Any] | None:
    """What the model keeps in Redis, as settings (``None`` when nothing is): the Redis
    error policy and shared breaker's name, and the limits when they are shared."""
    limits = model.limits
    if limits.redis_url is None:
        return None
    breaker = getattr(model.backend, "circuit_breaker", None)
    settings: dict[str, Any] = {
        "on_redis_error": limits.on_redis_error,
        "breaker_key": breaker.breaker_key if isinstance(breaker, RedisCircuitBreaker) else None,
    }
    if limits.limit_key is not None:  # set (or made) when the limits are kept in Redis
        settings.update(limits.to_dict())
    return settings


def model_from_dict(data: Any, **kw: Any) -> tuple[dict[str, Any], bool]:
    """The body of :meth:`iModel.from_dict`: the arguments that rebuild the model, and
    whether its executor is rebuilt for it alone (then the model closes it).

    The limits come back as the keywords that build them (``kw`` win over the stored ones);
    an executor passed in to the saved model comes back as an executor.
    """
    if not isinstance(data, dict):
        raise errors.ValidationError(f"iModel.from_dict needs a dict, got {type(data).__name__}")
    unknown = set(data) - _DICT_KEYS
    if unknown:
        raise errors.ValidationError(f"iModel.from_dict: unknown key(s) {sorted(unknown)}")
    backend = ResilientBackend.from_dict(data.get("backend"))
    executor = _optional_dict(data, "executor")
    limiter = _optional_dict(data, "rate_limiter")
    meta = data.get("provider_metadata") or {}
    if not isinstance(meta, dict):
        raise errors.ValidationError("iModel.from_dict: 'provider_metadata' must be a dict")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise errors.ValidationError("iModel.from_dict: 'metadata' must be a dict")
    metadata = dict(metadata)
    metadata.pop("lion_class", None)
    # The stored limits, as the keywords that build them.
    stored: dict[str, Any] = {"adaptive_limits": data.get("adaptive_limits", True)}
    if not isinstance(stored["adaptive_limits"], bool):
        raise errors.ValidationError(
            f"iModel.from_dict: 'adaptive_limits' must be a bool, got {stored['adaptive_limits']!r}"
        )
    shared = _optional_dict(data, "shared_limits")
    if shared is not None:
        if not kw.get("redis_url") and not getattr(kw.get("limits"), "redis_url", None):
            # Restoring without it would silently drop a limit other processes rely on.
            raise errors.ValidationError(
                "iModel.from_dict: this model shared its limits through Redis "
                f"(limit_key={shared.get('limit_key')!r}); pass redis_url=... to restore it"
            )
        stored.update((k, v) for k, v in shared.items() if v is not None)
        if "breaker_key" in stored:  # the breaker's, not the limits'
            kw = {"breaker_key": stored.pop("breaker_key"), **kw}
    prices = _optional_dict(data, "prices")
    if prices is not None and "prices" not in kw:
        table = PriceTable()
        table.update_from_dict(prices)  # ValueError naming a bad price
        kw = {**kw, "prices": table}
    try:
        rebuilt = RateLimitedExecutor.from_dict(executor) if executor is not None else None
        bucket = (
            TokenBucket(RateLimitConfig(limiter["capacity"], limiter["refill_rate"]))
            if limiter is not None
            else None
        )
    except (KeyError, TypeError) as exc:
        raise errors.ValidationError(f"iModel.from_dict: malformed limits: {exc!r}") from exc
    if rebuilt is not None and (
        (stored["adaptive_limits"] and learns_limits(backend))
        or (shared is None and _built_from_limits(cast(dict[str, Any], executor)))
    ):
        # The buckets are the configured bounds of limits learned anew, or the model's own
        # local limits: they come back as limits. Else an executor passed in comes back.
        stored.update(_limits_of(cast(dict[str, Any], executor)))
        rebuilt = None
    if "limits" not in kw:  # the caller's limits= replace the stored ones
        kw = {**stored, **kw}
    arguments = {
        "backend": backend,
        "executor": rebuilt,
        "rate_limiter": bucket,
        "provider_metadata": dict(meta),
        "metadata": metadata,
        **kw,
    }
    return arguments, rebuilt is not None


def _optional_dict(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        raise errors.ValidationError(
            f"iModel.from_dict: {key!r} must be a dict or None, got {value!r}"
        )
    return value


def _executor_dict(
    executor: RateLimitedExecutor | None, shared: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The executor's settings, unless its limits are the shared ones kept apart.

    Raises:
        NotImplementedError: An executor over another capacity backend (shared limits
            passed in as ``executor=``): its limits could not be restored from the dict.
    """
    if executor is None or (shared is not None and "limit_key" in shared):
        return None
    capacity = executor.limiter.backend
    if isinstance(capacity, LimitLearner):
        return {**executor.to_dict(), **capacity.configured()}
    if not isinstance(capacity, LocalCapacity):
        raise NotImplementedError(
            f"an executor over {type(capacity).__name__} cannot be "
            "serialized; build the model with redis_url=, limit_key= and the limits instead"
        )
    settings: dict[str, Any] = executor.to_dict()
    return settings


def _built_from_limits(settings: dict[str, Any]) -> bool:
    """Whether executor ``settings`` (``to_dict`` output) are what a :class:`Limits` builds:
    the default name, and one or two buckets of one window."""
    windows = {
        _window(bucket)
        for bucket in (settings.get("request_bucket"), settings.get("token_bucket"))
        if bucket is not None
    }
    return settings.get("name") == _EXECUTOR_NAME and len(windows) == 1


def _limits_of(settings: dict[str, Any]) -> dict[str, Any]:
    """The limit keywords of executor ``settings`` (already checked), taking one window
    for both buckets."""
    limits: dict[str, Any] = {
        key: settings[key] for key in ("queue_capacity", "concurrency_limit") if key in settings
    }
    for name, bucket in (
        ("limit_requests", settings.get("request_bucket")),
        ("limit_tokens", settings.get("token_bucket")),
    ):
        if bucket is not None:
            limits[name] = bucket["capacity"]
            limits["capacity_refresh_time"] = _window(bucket)
    return limits


def _window(bucket: dict[str, Any]) -> float:
    """A bucket's window in seconds (capacity over refill rate), to the nanosecond: the
    division need not give back the window the rate was made from to the last bit."""
    return round(float(bucket["capacity"]) / float(bucket["refill_rate"]), 9)
