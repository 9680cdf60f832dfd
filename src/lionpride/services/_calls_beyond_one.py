"""iModel calls that are not one request: a request split into parts, and token counting.

A request longer than the provider's per-request cap (an embeddings input of 10,000 texts) is
split by its backend (``split_request``) into parts, each an ordinary call: its own grant
from the model's limits (so the limits count every request sent), hooks, retries, metrics and
cost. They run concurrently; the first failure cancels the others. The answers are put back
together in order by the backend's ``merge_responses`` into one Calling.

``count_tokens`` asks the provider for a request's exact input-token count on its counting
route (``count_tokens_route``), as one call through the model's limits, retries and
PreInvocation / PostInvocation hooks (a request sent like any other): a
:class:`TokenCountEndpoint` that shares the model's endpoint's session, configuration,
breaker and retry policy. A backend with no counting route gets the local estimate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lionpride import errors
from lionpride.core.event import EventStatus, retryable
from lionpride.services.types.backend import Calling
from lionpride.services.types.endpoint import APICalling, Endpoint
from lionpride.services.types.response import NormalizedResponse, normalized

if TYPE_CHECKING:
    from lionpride.services.imodel import iModel

__all__ = [
    "CountsTokens",
    "SplitsRequests",
    "TokenCountEndpoint",
    "count_tokens",
    "invoke_parts",
]


@runtime_checkable
class SplitsRequests(Protocol):
    """A backend that splits a request over its per-request cap and merges the answers."""

    def split_request(self, request: dict[str, Any]) -> list[dict[str, Any]] | None: ...

    def merge_responses(self, responses: list[NormalizedResponse]) -> NormalizedResponse: ...


@runtime_checkable
class CountsTokens(Protocol):
    """An endpoint with a token-counting route: its path and the body to post there."""

    def count_tokens_route(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]: ...


async def invoke_parts(
    model: iModel,
    callings: list[Calling],
    poll_timeout: float | None,
    priority: float | None,
    raise_on_error: bool,
) -> Calling:
    """Run the Callings of a request's parts, concurrently, and merge the answers in order.

    The returned Calling's ``payload`` is ``{"model": ..., "parts": [each part's payload]}``;
    its ``cost`` is the parts' total. Each part is recorded in the model's metrics as the call
    it is.

    Raises:
        lionpride.errors.LionprideError: The first part's failure (the others cancelled),
            with the whole Calling on ``e.calling``, when ``raise_on_error``.
    """
    backend = model.backend
    assert isinstance(backend, SplitsRequests)
    whole = backend.event_type(
        backend=backend,
        payload={"model": callings[0].payload.get("model"), "parts": [c.payload for c in callings]},
    )
    ex = whole.execution
    start = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for calling in callings:
                group.create_task(
                    model.invoke(calling, poll_timeout=poll_timeout, priority=priority)
                )
    except ExceptionGroup as failed:
        error = failed.exceptions[0]
        ex.status, ex.error, ex.retryable = EventStatus.FAILED, error, retryable(error)
    except asyncio.CancelledError:
        ex.status = EventStatus.CANCELLED
        raise
    else:
        responses = [c.response for c in callings]
        ex.response = backend.merge_responses([r for r in responses if r is not None])
        ex.status = EventStatus.COMPLETED
        costs = [c.cost for c in callings]
        ex.cost = None if None in costs else sum(c for c in costs if c is not None)
    finally:
        ex.duration = time.perf_counter() - start
        ex.attempts = sum(c.execution.attempts for c in callings)
    if ex.error is not None and raise_on_error:
        ex.error.calling = whole  # type: ignore[attr-defined]
        raise ex.error
    return whole


class TokenCountEndpoint(Endpoint):
    """Posts a request to a provider's token-counting route for another endpoint.

    Made by :func:`count_tokens`; it shares the endpoint's transport, so counting
    opens no connection pool of its own and ``aclose`` of the model closes it too.
    """

    #: The endpoint whose requests are counted.
    _counted: Endpoint

    def status_error(
        self, status: int, raw_headers: Mapping[str, str], data: bytes
    ) -> errors.APIStatusError:
        """An error status typed as the counted endpoint types it (the Responses API's 400
        ``model_not_found`` is a ``NotFoundError`` there, and so here)."""
        return self._counted.status_error(status, raw_headers, data)

    def normalize_response(self, raw: Any) -> NormalizedResponse:
        """``data`` is the count: ``input_tokens`` (Anthropic, OpenAI) or ``totalTokens``."""
        count = None
        if isinstance(raw, dict):
            count = raw.get("input_tokens", raw.get("totalTokens"))
        if not isinstance(count, int):
            raise errors.InvalidResponseError(
                f"{self.name}: no token count in {str(raw)[:200]!r}",
                status_code=200,
                body=raw,
                provider=self.provider,
            )
        return normalized(
            data=count,
            tool_calls=[],
            usage=None,
            finish_reason=None,
            metadata={"count": raw},
            raw_response=raw,
        )


async def count_tokens(model: iModel, request: dict[str, Any]) -> int:
    """The input tokens of ``request`` (canonical or native) as its provider counts them.

    Raises:
        ValueError: An invalid request (as for ``invoke``).
        lionpride.errors.LionprideError: The counting call failed.
    """
    backend = model.backend
    payload = backend.create_payload(request)
    if not isinstance(backend, Endpoint) or not isinstance(backend, CountsTokens):
        return backend.estimate_tokens(payload) - _output_budget(backend, payload)
    path, body = backend.count_tokens_route(payload)
    config = backend.config.model_copy(update={"endpoint": path, "request_options": None})
    counter = TokenCountEndpoint(
        config=config,
        circuit_breaker=backend.circuit_breaker,
        retry_config=backend.retry_config,
    )
    object.__setattr__(counter, "_transport", backend._transport)
    object.__setattr__(counter, "_counted", backend)
    calling = APICalling(backend=counter, payload=body, hook_registry=model.hook_registry)
    await model.invoke(calling)
    response = calling.response
    assert response is not None
    count: int = response.data
    return count


def _output_budget(backend: Any, payload: dict[str, Any]) -> int:
    budget = getattr(backend, "output_budget", None)
    return int(budget(payload)) if budget is not None else 0
