"""iModel configuration as a JSON-safe dict and back (no runtime state, no credentials)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, cast

# The built-in endpoints and request schemas, defined so that the allow-lists hold them
# (iModel loads the providers on first use, which may not have happened yet).
import lionpride.services.providers  # noqa: F401
from lionpride import errors
from lionpride.services._imodel_support import learns_limits
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


def _json_default(value: Any) -> Any:
    raise errors.ValidationError(f"iModel.to_dict: {type(value).__name__} is not JSON-serializable")


def model_to_dict(model: iModel, mode: Literal["python", "json", "db"] = "json") -> dict[str, Any]:
    """The body of :meth:`iModel.to_dict`."""
    backend = model.backend
    if not isinstance(backend, ResilientBackend):
        # Tool.to_dict raises its own explanation; other backends get a generic one.
        backend.to_dict()
        raise NotImplementedError(
            f"{type(backend).__name__} backends cannot be serialized; use an Endpoint"
        )
    json_mode: Literal["python", "json"] = "python" if mode == "python" else "json"
    data = backend.to_dict(mode=json_mode, exclude={"id", "created_at"})
    shared = model._rt.shared
    out: dict[str, Any] = {
        "backend": data,
        # Limits shared through Redis are kept as their settings (the URL is given again on
        # load: it may hold a password); the executor itself is rebuilt from them.
        "executor": _executor_dict(model.executor, shared),
        # Whether the limits are learned: then the executor's buckets are their configured
        # bounds (an executor passed in is kept as it is, and learns nothing).
        "adaptive_limits": model._rt.capacity is not None,
        "shared_limits": dict(shared) if shared is not None else None,
        "rate_limiter": model.rate_limiter.to_dict() if model.rate_limiter is not None else None,
        # A price table the caller gave (the shipped one is the library's, not the model's).
        "prices": model._rt.observer.prices.to_dict() if model._rt.own_prices else None,
        "provider_metadata": dict(model.provider_metadata),
        "metadata": {**model.metadata, "lion_class": model.class_name(full=True)},
    }
    if json_mode == "json":
        out = json.loads(json.dumps(out, default=_json_default))
    return out


def model_from_dict(cls: type[iModel], data: Any, **kw: Any) -> iModel:
    """The body of :meth:`iModel.from_dict`."""
    if not isinstance(data, dict):
        raise errors.ValidationError(f"iModel.from_dict needs a dict, got {type(data).__name__}")
    unknown = set(data) - _DICT_KEYS
    if unknown:
        raise errors.ValidationError(f"iModel.from_dict: unknown key(s) {sorted(unknown)}")
    backend = ResilientBackend.from_dict(data.get("backend"))
    executor = data.get("executor")
    if executor is not None and not isinstance(executor, dict):
        raise errors.ValidationError(
            f"iModel.from_dict: 'executor' must be a dict or None, got {executor!r}"
        )
    limiter = data.get("rate_limiter")
    if limiter is not None and not isinstance(limiter, dict):
        raise errors.ValidationError(
            f"iModel.from_dict: 'rate_limiter' must be a dict or None, got {limiter!r}"
        )
    meta = data.get("provider_metadata") or {}
    if not isinstance(meta, dict):
        raise errors.ValidationError("iModel.from_dict: 'provider_metadata' must be a dict")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise errors.ValidationError("iModel.from_dict: 'metadata' must be a dict")
    metadata = dict(metadata)
    metadata.pop("lion_class", None)
    shared = data.get("shared_limits")
    if shared is not None:
        if not isinstance(shared, dict):
            raise errors.ValidationError("iModel.from_dict: 'shared_limits' must be a dict or None")
        if not kw.get("redis_url"):
            # Restoring without it would silently drop a limit other processes rely on.
            raise errors.ValidationError(
                "iModel.from_dict: this model shared its limits through Redis "
                f"(limit_key={shared.get('limit_key')!r}); pass redis_url=... to restore it"
            )
        kw = {**{k: v for k, v in shared.items() if v is not None}, **kw}
    learned = data.get("adaptive_limits", True)
    if not isinstance(learned, bool):
        raise ValueError(f"iModel.from_dict: 'adaptive_limits' must be a bool, got {learned!r}")
    kw = {"adaptive_limits": learned, **kw}
    prices = data.get("prices")
    if prices is not None and "prices" not in kw:
        if not isinstance(prices, dict):
            raise errors.ValidationError(
                f"iModel.from_dict: 'prices' must be a dict or None, got {prices!r}"
            )
        table = PriceTable()
        table.update_from_dict(prices)  # ValueError naming a bad price
        kw = {**kw, "prices": table}
    try:
        rebuilt_executor = RateLimitedExecutor.from_dict(executor) if executor is not None else None
        bucket = (
            TokenBucket(RateLimitConfig(limiter["capacity"], limiter["refill_rate"]))
            if limiter is not None
            else None
        )
    except (KeyError, TypeError) as exc:
        raise errors.ValidationError(f"iModel.from_dict: malformed limits: {exc!r}") from exc
    if rebuilt_executor is not None and kw["adaptive_limits"] and learns_limits(backend):
        # The executor's buckets are the configured bounds of limits learned anew.
        kw = {**_limits_of(cast(dict[str, Any], executor)), **kw}
        rebuilt_executor = None
    model = cls(
        backend=backend,
        executor=rebuilt_executor,
        rate_limiter=bucket,
        provider_metadata=dict(meta),
        metadata=metadata,
        **kw,
    )
    if rebuilt_executor is not None:
        model._rt.owns_executor = True  # made here, for this model alone
    return model


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


def _limits_of(settings: dict[str, Any]) -> dict[str, Any]:
    """The iModel arguments that build the limits of executor ``settings`` (``to_dict``
    output, already checked; both buckets share one window)."""
    limits: dict[str, Any] = {
        key: settings[key] for key in ("queue_capacity", "concurrency_limit") if key in settings
    }
    for name, bucket in (
        ("limit_requests", settings.get("request_bucket")),
        ("limit_tokens", settings.get("token_bucket")),
    ):
        if bucket is not None:
            limits[name] = bucket["capacity"]
            limits["capacity_refresh_time"] = bucket["capacity"] / bucket["refill_rate"]
    return limits
