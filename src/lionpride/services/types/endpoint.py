"""HTTP backends: ``Endpoint``, its ``StreamAssembler`` and ``APICalling``.

An :class:`Endpoint` is the provider contract: what a request becomes on the wire
(``create_payload``, ``request_url``, ``request_body``, ``auth_headers``), what an answer
becomes (``normalize_response``, ``error_message``, ``status_error``, ``stream_assembler``).
It holds an :class:`~lionpride.services.types._transport.HTTPTransport` that moves the bytes
(pooled sessions per event loop, closed by :meth:`Endpoint.aclose`; DESIGN D1) and composes,
once per call: ``create_payload`` → retry[ breaker[ one attempt ] ] → ``normalize_response``.
The retry loop runs once per call (:class:`~lionpride.services.types.resilient.ResilientBackend`)
and makes every attempt; an attempt (:meth:`Endpoint._attempt`, :meth:`Endpoint._start_stream`)
runs once per attempt. A stream is retried until its first chunk reaches the caller; the
rest of its body is read by the same loop (:meth:`LiveStream.next_chunks
<lionpride.services.types._transport.LiveStream.next_chunks>`), never retried.
Failures are translated once, into the tree of :mod:`lionpride.errors`: transport failures
by the transport, error statuses by :meth:`Endpoint.status_error`, answers of the wrong shape
by :meth:`Endpoint._shaped`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Self, TypeVar, Unpack

from lionpride import errors
from lionpride.core.clock import Clock
from lionpride.services.streaming.channel import StreamChunk
from lionpride.services.streaming.sse import SSEEvent
from lionpride.services.types._canonical import plain_request
from lionpride.services.types._endpoint_config import SYSTEM_ENV_VARS, EndpointConfig, env_name
from lionpride.services.types._json_wire import json_dumps
from lionpride.services.types._transport import HTTPTransport, LiveStream
from lionpride.services.types.backend import (
    Calling,
    NormalizedResponse,
    RetryObserver,
    StreamOptions,
)
from lionpride.services.types.resilient import ResilientBackend
from lionpride.services.utilities.adaptive import LimitWatch
from lionpride.services.utilities.header_factory import HeaderFactory
from lionpride.services.utilities.resilience import (
    parse_retry_after,
    rate_limit_is_permanent,
    should_retry_header,
)
from lionpride.services.utilities.token_calculator import TokenCalculator
from lionpride.services.utilities.tokens import estimate_prompt_tokens

__all__ = [
    "SYSTEM_ENV_VARS",
    "APICalling",
    "Endpoint",
    "EndpointConfig",
    "LiveStream",
    "StreamAssembler",
    "env_name",
]

T = TypeVar("T")


class StreamAssembler:
    """Turns a provider's SSE events into chunks and, at the end, one response.

    Providers subclass it: ``feed`` gets every decoded event in order and returns the chunks
    to yield (usually zero or one); ``finish`` returns the assembled response. An error
    found inside the stream is raised from ``feed``.
    """

    def feed(self, event: SSEEvent) -> list[StreamChunk]:
        """Consume one event."""
        raise NotImplementedError

    def finish(self) -> NormalizedResponse:
        """Return the assembled response once the stream ended."""
        raise NotImplementedError

    @property
    def done(self) -> bool:
        """True once the provider signalled the end of the stream."""
        return False


class Endpoint(ResilientBackend):
    """An HTTP API behind one pooled aiohttp session per event loop.

    Args:
        config: An :class:`EndpointConfig` or a dict of its fields.
        circuit_breaker: Fails fast while the provider is down (inside the retry loop).
        retry_config: Retry policy; the default retries transient failures twice,
            ``None`` turns retries off.
        **kwargs: Config fields, or default request parameters (``model=...``).
    """

    # Runtime state lives in plain objects in the instance dict: pydantic private
    # attributes cost ~1 µs per read, and the send path reads them several times per call.
    _transport: HTTPTransport
    _memo: _Memo

    def model_post_init(self, context: Any, /) -> None:
        """Attach the transport and the caches; never serialized."""
        object.__setattr__(self, "_transport", HTTPTransport())
        object.__setattr__(self, "_memo", _Memo())

    @property
    def event_type(self) -> type[Calling]:
        """Endpoints run as :class:`APICalling`."""
        return APICalling

    @property
    def clock(self) -> Clock:
        """The transport's clock: of deadlines, timeouts and retry waits."""
        return self._transport.clock

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
        defaults = self.config.kwargs
        merged = {**defaults, **request} if defaults else request
        if "tools" in merged or "response_format" in merged:
            merged = plain_request(merged)
        return self._validated(self.translate_request(merged))

    def translate_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The provider's own request for a canonical one (providers override).

        The default sends the request as it is. A request already in the provider's own
        format passes through unchanged: the shape decides, nothing is translated twice.
        Runs once per call, inside :meth:`create_payload`.
        """
        return request

    def estimate_tokens(self, payload: dict[str, Any]) -> int:
        """Prompt estimate plus the output budget: what a token bucket reserves."""
        count = self._memo.count_text
        if count is _UNRESOLVED:
            # Exact counts when tiktoken and its cached encoding are there; else None, the
            # character heuristic. Resolved once: loading an encoding is not free.
            calculator = TokenCalculator.offline()
            count = self._memo.count_text = calculator.count_text if calculator else None
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
        memo = self._memo
        if memo.url is None or memo.url_of is not self.config:
            memo.url, memo.url_of = self.config.full_url, self.config
        return memo.url

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
        self._transport.watch = watch

    def auth_headers(self) -> dict[str, str]:
        """Content type, credential and default headers (cached after first use)."""
        memo = self._memo
        if memo.headers is None or memo.headers_of is not self.config:
            cfg = self.config
            auth = cfg.auth_type if cfg.sends_key else "none"
            secret = cfg.secret() if auth != "none" else None
            if auth != "none" and secret is None:
                hint = cfg.api_key_env or env_name(cfg.provider, "API_KEY")
                raise errors.ConfigurationError(
                    f"no API key for {cfg.name}: set {hint} or pass api_key=..."
                )
            memo.headers = HeaderFactory.get_header(
                auth, cfg.content_type, secret, cfg.default_headers
            )
            memo.headers_of = cfg
        return memo.headers

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

    def status_error(
        self, status: int, raw_headers: Mapping[str, str], data: bytes
    ) -> errors.APIStatusError:
        """The typed error of an error status (providers override to type their own codes).

        Runs once per failed attempt; the transport reports the answer to the limit watch.
        """
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
        return errors.error_for_status(
            status,
            self.error_message(body, text),
            headers=headers,
            body=body,
            provider=self.provider,
            retry_after=parse_retry_after(headers, body),
            retryable=retryable,
        )

    # -- calls and streams ---------------------------------------------------------------

    async def call(
        self,
        request: dict[str, Any],
        *,
        extra_headers: dict[str, str] | None = None,
        timeout: float | None = None,
        on_retry: RetryObserver | None = None,
    ) -> NormalizedResponse:
        """Send an already-validated payload and normalize the answer. Runs once per call.

        The :class:`~lionpride.services.types.backend.CallOptions` are spelled out here, not
        taken as ``**options``: a dict per call costs ~0.2 µs on the hot path.
        """
        deadline = self._deadline(timeout)
        raw = await self._resilient(
            self._attempt,
            (request, extra_headers, deadline, self._transport.closes),
            deadline,
            on_retry,
        )
        # A body of the wrong shape is raised as a typed error.
        return self._shaped(self.normalize_response, raw)

    def _attempt(
        self,
        payload: dict[str, Any],
        extra_headers: dict[str, str] | None,
        deadline: float,
        opened: int,
    ) -> Awaitable[Any]:
        """One attempt of a call: the request sent, its JSON answer. Once per attempt.

        ``opened``: the count of ``aclose`` calls when the call began (see
        :meth:`HTTPTransport.send <lionpride.services.types._transport.HTTPTransport.send>`).
        Not a coroutine: the retry loop awaits the transport itself, one frame fewer on every
        resume of the request.
        """
        body = json_dumps(self.request_body(payload))
        return self._transport.send(
            self, self.request_url(payload), body, self._headers(extra_headers), deadline, opened
        )

    def _headers(self, extra_headers: dict[str, str] | None) -> dict[str, str]:
        """An attempt's headers: :meth:`auth_headers` and the call's own."""
        headers = self.auth_headers()
        return {**headers, **extra_headers} if extra_headers else headers

    async def stream(
        self, request: dict[str, Any], **options: Unpack[StreamOptions]
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
        timeout = options.get("timeout")
        deadline = self._deadline(timeout)
        idle = options.get("idle_timeout") or timeout or self.config.timeout
        live = await self._resilient(
            self._start_stream,
            (request, options.get("extra_headers"), deadline, idle, self._transport.closes),
            deadline,
            options.get("on_retry"),
        )
        index = 0
        try:
            chunks = live.first
            while chunks:
                for chunk in chunks:
                    chunk.index = index
                    index += 1
                    yield chunk
                chunks = await live.next_chunks()
            response = live.response
            if response is None:
                response = self._shaped(live.assembler.finish)
        finally:
            live.close()
        yield StreamChunk(index=index, is_final=True, response=response)

    async def _start_stream(
        self,
        payload: dict[str, Any],
        extra_headers: dict[str, str] | None,
        deadline: float,
        idle: float,
        opened: int,
    ) -> LiveStream:
        """One attempt at a stream: open it and read it up to its first chunk (or its end).

        Runs once per attempt. Nothing has reached the caller yet, so every failure here may
        be retried: a reset, an error event, a body that ends before any content, or no
        content for ``idle`` seconds or until the call's deadline, whichever comes first. A
        failed attempt's response is closed before its error leaves. ``opened``: as for
        :meth:`_attempt`.
        """
        assembler = self.stream_assembler(payload)  # fresh: a failed attempt fed its own
        body = json_dumps(self.request_body(payload, stream=True))
        url = self.request_url(payload, stream=True)
        transport = self._transport
        resp = await transport.open(self, url, body, self._headers(extra_headers), deadline, opened)
        wait = max(0.0, min(idle, deadline - float(transport.clock.now())))
        live = LiveStream(transport, resp, assembler, self._shaped, self.name, opened, idle, wait)
        try:
            live.first = await live.next_chunks()
            if not live.first:
                # Ended before any content: a stream cut short fails here, where it is retried.
                live.response = self._shaped(assembler.finish)
        except BaseException:
            live.close()
            raise
        return live

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

    # -- lifetime ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the pooled sessions; the next call opens a new one.

        Close a model on the event loop it worked on (``async with iModel(...)`` does): the
        sessions of other loops are closed on their loops, or, where a loop has already
        ended, by closing their sockets directly.
        """
        await self._transport.aclose()

    def __copy__(self) -> Self:
        # A copy (``model_copy``) gets its own sessions and caches: sharing them would send
        # the original's key with the copy's config, and close one's session with the other.
        copied = super().__copy__()
        object.__setattr__(copied, "_transport", self._transport.fresh())
        object.__setattr__(copied, "_memo", self._memo.fresh())
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        memo = {} if memo is None else memo
        # Copied as fresh state, not field by field.
        memo[id(self._transport)] = self._transport.fresh()
        memo[id(self._memo)] = self._memo.fresh()
        return super().__deepcopy__(memo)

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class APICalling(Calling):
    """A call of an :class:`Endpoint`."""


#: ``_Memo.count_text`` before the token counter was looked for.
_UNRESOLVED: Any = object()


class _Memo:
    """An endpoint's caches of what its config implies, each with the config it was made from.

    Attributes:
        headers: Auth and default headers, and ``headers_of`` the config they were made from.
        url: ``config.full_url``, and ``url_of`` the config it was read from.
        count_text: The text token counter (tiktoken when available offline), once resolved.
    """

    __slots__ = ("count_text", "headers", "headers_of", "url", "url_of")

    def __init__(self, count_text: Any = _UNRESOLVED) -> None:
        self.headers: dict[str, str] | None = None
        self.headers_of: EndpointConfig | None = None
        self.url: str | None = None
        self.url_of: EndpointConfig | None = None
        self.count_text = count_text

    def fresh(self) -> _Memo:
        """The caches of a copy: empty but for the token counter (no config in it)."""
        return _Memo(self.count_text)
