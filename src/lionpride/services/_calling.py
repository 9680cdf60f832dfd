"""A request made into a Calling: the first step of a call's route (once per call).

``make_calling`` validates the request through the backend (``create_payload``), runs the
PreEventCreate hooks, resumes a CLI session, estimates the token reservation and builds the
Calling with the call's options. The call options (:data:`CALL_OPTIONS`) are keyword
arguments beside the request's fields; one given under a name the backend's request also
declares is refused rather than taken silently for the option.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from lionpride import errors
from lionpride.core._trusted import build_trusted
from lionpride.services._hook_phases import run_create_hooks
from lionpride.services.types._canonical import output_type_of
from lionpride.services.types.backend import Calling, ServiceBackend
from lionpride.services.types.hook import DEFAULT_HOOK_OPTIONS, HookOptions, HookPhase
from lionpride.services.types.tool import Tool

if TYPE_CHECKING:
    from lionpride.services.imodel import iModel

__all__ = ["CALL_OPTIONS", "make_calling"]

#: The keyword arguments of ``iModel.invoke``, ``invoke_stream`` and ``create_calling`` that
#: configure the call rather than fill the request; a request field of one of these names
#: cannot be passed beside them (see :func:`make_calling`).
CALL_OPTIONS = (
    "calling",
    "extra_headers",
    "hooks",
    "idle_timeout",
    "poll_timeout",
    "priority",
    "raise_on_error",
    "streaming",
    "timeout",
)


async def make_calling(
    model: iModel,
    request: dict[str, Any],
    *,
    timeout: float | None = None,
    streaming: bool = False,
    extra_headers: dict[str, str] | None = None,
    hooks: HookOptions | None = None,
    poll_timeout: float | None = None,
    priority: float | None = None,
    idle_timeout: float | None = None,
    raise_on_error: bool = True,
) -> Calling:
    """Validate ``request`` into a Calling of ``model``, ready to run (once per call).

    The options after ``request`` are the call's (:data:`CALL_OPTIONS`): those given are
    held against the fields the backend's request declares, so that a field of the same
    name is never silently taken for the option.

    Raises:
        lionpride.errors.ValidationError: Invalid or unknown request parameters, a request
            field named like a call option given beside it, or a token reservation larger
            than the token bucket.
        Exception: A PreEventCreate hook's error with ``HookOptions(create_exit=True)``.
    """
    backend = model.backend
    if not (
        timeout is None
        and extra_headers is None
        and hooks is None
        and poll_timeout is None
        and priority is None
        and idle_timeout is None
        and raise_on_error
    ):
        _refuse_shadowed(
            backend,
            timeout=timeout,
            extra_headers=extra_headers,
            hooks=hooks,
            poll_timeout=poll_timeout,
            priority=priority,
            idle_timeout=idle_timeout,
            raise_on_error=None if raise_on_error else False,
        )
    session_id = model.provider_metadata.get("session_id")
    if session_id and "resume" not in request and model._rt.keeps_session:
        # A CLI backend resumes the model's last session unless told otherwise.
        request["resume"] = session_id
    registry = model.hook_registry
    if registry is not None and registry.handles(HookPhase.PreEventCreate):
        await run_create_hooks(registry, backend.event_type, hooks or DEFAULT_HOOK_OPTIONS)
    payload = _payload(backend, request)
    fields: dict[str, Any] = {"backend": backend, "payload": payload}
    if "response_format" in request or "response_format" in backend.config.kwargs:
        output_type = output_type_of({**backend.config.kwargs, **request})
        if output_type is not None:
            fields["output_type"] = output_type
    if streaming:
        fields["streaming"] = True
    reserved = _reservation(model, payload)
    if reserved is not None:
        fields["reserved_tokens"] = reserved
    if timeout is None and not extra_headers and registry is None:
        # Only the model's own, already valid values: no validation needed.
        return build_trusted(backend.event_type, fields)
    # The caller's values are validated (only those that differ from the defaults).
    if timeout is not None:
        fields["timeout"] = timeout
    if extra_headers:
        fields["extra_headers"] = extra_headers
    if registry is not None:
        fields["hook_registry"] = registry
        if hooks is not None:
            fields["hook_options"] = hooks
    return backend.event_type(**fields)


def _payload(backend: ServiceBackend, request: dict[str, Any]) -> dict[str, Any]:
    """The request validated and completed by the backend.

    Raises:
        lionpride.errors.ValidationError: Whatever a backend's own checks raise for a bad
            request, translated once, here (still a ``ValueError``).
    """
    try:
        return backend.create_payload(request)
    except ValueError as exc:
        if isinstance(exc, errors.LionprideError):
            raise
        raise errors.ValidationError(str(exc), cause=exc) from exc


def _reservation(model: iModel, payload: dict[str, Any]) -> int | None:
    """The tokens the call reserves, when the model's limits count tokens.

    Raises:
        lionpride.errors.ValidationError: More than the token bucket holds.
    """
    executor = model.executor
    if executor is None:
        return None
    # Local or shared in Redis alike: whatever limits tokens says how many it holds.
    capacity = executor.token_capacity
    if capacity is not None:
        tokens = model.backend.estimate_tokens(payload)
        if tokens > capacity:
            raise errors.ValidationError(
                f"request needs {tokens} tokens (prompt estimate plus output budget) but the "
                f"token bucket holds at most {capacity}: lower max_tokens or raise limit_tokens"
            )
        return tokens
    learner = model._rt.capacity
    if learner is not None and learner.mode == "first":
        # Before the first answer the token limit is not known yet, and this call may be
        # granted after it is: it reserves as if it were.
        return model.backend.estimate_tokens(payload)
    return None


def _refuse_shadowed(backend: ServiceBackend, **options: object) -> None:
    """Refuse call options given (not ``None``) under a name the backend's request has as
    a field too.

    Raises:
        lionpride.errors.ValidationError: Such an option was given: the option would take
            the value meant for the field, and the request would go without it.
    """
    fields = _request_fields(backend)
    shadowed = [name for name, value in options.items() if value is not None and name in fields]
    if shadowed:
        names = ", ".join(f"`{name}`" for name in shadowed)
        raise errors.ValidationError(
            f"{backend.name}: {names} is both a call option and a field of the request, "
            "and a call option takes the value: rename the field (the call options: "
            f"{', '.join(CALL_OPTIONS)})"
        )


def _request_fields(backend: ServiceBackend) -> Collection[str]:
    """The names of the fields the backend's request declares (none when it is open)."""
    options = backend.request_options
    if options is not None:
        return options.model_fields.keys()
    if isinstance(backend, Tool):
        properties: dict[str, Any] = backend.schema.get("properties") or {}
        return properties.keys()
    return ()
