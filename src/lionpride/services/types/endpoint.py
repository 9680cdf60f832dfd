"""HTTP backends: ``EndpointConfig``, ``Endpoint`` and ``APICalling``.

One pooled ``aiohttp.ClientSession`` per Endpoint, created lazily on the running loop and
closed by :meth:`Endpoint.aclose` (DESIGN D1). A call runs, once per call:
``create_payload`` (plain tools and formats, ``translate_request``, validation) →
retry[ breaker[ one HTTP attempt ] ] → ``normalize_response``.
Failures are translated once, into the tree of :mod:`lionpride.errors`: in
:meth:`Endpoint._attempt` for a call, in :meth:`Endpoint._open_stream` and
:mod:`~lionpride.services.types._endpoint_stream` for a stream (whose attempt, retried until
its first chunk, lives there).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any, ClassVar, Self, TypeVar

import aiohttp
from pydantic import (
    ConfigDict,
    ValidationError,
    field_serializer,
)

from lionpride import errors
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.streaming.sse import SSEEvent
from lionpride.services.types._canonical import plain_request
from lionpride.services.types._endpoint_config import SYSTEM_ENV_VARS, EndpointConfig, env_name
from lionpride.services.types._endpoint_stream import (
    StreamAssembler,
    closed_during,
    connection_error,
    read_error,
    start_stream,
)
from lionpride.services.types._http_runtime import UNRESOLVED, Process, Runtime
from lionpride.services.types._json_wire import json_dumps, json_loads
from lionpride.services.types.backend import (
    Calling,
    NormalizedResponse,
    RetryObserver,
    ServiceBackend,
)
from lionpride.services.types.request import RequestModel
from lionpride.services.utilities.adaptive import NO_MARK, LimitWatch, Mark
from lionpride.services.utilities.header_factory import HeaderFactory
from lionpride.services.utilities.loops import runs_here
from lionpride.services.utilities.resilience import (
    CircuitBreaker,
    RetryConfig,
    parse_retry_after,
    rate_limit_is_permanent,
    retry_with_backoff,
    should_retry_header,
)
from lionpride.services.utilities.token_calculator import TokenCalculator
from lionpride.services.utilities.tokens import estimate_prompt_tokens

__all__ = [
    "SYSTEM_ENV_VARS",
    "APICalling",
    "Endpoint",
    "EndpointConfig",
    "StreamAssembler",
]

T = TypeVar("T")


class Endpoint(ServiceBackend):
    """An HTTP API behind one pooled aiohttp session.

    Args:
        config: An :class:`EndpointConfig` or a dict of its fields.
        circuit_breaker: Fails fast while the provider is down (inside the retry loop).
        retry_config: Retry policy; the default retries transient failures twice,
            ``None`` turns retries off.
        **kwargs: Config fields, or default request parameters (``model=...``).
    """

    model_config = ConfigDict(extra="forbid")

    config: EndpointConfig
    circuit_breaker: CircuitBreaker | None = None
    retry_config: RetryConfig | None = None

    # Runtime state lives in a plain object in the instance dict: pydantic private
    # attributes cost ~1 µs per read, and the send path reads them several times per call.
    _rt: Runtime

    #: Sentinel default for ``retry_config``: SDK-like retries (D7).
    DEFAULT_RETRY: ClassVar[object] = object()
    #: Builds the config dict from keyword arguments when no ``config`` is given
    #: (provider subclasses set their ``create_*_config`` factory).
    config_factory: ClassVar[Callable[..., dict[str, Any]] | None] = None

    def __init__(
        self,
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
        cfg = self._build_config(config, kwargs)
        if retry_config is Endpoint.DEFAULT_RETRY:
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

    def model_post_init(self, context: Any, /) -> None:
        """Attach the runtime state (session, cached headers, clock); never serialized."""
        object.__setattr__(self, "_rt", Runtime())

    @classmethod
    def _build_config(cls, config: Any, kwargs: dict[str, Any]) -> EndpointConfig:
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

    @field_serializer("circuit_breaker")
    def _ser_breaker(self, breaker: CircuitBreaker | None) -> dict[str, Any] | None:
        return breaker.to_dict() if breaker is not None else None

    @field_serializer("retry_config")
    def _ser_retry(self, retry: RetryConfig | None) -> dict[str, Any] | None:
        return retry.to_dict() if retry is not None else None

    @property
    def event_type(self) -> type[Calling]:
        """Endpoints run as :class:`APICalling`."""
        return APICalling

    def to_dict(self, mode: Any = "python", **dump_kw: Any) -> dict[str, Any]:
        """Dump as :meth:`Element.to_dict` does, with the request schema kept by name."""
        from lionpride.services._serialization import request_schema_name

        data = super().to_dict(mode, **dump_kw)
        data["config"]["request_options"] = request_schema_name(self.config.request_options)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kw: Any) -> Endpoint:
        """Rebuild an endpoint from :meth:`to_dict` output (the request schema found again
        among the library's; keys are read from the environment again, never from the dict).

        Raises:
            ValueError: A malformed dict, an unknown class or request schema.
        """
        from lionpride.services._serialization import load_backend

        if kw:
            raise errors.ValidationError(
                f"Endpoint.from_dict takes no extra arguments, got {sorted(kw)}"
            )
        return load_backend(data)

    # -- request -------------------------------------------------------------------------

    def create_payload(self, request: dict[str, Any]) -> dict[str, Any]:
        """Merge config defaults with ``request``, translate it, validate it.

        ``tools`` given as Tool objects or functions and a pydantic ``response_format``
        become plain OpenAI dicts first (for every HTTP endpoint alike), then
        :meth:`translate_request` turns a canonical request into the provider's own. Returns
        the validated model's dump, which is exactly what is sent.

        Raises:
            lionpride.errors.ValidationError: Unknown parameters (named, with the valid ones),
                parameters the provider has no equivalent for, or invalid values (also a
                ``ValueError``).
        """
        options = self.config.request_options
        if options is None:
            raise errors.ValidationError(f"Endpoint {self.name} must define request_options")
        defaults = self.config.kwargs
        merged = {**defaults, **request} if defaults else request
        if "tools" in merged or "response_format" in merged:
            merged = plain_request(merged)
        merged = self.translate_request(merged)
        fields = options.__pydantic_fields__
        if not fields.keys() >= merged.keys():
            unknown = [k for k in merged if k not in fields]
            if not self.config.drop_unknown:
                raise errors.ValidationError(
                    f"unknown parameter(s) for {self.name}: {', '.join(map(repr, unknown))}; "
                    f"valid: {', '.join(sorted(fields))}; a field newer than this library "
                    "goes in extra_body={...}"
                )
            merged = {k: v for k, v in merged.items() if k in fields}
        try:
            model = options.__pydantic_validator__.validate_python(merged)
        except ValidationError as exc:
            raise errors.ValidationError(
                f"invalid request for {self.name}: {_short(exc)}", cause=exc
            ) from exc
        if isinstance(model, RequestModel):
            return model.to_payload()
        dump: dict[str, Any] = model.model_dump(exclude_none=True, by_alias=True)
        return dump

    def translate_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The provider's own request for a canonical one (providers override).

        The default sends the request as it is. A request already in the provider's own
        format passes through unchanged: the shape decides, nothing is translated twice.
        Runs once per call, inside :meth:`create_payload`.
        """
        return request

    def estimate_tokens(self, payload: dict[str, Any]) -> int:
        """Prompt estimate plus the output budget: what a token bucket reserves."""
        count = self._rt.count_text
        if count is UNRESOLVED:
            # Exact counts when tiktoken and its cached encoding are there; else None, the
            # character heuristic. Resolved once: loading an encoding is not free.
            calculator = TokenCalculator.offline()
            count = self._rt.count_text = calculator.count_text if calculator else None
        return estimate_prompt_tokens(payload, count) + self.output_budget(payload)

    def output_budget(self, payload: dict[str, Any]) -> int:
        """The requested output limit (``max_tokens``...), or the configured default."""
        if "max_tokens" in payload or "max_completion_tokens" in payload:
            out = payload.get("max_tokens") or payload.get("max_completion_tokens")
            if isinstance(out, int):
                return out
        return self.config.default_output_tokens

    def request_url(self, payload: dict[str, Any], *, stream: bool = False) -> str:
        """The URL for this payload (Gemini overrides: the model is in the path)."""
        rt = self._rt
        if rt.url is None or rt.url_of is not self.config:
            rt.url, rt.url_of = self.config.full_url, self.config
        return rt.url

    def request_body(self, payload: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
        """The JSON body: ``extra_body`` merged in, ``stream`` set for SSE providers."""
        extra = payload.get("extra_body")
        if extra is None and not stream:
            return payload
        body = {k: v for k, v in payload.items() if k != "extra_body"}
        if extra:
            body.update(extra)
        if stream:
            body["stream"] = True
        return body

    def watch_limits(self, watch: LimitWatch | None) -> None:
        """Tell ``watch`` of every HTTP attempt and its answer (``None`` stops telling);
        ``iModel`` passes its learned limits (:class:`AdaptiveCapacity
        <lionpride.services.utilities.adaptive.AdaptiveCapacity>`)."""
        self._rt.watch = watch

    def auth_headers(self) -> dict[str, str]:
        """Content type, credential and default headers (cached after first use)."""
        rt = self._rt
        if rt.headers is None or rt.headers_of is not self.config:
            cfg = self.config
            auth = cfg.auth_type if cfg.sends_key else "none"
            secret = cfg.secret() if auth != "none" else None
            if auth != "none" and secret is None:
                hint = cfg.api_key_env or env_name(cfg.provider, "API_KEY")
                raise errors.ConfigurationError(
                    f"no API key for {cfg.name}: set {hint} or pass api_key=..."
                )
            rt.headers = HeaderFactory.get_header(
                auth, cfg.content_type, secret, cfg.default_headers
            )
            rt.headers_of = cfg
        return rt.headers

    # -- response ------------------------------------------------------------------------

    def normalize_response(self, raw: Any) -> NormalizedResponse:
        """Map a provider body to :class:`NormalizedResponse` (providers override)."""
        return NormalizedResponse(data=raw, raw_response=raw)

    def error_message(self, body: Any, text: str) -> str:
        """The provider's own error message from an error body."""
        if isinstance(body, dict):
            err = body.get("error", body)
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                return str(err["message"])
            if isinstance(err, str):
                return err
            if isinstance(body.get("message"), str):
                return str(body["message"])
        return text.strip()[:500] or "empty error body"

    def stream_assembler(self, payload: dict[str, Any]) -> StreamAssembler:
        """A fresh assembler for one stream (providers override)."""
        raise NotImplementedError(f"{type(self).__name__} does not support streaming")

    # -- transport -----------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        current = self._rt.current  # one read: session, loop and pid belong together
        if (
            current is not None
            and current.pid == Process.pid
            and runs_here(current.loop)
            and not current.session.closed
        ):
            return current.session  # the loop running here is the one used last (usual)
        return self._rt.switch(self.config.client_kwargs)

    async def aclose(self) -> None:
        """Close the pooled sessions; the next call opens a new one.

        Close a model on the event loop it worked on (``async with iModel(...)`` does): the
        sessions of other loops are closed on their loops, or, where a loop has already
        ended, by closing their sockets directly.
        """
        await self._rt.aclose()

    def __copy__(self) -> Self:
        # A copy (``model_copy``) gets its own sessions and caches: sharing them would send
        # the original's key with the copy's config, and close one's session with the other.
        copied = super().__copy__()
        object.__setattr__(copied, "_rt", self._rt.fresh())
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        memo = {} if memo is None else memo
        memo[id(self._rt)] = self._rt.fresh()  # copied as a fresh state, not field by field
        return super().__deepcopy__(memo)

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _deadline(self, timeout: float | None) -> float:
        return float(self._rt.clock.now()) + (timeout or self.config.timeout)

    async def _resilient(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        deadline: float,
        on_retry: RetryObserver | None,
    ) -> T:
        """Run ``fn`` once per attempt: retry outside, breaker inside (every attempt counts)."""
        opened = self._rt.closes
        try:
            return await self._first_attempt(fn, args)
        except Exception as exc:
            return await self._retry(exc, fn, args, deadline, on_retry, opened)

    def _first_attempt(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]
    ) -> Awaitable[T]:
        # Not a coroutine: the attempt is awaited by the caller, one frame fewer on every
        # resume of the common, successful path.
        breaker = self.circuit_breaker
        return fn(*args) if breaker is None else breaker.execute(fn, *args)

    async def _retry(
        self,
        error: Exception,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        deadline: float,
        on_retry: RetryObserver | None,
        opened: int,
    ) -> T:
        """After a failed first attempt: retry per ``retry_config``, or re-raise ``error``.

        ``opened`` is the count of ``aclose`` calls when the call began: a call whose
        endpoint was closed under it is not retried (a retry would open a new session that
        nothing closes) and fails with ``ExecutionError``.
        """
        rt = self._rt
        if rt.closes != opened:
            raise closed_during(self.name, error)
        retry = self.retry_config
        if retry is None or retry.max_retries == 0:
            raise error
        once: Callable[..., Awaitable[T]] = (
            fn if self.circuit_breaker is None else partial(self.circuit_breaker.execute, fn)
        )

        def attempt(*attempt_args: Any) -> Awaitable[T]:
            if rt.closes != opened:
                raise closed_during(self.name, None)
            return once(*attempt_args)

        # The deadline was read on the runtime clock, so the waits must be measured on it too.
        return await retry_with_backoff(
            attempt,
            args=args,
            config=retry,
            deadline=deadline,
            clock=self._rt.clock,
            on_retry=on_retry,
            first_error=error,
        )

    async def call(
        self,
        request: dict[str, Any],
        *,
        extra_headers: dict[str, str] | None = None,
        timeout: float | None = None,
        on_retry: RetryObserver | None = None,
    ) -> NormalizedResponse:
        """Send an already-validated payload and normalize the answer. Runs once per call."""
        deadline = self._deadline(timeout)
        args = (request, extra_headers, deadline)
        opened = self._rt.closes
        try:
            raw = await self._first_attempt(self._attempt, args)
        except Exception as exc:
            raw = await self._retry(exc, self._attempt, args, deadline, on_retry, opened)
        # A body of the wrong shape is raised as a typed error.
        return self._shaped(self.normalize_response, raw)

    def _shaped(self, parse: Callable[..., T], *args: Any) -> T:
        """Run a parser of provider data; data of the wrong shape (a missing key, a list
        where an object belongs) becomes ``InvalidResponseError`` instead of escaping as a
        ``KeyError`` or ``TypeError``."""
        try:
            return parse(*args)
        except errors.LionprideError:
            raise
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            raise errors.InvalidResponseError(
                f"{self.name}: response is not in the documented shape ({exc!r})",
                status_code=200,
                body=args[0] if args else None,
                provider=self.provider,
            ) from exc

    def _timeout(self, deadline: float) -> aiohttp.ClientTimeout:
        rt = self._rt
        remaining = deadline - float(rt.clock.now())
        if remaining <= 0:
            raise errors.TimeoutError(f"{self.name}: deadline passed before the request was sent")
        last = rt.timeout
        if last is not None and 0.0 <= remaining - last.total < _SAME_TIMEOUT:  # type: ignore[operator]
            # Calls with as much time left share one object (first attempts, mostly); a
            # shared total is never more than the time left, at most 1 ms less.
            return last
        rt.timeout = aiohttp.ClientTimeout(
            total=remaining, connect=min(self.config.connect_timeout, remaining)
        )
        return rt.timeout

    async def _attempt(
        self, payload: dict[str, Any], extra_headers: dict[str, str] | None, deadline: float
    ) -> Any:
        """One HTTP attempt: POST, read, decode; failures translated to typed errors."""
        headers = self.auth_headers()
        if extra_headers:
            headers = {**headers, **extra_headers}
        body = json_dumps(self.request_body(payload))
        url = self.request_url(payload)
        timeout = self._timeout(deadline)
        watch = self._rt.watch
        mark = watch.sent() if watch is not None else NO_MARK
        try:
            async with self._get_session().request(
                self.config.method, url, data=body, headers=headers, timeout=timeout
            ) as resp:
                ok = 200 <= resp.status < 300
                if ok and watch is not None:
                    watch.answered(resp.headers, mark, False)
                data = await resp.read()
                if not ok:
                    raise self._status_error(resp.status, resp.headers, data, watch, mark)
        except errors.LionprideError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if watch is not None:
                watch.answered(_NO_HEADERS, mark, None)  # the first call may not hold the rest
            if not isinstance(exc, TimeoutError):
                raise connection_error(self.name, exc) from exc
            raise errors.TimeoutError(
                f"{self.name}: no complete response within {timeout.total:.3g}s"
            ) from exc
        return self._decode(data)

    def _decode(self, data: bytes) -> Any:
        if not data:
            raise errors.InvalidResponseError(
                f"{self.name}: empty response body", status_code=200, provider=self.provider
            )
        try:
            return json_loads(data)
        except ValueError as exc:
            raise errors.InvalidResponseError(
                f"{self.name}: response body is not JSON: {data[:200]!r}",
                status_code=200,
                body=data[:_SHOWN_BODY].decode("utf-8", "replace"),
                provider=self.provider,
            ) from exc

    def _status_error(
        self,
        status: int,
        raw_headers: Mapping[str, str],
        data: bytes,
        watch: LimitWatch | None = None,
        mark: Mark = NO_MARK,
    ) -> errors.APIStatusError:
        """The typed error of an error status, reported to ``watch`` (with the attempt's
        ``mark``) as a 429 that a wait cures or as an answer that says nothing of the rate."""
        headers = {k.lower(): v for k, v in raw_headers.items()}
        text = data.decode("utf-8", "replace")
        body: Any
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        retryable = should_retry_header(headers)
        if retryable is None and status == 429 and rate_limit_is_permanent(body):
            retryable = False  # a spent quota or an oversized request: no wait helps
        error = errors.error_for_status(
            status,
            self.error_message(body, text),
            headers=headers,
            body=body,
            provider=self.provider,
            retry_after=parse_retry_after(headers, body),
            retryable=retryable,
        )
        if watch is not None:
            throttled = isinstance(error, errors.RateLimitError) and error.retryable
            watch.answered(headers, mark, True if throttled else None)
        return error

    # -- streaming -----------------------------------------------------------------------

    async def _open_stream(
        self, payload: dict[str, Any], extra_headers: dict[str, str] | None, deadline: float
    ) -> aiohttp.ClientResponse:
        """Connect and check the status and content type; the events are read by the caller.

        An error status, or a body that is not an event stream, is read (within the same
        deadline: a server may send the headers and stall) and raised as a typed error.
        """
        headers = self.auth_headers()
        if extra_headers:
            headers = {**headers, **extra_headers}
        body = json_dumps(self.request_body(payload, stream=True))
        url = self.request_url(payload, stream=True)
        remaining = self._timeout(deadline)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=remaining.connect, sock_connect=remaining.connect
        )
        watch = self._rt.watch
        mark = watch.sent() if watch is not None else NO_MARK
        try:
            # asyncio.timeout, not wait_for: no extra task, and (on 3.11) no lost cancellation
            # when the response lands as the caller is cancelled.
            async with asyncio.timeout(remaining.total) as scope:
                resp = await self._get_session().request(
                    self.config.method, url, data=body, headers=headers, timeout=timeout
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if watch is not None:
                watch.answered(_NO_HEADERS, mark, None)
            if not isinstance(exc, TimeoutError):
                raise connection_error(self.name, exc) from exc
            raise errors.TimeoutError(f"{self.name}: stream did not start in time") from exc
        ok = 200 <= resp.status < 300
        if ok and resp.content_type not in _NOT_EVENT_STREAMS:
            if watch is not None:
                watch.answered(resp.headers, mark, False)
            return resp
        try:
            async with asyncio.timeout_at(scope.when()):
                data = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            data = b""  # the status (or the content type) alone still says what went wrong
        finally:
            resp.release()
        if not ok:
            raise self._status_error(resp.status, resp.headers, data, watch, mark)
        # A page or a whole JSON body where events were asked for (a proxy's login page, a
        # server that ignores ``stream``): read as events, it would end empty and pass for a
        # stream cut short.
        raise errors.InvalidResponseError(
            f"{self.name}: expected an event stream, got {resp.content_type}: {data[:200]!r}",
            status_code=resp.status,
            body=data[:_SHOWN_BODY].decode("utf-8", "replace"),
            provider=self.provider,
        )

    async def stream(
        self,
        request: dict[str, Any],
        *,
        extra_headers: dict[str, str] | None = None,
        timeout: float | None = None,
        on_retry: RetryObserver | None = None,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[StreamChunk]:
        """Yield decoded chunks; the last is final and carries the assembled response.

        Runs once per call. Until its first chunk reaches the caller, a stream is retried
        like ``call`` (same policy, breaker and deadline): a failure to open, and also a
        reset, a retryable error event, an empty body or silence before any content. Once a
        chunk was yielded, a failure is raised, never retried. ``idle_timeout`` (default:
        the call's timeout) bounds the time without content, in each attempt: keep-alive
        comments and pings do not count, so a proxy that keeps a dead stream open with them
        cannot hold it forever, while the caller's own time between chunks is not counted
        either. The first chunk must also come within the call's timeout. Leaving the loop
        early closes the response.
        """
        deadline = self._deadline(timeout)
        idle = idle_timeout or timeout or self.config.timeout
        live = await self._resilient(
            start_stream, (self, request, extra_headers, deadline, idle), deadline, on_retry
        )
        resp, assembler, decoder = live.resp, live.assembler, live.decoder
        index = 0
        try:
            response = live.response
            if response is None:
                loop = asyncio.get_running_loop()
                reader = resp.content
                quiet_until, counted = 0.0, 0
                chunks: Iterable[StreamChunk] = live.first
                events: Iterable[SSEEvent] = live.pending  # the rest of the first chunk's piece
                while True:
                    for chunk in chunks:
                        chunk.index = index
                        index += 1
                        yield chunk
                    for event in events:
                        for chunk in self._shaped(assembler.feed, event):
                            chunk.index = index
                            index += 1
                            yield chunk
                    if assembler.done:
                        break
                    if index != counted:  # content came: the silence starts again from here
                        counted, quiet_until = index, loop.time() + idle
                    try:
                        async with asyncio.timeout_at(quiet_until):
                            data = await reader.readany()
                    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                        raise read_error(self, exc, live.opened, idle) from exc
                    if not data:
                        decoder.flush()
                        break
                    chunks, events = (), decoder.feed(data)
                response = self._shaped(assembler.finish)
        finally:
            self._rt.streams.pop(resp, None)
            resp.close()
        yield StreamChunk(index=index, is_final=True, response=response)


#: Seconds by which an attempt's time left may exceed a shared ``ClientTimeout``'s total.
_SAME_TIMEOUT = 1e-3

#: Content types that are surely not an event stream. Others (missing, ``text/plain``...) are
#: read as events: servers label their streams loosely.
_NOT_EVENT_STREAMS = frozenset({"application/json", "text/html"})

#: The headers of an attempt that got no answer.
_NO_HEADERS: Mapping[str, str] = {}

#: Bytes of a body that could not be read as a response (not JSON, not events) kept on the error.
_SHOWN_BODY = 2000


class APICalling(Calling):
    """A call of an :class:`Endpoint`."""


def _short(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "request"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
