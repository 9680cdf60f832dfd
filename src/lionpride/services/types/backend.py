"""The backend contract: ``ServiceConfig``, ``ServiceBackend`` and the ``Calling`` event.

A backend turns one request dict into one :class:`NormalizedResponse` (``call``) and,
optionally, into a stream of chunks (``stream``). Everything else (limits, hooks, retries
for non-HTTP backends, registry, streaming fan-out) is added around it by ``iModel``, so a
user's own subclass gets all of it for free (DESIGN D12).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypedDict, Unpack

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lionpride import errors
from lionpride.core.element import Element
from lionpride.core.event import Event, EventStatus
from lionpride.services.types.hook import HookOptions, HookRegistry
from lionpride.services.types.response import NormalizedResponse, OutputT, Usage

if TYPE_CHECKING:
    from lionpride.services.streaming.channel import StreamChunk

__all__ = [
    "CallOptions",
    "Calling",
    "NormalizedResponse",
    "RetryObserver",
    "ServiceBackend",
    "ServiceConfig",
    "StreamOptions",
]

#: Called before each retry with (attempt number, error, seconds until the next attempt).
RetryObserver = Callable[[int, BaseException, float], Any]


class CallOptions(TypedDict, total=False):
    """How one call runs, apart from its request: given to ``call`` by keyword, never sent.

    Attributes:
        extra_headers: Headers added to this call's requests (HTTP backends).
        timeout: Seconds for the whole call, retries included (``None``: the config's).
        on_retry: Told before each retry (attempt number, error, seconds until the next).
    """

    extra_headers: dict[str, str] | None
    timeout: float | None
    on_retry: RetryObserver | None


class StreamOptions(CallOptions, total=False):
    """:class:`CallOptions` of a stream.

    Attributes:
        idle_timeout: Seconds a stream may go without content (``None``: the timeout).
    """

    idle_timeout: float | None


class ServiceConfig(BaseModel):
    """What every backend is configured with.

    Keys that are not declared fields are moved into ``kwargs``; for endpoints those become
    default request parameters (``model``, ``max_tokens``, ...).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    provider: str = Field(min_length=1, max_length=50)
    name: str = Field(min_length=1, max_length=100)
    request_options: type[BaseModel] | None = Field(default=None, exclude=True)
    timeout: float = 300.0
    max_retries: int = Field(default=2, ge=0, le=10)
    version: str | None = None
    tags: tuple[str, ...] = ()
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _route_extras(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = cls.model_fields
        extras = {k: v for k, v in data.items() if k not in known}
        if not extras:
            return data
        out = {k: v for k, v in data.items() if k in known}
        out["kwargs"] = {**(data.get("kwargs") or {}), **extras}
        return out

    @field_validator("request_options", mode="before")
    @classmethod
    def _coerce_options(cls, value: Any) -> Any:
        if value is None or (isinstance(value, type) and issubclass(value, BaseModel)):
            return value
        if isinstance(value, BaseModel):
            return type(value)
        raise errors.ValidationError(
            f"request_options must be a pydantic model class, got {type(value).__name__}"
        )

    @field_validator("timeout")
    @classmethod
    def _check_timeout(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise errors.ValidationError(
                f"timeout must be a finite number of seconds > 0, got {value!r}"
            )
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_tuple(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        if value is None:
            return ()
        if not isinstance(value, Iterable):
            # tuple() would raise TypeError, which pydantic lets through unexplained.
            raise errors.ValidationError(f"tags must be a string or strings, got {value!r}")
        return tuple(value)


class ServiceBackend(Element):
    """Abstract backend: one request in, one :class:`NormalizedResponse` out.

    Subclasses implement :meth:`call` and :attr:`event_type`; :meth:`stream` is optional.
    """

    model_config = ConfigDict(extra="forbid")

    config: ServiceConfig

    @property
    def provider(self) -> str:
        """The provider name (``"openai"``, ``"anthropic"``, ``"tool"``, ...)."""
        return self.config.provider

    @property
    def name(self) -> str:
        """The registry name of this backend."""
        return self.config.name

    @property
    def version(self) -> str | None:
        """The configured version, if any."""
        return self.config.version

    @property
    def tags(self) -> set[str]:
        """The configured tags."""
        return set(self.config.tags)

    @property
    def request_options(self) -> type[BaseModel] | None:
        """The pydantic model requests are validated against."""
        return self.config.request_options

    @property
    def event_type(self) -> type[Calling]:
        """The Calling class that runs this backend."""
        return Calling

    def create_payload(self, request: dict[str, Any]) -> dict[str, Any]:
        """Validate and complete a request; the default passes it through unchanged."""
        return dict(request)

    def estimate_tokens(self, payload: dict[str, Any]) -> int:
        """Tokens a call will use at most, for token-bucket reservations (0 = not metered)."""
        return 0

    async def call(
        self, request: dict[str, Any], **options: Unpack[CallOptions]
    ) -> NormalizedResponse:
        """Run one request to completion. Runs once per call; retries (if any) happen inside."""
        raise NotImplementedError

    def stream(
        self, request: dict[str, Any], **options: Unpack[StreamOptions]
    ) -> AsyncIterator[StreamChunk]:
        """Yield decoded chunks, the last one final with the assembled response."""
        raise NotImplementedError(f"{type(self).__name__} does not support streaming")

    async def aclose(self) -> None:
        """Release connections or processes this backend holds (default: nothing)."""


class Calling(Event, Generic[OutputT]):
    """One call of a backend: the validated request and, once run, its outcome.

    A record, not a runner: ``iModel.invoke`` (or ``invoke_stream``) runs it once, through
    the model's runner, which records the outcome on ``execution``. With a pydantic model
    class as ``output_type`` (the request's ``response_format``), the answer is validated
    into it (``response.parsed``); an answer that does not validate fails the call with
    :class:`~lionpride.errors.OutputValidationError`.
    """

    _lion_serializable: ClassVar[bool] = False

    backend: ServiceBackend = Field(exclude=True)
    payload: dict[str, Any] = Field(default_factory=dict)
    extra_headers: dict[str, str] | None = Field(default=None, exclude=True)
    #: Tokens reserved for this call in the model's token bucket (0 = none).
    reserved_tokens: int = Field(default=0, exclude=True)
    #: The pydantic model class the answer is validated into (``response.parsed``).
    output_type: type[BaseModel] | None = Field(default=None, exclude=True, repr=False)
    #: The call's tracing span, when the iModel traces (OpenTelemetry).
    trace: Any = Field(default=None, exclude=True, repr=False)
    #: Lifecycle hooks (``None`` = the fast path: no hook checks at all).
    hook_registry: HookRegistry | None = Field(default=None, exclude=True, repr=False)
    #: How those hooks run for this call (``None``: the defaults of :class:`HookOptions`).
    hook_options: HookOptions | None = Field(default=None, exclude=True, repr=False)

    @property
    def response(self) -> NormalizedResponse[OutputT]:
        """The normalized response of a completed call (never ``None``).

        A Calling that ``invoke`` returned without raising always has one. On a Calling with
        no response (``execution.response`` is ``None``: it failed, or has not run), reading
        this raises, as ``Future.result()`` does.

        Raises:
            Exception: The call's own error, for a failed or timed-out call (the one
                ``invoke`` raises, or records with ``raise_on_error=False``).
            lionpride.errors.ExecutionError: The call has not run yet, or was cancelled
                (Ctrl-C, a task cancelled) before it answered.
        """
        resp = self.execution.response
        if isinstance(resp, NormalizedResponse):
            return resp
        error = self.execution.error
        if error is not None:
            raise error
        status = self.execution.status
        if status is EventStatus.CANCELLED:
            raise errors.ExecutionError(
                f"Calling {self.id} has no response: it was cancelled before it answered",
                retryable=False,
            )
        raise errors.ExecutionError(
            f"Calling {self.id} has no response (status {status}): invoke it first",
            retryable=False,
        )

    def parse_output(self, response: NormalizedResponse) -> NormalizedResponse:
        """``response`` with its text validated into :attr:`output_type` as ``parsed``.

        An answer that calls tools (a turn of a tool loop, not the final answer) is left as
        it is.

        Raises:
            OutputValidationError: The text is not JSON that fits the model.
        """
        model = self.output_type
        if model is None or response.status != "success":
            return response
        if response.tool_calls:
            return response
        text = response.data if isinstance(response.data, str) else ""
        try:
            value = model.model_validate_json(text)
        except pydantic.ValidationError as exc:
            raise errors.OutputValidationError(
                f"{self.backend.name}: the answer does not validate as {model.__name__}: "
                f"{exc.errors()[0]['msg'] if exc.errors() else exc}",
                text=text,
                validation_message=str(exc),
                provider=self.backend.provider,
                status_code=200,
                cause=exc,
            ) from exc
        return response.model_copy(update={"parsed": value})

    @property
    def usage(self) -> Usage | None:
        """The call's normalized token counts, when the backend reported them."""
        resp = self.execution.response
        return resp.usage if isinstance(resp, NormalizedResponse) else None

    @property
    def cost(self) -> float | None:
        """The call's cost in USD, when its model's price is known."""
        return self.execution.cost

    @property
    def duration(self) -> float | None:
        """Wall seconds of the call (not counting the wait for capacity)."""
        return self.execution.duration

    async def invoke(self) -> None:
        """Nothing to do: a Calling runs once, through the model that made it.

        ``await model.invoke(calling=calling)`` (or ``model.invoke_stream(calling)``) grants
        it capacity, runs its hooks and records its outcome; a Calling that already ran is
        left as it is.

        Raises:
            lionpride.errors.ExecutionError: The Calling has not run: run it through its
                model.
        """
        if self.execution.status is EventStatus.PENDING:
            raise errors.ExecutionError(
                f"Calling {self.id} runs through its model: `await model.invoke(calling=calling)`",
                retryable=False,
            )
