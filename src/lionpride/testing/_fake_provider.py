"""FakeProvider: a real aiohttp server on loopback that answers like an LLM API.

Every request is recorded, then checked as the live API checks it (a refused one gets the
provider's 400, see :mod:`~lionpride.testing._request_checks`). A request is answered by the
next scripted :class:`Reply` whose path filter matches, or else by a generated reply in the
format its path names (OpenAI chat completions, Anthropic messages, Gemini generateContent),
subject to the provider-side limits.

This module holds the server and the choice of answer; what a test scripts and reads back is
in :mod:`~lionpride.testing._replies`, and how an answer is written (misbehaviour included)
in :mod:`~lionpride.testing._delivery`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Self

from aiohttp import web

from lionpride.core.clock import SYSTEM_CLOCK, Clock
from lionpride.core.resource import AsyncResource
from lionpride.testing._delivery import Outgoing, error, render, send
from lionpride.testing._forced import forced_tool_call, structured_text
from lionpride.testing._limits import ProviderLimits
from lionpride.testing._plan import (
    DEFAULT_SENTENCE,
    Format,
    Plan,
    content_type,
    detect_format,
    make_plan,
)
from lionpride.testing._replies import ReceivedRequest, Reply
from lionpride.testing._request_checks import check_request
from lionpride.testing._responses_wire import ReplyOptions
from lionpride.testing._routes import Route, error_format, generate, route_format, route_of
from lionpride.testing._wire_formats import rate_limit_body

__all__ = ["FakeProvider"]

# Base paths under which each client posts; every name not listed is OpenAI-compatible at /v1.
_BASE_PATHS = {"groq": "/openai/v1", "openrouter": "/api/v1", "gemini": "/v1beta"}
_MAX_REQUEST_BYTES = 64 * 1024 * 1024
#: How a refusal or a generated reply is sent: as it is, after the provider's latency.
_AS_IS = Reply()


class FakeProvider(AsyncResource):
    """A local HTTP server speaking the OpenAI, Anthropic and Gemini wire formats.

    Args:
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.
        limit_requests: Provider-side requests per ``window`` (token bucket), or no limit.
        limit_tokens: Provider-side tokens per ``window``; a generated reply is charged its
            input tokens plus the output tokens it will produce.
        window: Seconds in which a limit fully refills.
        latency: Seconds before every response (scripted replies add their own ``delay``).
        stream_chunks: Pieces a generated reply's text is streamed in.
        chunk_delay: Seconds between streamed pieces.
        reply_text: Text of every generated reply (default: a fixed sentence).
        clock: Time source for limits and arrival times (waits are real ``asyncio`` sleeps).
        jitter: Seconds early a request may arrive and still be admitted, so that a client
            that waits exactly until its request fits is not refused for loopback jitter.
        limit_input_tokens: Provider-side input tokens per ``window`` (Anthropic's separate
            family), or no limit.
        limit_output_tokens: Provider-side output tokens per ``window``, or no limit.
        limit_headers: Send the rate-limit headers; ``False`` enforces the limits silently,
            as many OpenAI-compatible servers do (a 429 still says ``retry-after``).

    Every answer carries a request id, as the services send it: ``request-id`` for
    Anthropic, ``x-request-id`` for the OpenAI-compatible ones (Gemini sends none).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limit_requests: int | None = None,
        limit_tokens: int | None = None,
        window: float = 60.0,
        latency: float = 0.0,
        stream_chunks: int = 8,
        chunk_delay: float = 0.0,
        reply_text: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        jitter: float = 0.05,
        limit_input_tokens: int | None = None,
        limit_output_tokens: int | None = None,
        limit_headers: bool = True,
    ) -> None:
        if stream_chunks < 1:
            raise ValueError(f"stream_chunks must be at least 1, got {stream_chunks!r}")
        self.host = host
        self.latency = latency
        self.stream_chunks = stream_chunks
        self.chunk_delay = chunk_delay
        self.reply_text = reply_text
        self.limit_headers = limit_headers
        self.requests: list[ReceivedRequest] = []
        self.arrivals: list[float] = []
        self.count_429 = 0
        self._requested_port = port
        self._clock = clock
        self._limits = ProviderLimits(
            requests=limit_requests,
            tokens=limit_tokens,
            window=window,
            now=clock.now(),
            jitter=jitter,
            input_tokens=limit_input_tokens,
            output_tokens=limit_output_tokens,
        )
        self._scripts: list[tuple[str | None, Reply]] = []
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping: asyncio.Event | None = None
        self._arrived: asyncio.Condition | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the port and start serving."""
        if self._runner is not None:
            raise RuntimeError("FakeProvider is already running")
        self._stopping = asyncio.Event()
        self._arrived = asyncio.Condition()
        app = web.Application(client_max_size=_MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that hangs up cancels its handler, which is how a
        # stalled stream learns the client is gone without polling the socket.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def aclose(self) -> None:
        """Stop serving; waiting and stalled handlers are released first."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._port = None
        if self._stopping is not None:
            self._stopping.set()
        await runner.cleanup()

    #: :meth:`start`'s counterpart.
    stop = aclose

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._port is None:
            raise RuntimeError("FakeProvider is not running; use `async with` or start()")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def base_url(self, provider: str) -> str:
        """The base URL a client for ``provider`` should use (unknown names: OpenAI at /v1).

        Clients post to ``{base}/chat/completions`` (OpenAI-compatible), ``{base}/messages``
        (``anthropic``) or ``{base}/models/{model}:generateContent`` (``gemini``).
        """
        return self.url + _BASE_PATHS.get(provider.lower(), "/v1")

    # -- scripting and records ---------------------------------------------------------------

    def script(self, *replies: Reply, path: str | None = None) -> None:
        """Queue replies for the next requests whose path (with query) contains ``path``.

        Replies are served first in, first out; once none matches, requests get the
        generated default reply.
        """
        self._scripts.extend((path, reply) for reply in replies)

    @property
    def pending(self) -> int:
        """Scripted replies not yet served."""
        return len(self._scripts)

    async def wait_for_requests(self, count: int = 1) -> None:
        """Wait until ``count`` requests have arrived since the start (or the last
        :meth:`reset`): a test acts on a call in flight (cancels or interrupts it) then,
        without polling :attr:`requests`. Bound the wait with the test's own timeout."""
        arrived = self._arrived
        if self._runner is None or arrived is None:
            raise RuntimeError("FakeProvider is not running; use `async with` or start()")
        async with arrived:
            await arrived.wait_for(lambda: len(self.requests) >= count)

    def reset(self) -> None:
        """Forget scripts, received requests, 429 counts and limit state."""
        self._scripts.clear()
        self.requests.clear()
        self.arrivals.clear()
        self.count_429 = 0
        self._seq = 0
        self._limits.reset(self._clock.now())

    def set_limits(
        self,
        *,
        limit_requests: int | None = None,
        limit_tokens: int | None = None,
        window: float | None = None,
        limit_input_tokens: int | None = None,
        limit_output_tokens: int | None = None,
    ) -> None:
        """Change the provider-side limits now, mid-run (``None``: not limited); the new
        buckets start full. ``window`` defaults to the current one."""
        old = self._limits
        self._limits = ProviderLimits(
            requests=limit_requests,
            tokens=limit_tokens,
            window=old.window if window is None else window,
            now=self._clock.now(),
            jitter=old.jitter,
            input_tokens=limit_input_tokens,
            output_tokens=limit_output_tokens,
        )

    # -- serving -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Record the request, settle its answer and send it."""
        now = self._clock.now()
        body = _parse_body(await request.read())
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(ReceivedRequest(request.method, request.path_qs, headers, body, now))
        self.arrivals.append(now)
        assert self._arrived is not None and self._stopping is not None
        async with self._arrived:
            self._arrived.notify_all()
        outgoing, how = self._answer(request, body, headers, now)
        return await send(
            request,
            outgoing,
            how,
            latency=self.latency,
            chunk_delay=self.chunk_delay,
            stopping=self._stopping,
        )

    def _answer(
        self, request: web.Request, body: Any, headers: dict[str, str], now: float
    ) -> tuple[Outgoing, Reply]:
        """The answer to a request and the reply whose misbehaviour it is sent with: the
        provider's 400 for a request the live API refuses, else the next matching script,
        else the generated reply (each behind the limits where they apply)."""
        fmt = detect_format(request.path)
        route = route_of(request.path)
        # Whose request id the answer carries: the chat formats', else the route's provider's.
        shape = fmt if fmt is not None or route is None else route_format(route)
        rejected = None if fmt is None else check_request(fmt, body, request.path, headers)
        if fmt is not None and rejected is not None:
            outgoing = error(fmt, 400, rejected.message, param=rejected.param, code=rejected.code)
            how = _AS_IS
        elif (reply := self._next_script(request.path_qs)) is None:
            outgoing, how = self._generated(request, fmt, body, now), _AS_IS
        elif reply.limited and (refused := self._refusal(request, fmt, body, now)) is not None:
            outgoing, how = refused, _AS_IS
        else:
            outgoing, how = self._scripted(request, fmt or "openai", body, reply), reply
            if reply.limited:
                outgoing.headers.update(self._limit_headers(fmt or "openai"))
        self._add_request_id(shape, outgoing)
        return outgoing, how

    def _next_script(self, path: str) -> Reply | None:
        for i, (needle, reply) in enumerate(self._scripts):
            if needle is None or needle in path:
                del self._scripts[i]
                return reply
        return None

    def _generated(
        self, request: web.Request, fmt: Format | None, body: Any, now: float
    ) -> Outgoing:
        """The default reply, or a 429 if the provider-side limits refuse it."""
        route = route_of(request.path)
        if route is not None:
            routed = self._routed(route, request, body, Reply())
            if routed.status != 200:
                return routed  # refused as the live API would, before any limit counts it
            model = body.get("model") if isinstance(body, dict) else None
            model = model or request.path.rsplit("/", 1)[-1].split(":", 1)[0]
            return self._limited(route_format(route), str(model), routed.tokens, 0, now, routed)
        if fmt is None:
            message = f"Unknown path {request.path!r}: FakeProvider serves */chat/completions, "
            message += "*/responses, */embeddings, */messages, */messages/count_tokens and "
            message += "*/models/{model}:generateContent, :embedContent, :countTokens"
            return error(
                error_format(request.path, {k.lower(): v for k, v in request.headers.items()}),
                404,
                message,
            )
        plan = self._plan(request, fmt, body, Reply())
        if not self._limits.active:
            return render(plan)
        tokens = plan.input_tokens + plan.output_tokens
        return self._limited(fmt, plan.model, tokens, plan.output_tokens, now, render(plan))

    def _limited(
        self, fmt: Format, model: str, tokens: int, output: int, now: float, outgoing: Outgoing
    ) -> Outgoing:
        """``outgoing`` with the limits' headers if they admit ``tokens`` (``output`` of them
        output tokens) now, else a 429."""
        if not self._limits.active:
            return outgoing
        refused = self._admit(fmt, model, tokens, output, now)
        if refused is not None:
            return refused
        outgoing.headers.update(self._limit_headers(fmt))
        return outgoing

    def _refusal(
        self, request: web.Request, fmt: Format | None, body: Any, now: float
    ) -> Outgoing | None:
        """For a scripted reply that opted into the limits: the 429, or ``None`` (admitted,
        charged as the generated reply would be)."""
        if fmt is None or not self._limits.active:
            return None
        plan = self._plan(request, fmt, body, Reply())
        tokens = plan.input_tokens + plan.output_tokens
        return self._admit(fmt, plan.model, tokens, plan.output_tokens, now)

    def _admit(
        self, fmt: Format, model: str, tokens: int, output: int, now: float
    ) -> Outgoing | None:
        """Charge a reply to the limits; the 429 if they refuse it, else ``None``."""
        limits = self._limits
        admission = limits.admit(tokens, now, output=output)
        if admission.admitted:
            return None
        self.count_429 += 1
        assert admission.kind is not None
        kind = admission.kind
        retry_after = limits.retry_after(admission)
        message = (
            f"Rate limit reached for {model} on {kind.replace('_', ' ')}: limit "
            f"{limits.limits[kind]} per {limits.window:g}s. Please try again in {retry_after}s."
        )
        error = rate_limit_body(fmt, kind, message, retry_after=retry_after)
        headers = self._limit_headers(fmt)
        headers["retry-after"] = str(retry_after)
        headers["content-type"] = content_type(fmt, stream=False, error=True)
        return Outgoing(429, headers, [error], streamed=False)

    def _routed(self, route: Route, request: web.Request, body: Any, reply: Reply) -> Outgoing:
        """A generated answer on one of the routes of :mod:`lionpride.testing._routes`."""
        self._seq += 1
        options = ReplyOptions(
            text=reply.text if reply.text is not None else self.reply_text,
            default_text=self._default_text(),
            tool_calls=reply.tool_calls,
            usage=reply.usage,
            stream_chunks=self.stream_chunks,
            seq=self._seq,
        )
        answer = generate(route, request.path, body, options)
        outgoing = Outgoing(
            answer.status, {"content-type": answer.content_type}, answer.pieces, answer.streamed
        )
        outgoing.tokens = answer.tokens
        return outgoing

    def _limit_headers(self, fmt: Format) -> dict[str, str]:
        return self._limits.headers(fmt) if self.limit_headers else {}

    def _add_request_id(self, fmt: Format | None, outgoing: Outgoing) -> None:
        """Give the answer its request id, unless a scripted reply brought its own (Gemini
        sends none)."""
        if fmt == "gemini":
            return
        name = "request-id" if fmt == "anthropic" else "x-request-id"
        if not any(key.lower() == name for key in outgoing.headers):
            outgoing.headers[name] = f"req_{uuid.uuid4().hex[:24]}"

    def _scripted(self, request: web.Request, fmt: Format, body: Any, reply: Reply) -> Outgoing:
        """Turn a scripted reply into bytes; a ``None`` body is generated for ``fmt``."""
        headers = dict(reply.headers)
        has_type = any(name.lower() == "content-type" for name in headers)
        if reply.chunks is not None:
            pieces = [c.encode() if isinstance(c, str) else c for c in reply.chunks]
            if not has_type:
                headers["content-type"] = "text/event-stream"
            return Outgoing(reply.status, headers, pieces, streamed=True)
        if reply.body is None:
            route = route_of(request.path)
            if reply.status >= 400:
                outgoing = error(route_format(route) if route else fmt, reply.status)
            elif 200 <= reply.status < 300 and route is not None:
                outgoing = self._routed(route, request, body, reply)
            elif 200 <= reply.status < 300:
                outgoing = render(self._plan(request, fmt, body, reply))
            else:
                outgoing = Outgoing(reply.status, {}, [], streamed=False)
            outgoing.status = reply.status
            if has_type:
                outgoing.headers.pop("content-type", None)
            outgoing.headers.update(headers)
            return outgoing
        if isinstance(reply.body, str | bytes):
            data = reply.body.encode() if isinstance(reply.body, str) else reply.body
            kind = "text/event-stream" if _wants_stream(request, body) else "application/json"
        else:
            data = json.dumps(reply.body).encode()
            kind = "application/json"
        if not has_type:
            headers["content-type"] = kind
        return Outgoing(reply.status, headers, [data], streamed=False)

    def _plan(self, request: web.Request, fmt: Format, body: Any, reply: Reply) -> Plan:
        """Settle a generated reply, with the text, tool calls and usage ``reply`` overrides.

        Unless ``reply`` scripts them, a forced tool is called with arguments that fit its
        schema (no text, as a live model answers), and a structured-output request gets JSON
        that fits its schema in place of the provider's default text.
        """
        self._seq += 1
        text, calls = reply.text, reply.tool_calls
        if text is None and calls is None:
            forced = forced_tool_call(fmt, body)
            calls = None if forced is None else [forced]
            if forced is None and self.reply_text is None:
                text = structured_text(fmt, body)
        if text is None:
            text = "" if calls else self._default_text()
        return make_plan(
            fmt,
            path=request.path,
            sse_requested=request.query.get("alt") == "sse",
            body=body,
            text=text,
            tool_calls=calls,
            usage=reply.usage,
            stream_chunks=self.stream_chunks,
            seq=self._seq,
        )

    def _default_text(self) -> str:
        if self.reply_text is not None:
            return self.reply_text
        # Enough words that a stream has `stream_chunks` pieces, the same for plain replies.
        words = DEFAULT_SENTENCE.split()
        repeats = -(-self.stream_chunks // len(words))
        return " ".join([DEFAULT_SENTENCE] * repeats)


def _parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _wants_stream(request: web.Request, body: Any) -> bool:
    if request.path.endswith(":streamGenerateContent"):
        return request.query.get("alt") == "sse"
    return isinstance(body, dict) and body.get("stream") is True
