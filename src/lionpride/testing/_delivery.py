"""An answer on its way out: its bytes, and how they are written, misbehaviour included.

:class:`Outgoing` is the answer the FakeProvider settled on. :func:`send` writes it after the
provider's latency and the reply's own delay, or misbehaves as the :class:`Reply` scripts:
hangs up without a response, announces the full length and sends a truncated body, or sends
some pieces of a stream and then stalls. Every wait ends early when the provider stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiohttp import web

from lionpride.testing._plan import Format, Plan, content_type
from lionpride.testing._replies import Reply
from lionpride.testing._wire_formats import error_body, render_plain, render_stream

__all__ = ["Outgoing", "error", "render", "send"]


@dataclass(slots=True)
class Outgoing:
    """A response about to be written: status, headers, the body in pieces, and the tokens
    the provider-side limits charge for it."""

    status: int
    headers: dict[str, str]
    pieces: list[bytes]
    streamed: bool
    tokens: int = 0


def render(plan: Plan) -> Outgoing:
    """A generated reply as plain JSON or SSE events."""
    if plan.sse:
        pieces = render_stream(plan)
        kind = content_type(plan.fmt, stream=True)
        return Outgoing(200, {"content-type": kind}, pieces, streamed=True)
    kind = content_type(plan.fmt, stream=False)
    return Outgoing(200, {"content-type": kind}, [render_plain(plan)], streamed=False)


def error(
    fmt: Format,
    status: int,
    message: str | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
) -> Outgoing:
    """An error in the provider's shape (``param`` and ``code`` go in OpenAI's fields)."""
    headers = {"content-type": content_type(fmt, stream=False, error=True)}
    body = error_body(fmt, status, message, param=param, code=code)
    return Outgoing(status, headers, [body], streamed=False)


async def send(
    request: web.Request,
    outgoing: Outgoing,
    how: Reply,
    *,
    latency: float,
    chunk_delay: float,
    stopping: asyncio.Event,
) -> web.StreamResponse:
    """Write ``outgoing`` with the misbehaviour ``how`` scripts (its ``delay``, ``drop``,
    ``truncate``, ``stall_after`` and ``chunk_delay``; the latter's ``None`` means the
    provider's ``chunk_delay``), after the provider's ``latency``."""
    delay = latency + how.delay
    if delay > 0:
        await _pause(stopping, delay)
    if how.drop:
        _hang_up(request)
        # Writing this to the closed transport fails quietly inside aiohttp.
        return web.Response(status=204)
    truncate, stall_after = how.truncate, how.stall_after
    if truncate is None and stall_after is None and not outgoing.streamed:
        body = b"".join(outgoing.pieces)
        return web.Response(status=outgoing.status, headers=outgoing.headers, body=body)
    response = web.StreamResponse(status=outgoing.status, headers=outgoing.headers)
    pieces = outgoing.pieces
    if truncate is not None:
        response.content_length = sum(map(len, pieces))
        pieces = _cut(pieces, truncate)
    between = chunk_delay if how.chunk_delay is None else how.chunk_delay
    await response.prepare(request)
    for i, piece in enumerate(pieces):
        if i == stall_after:
            break
        if i and between > 0:
            await _pause(stopping, between)
        await response.write(piece)
    if stall_after is not None:
        # Silent until the client hangs up (which cancels the handler) or the provider stops.
        await stopping.wait()
    if truncate is not None or stall_after is not None:
        _hang_up(request)
        return response
    await response.write_eof()
    return response


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep for real, but end early when the provider stops (``stopping`` is set)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stopping.wait()


def _cut(pieces: list[bytes], limit: int) -> list[bytes]:
    """The first ``limit`` bytes of the concatenated pieces, keeping piece boundaries."""
    kept: list[bytes] = []
    left = max(0, limit)
    for piece in pieces:
        if left <= 0:
            break
        kept.append(piece[:left])
        left -= len(piece)
    return kept


def _hang_up(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()
