"""The FakeProvider's routes beyond chat: Responses, embeddings and token counting.

``route_of`` names the route a path asks for; ``generate`` answers a request on it with a
:class:`RouteReply` (a 400 in the provider's own shape for a request the live API refuses),
which the FakeProvider then puts under its limits and scripting like any other reply.
Embedding vectors are derived from a hash of the text, so equal texts get equal vectors and
tests can compare them. Written from the providers' documentation and ``wire/api/``, sharing
nothing with the client's modules (DESIGN D11).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Literal

from lionpride.testing._plan import Format, _input_chars
from lionpride.testing._responses_wire import (
    ReplyOptions,
    check_responses_request,
    plan_responses,
    render_responses_plain,
    render_responses_stream,
    responses_input_tokens,
)
from lionpride.testing._wire_formats import error_body

__all__ = [
    "EMBED_DIMENSIONS",
    "GEMINI_BATCH_CAP",
    "OPENAI_EMBED_CAP",
    "Route",
    "RouteReply",
    "error_format",
    "generate",
    "route_format",
    "route_of",
]

Route = Literal[
    "responses",
    "responses_input_tokens",
    "openai_embeddings",
    "gemini_embed",
    "gemini_batch_embed",
    "anthropic_count_tokens",
    "gemini_count_tokens",
]

#: Values in a generated vector unless the request asks for a size.
EMBED_DIMENSIONS = 64
#: Inputs one OpenAI embeddings request may carry.
OPENAI_EMBED_CAP = 2048
#: Requests one Gemini ``batchEmbedContents`` may carry.
GEMINI_BATCH_CAP = 100

_FORMAT: dict[Route, Format] = {
    "responses": "openai",
    "responses_input_tokens": "openai",
    "openai_embeddings": "openai",
    "gemini_embed": "gemini",
    "gemini_batch_embed": "gemini",
    "anthropic_count_tokens": "anthropic",
    "gemini_count_tokens": "gemini",
}


@dataclass(slots=True)
class RouteReply:
    """A generated answer: status, content type, body pieces and the tokens it charges."""

    status: int
    content_type: str
    pieces: list[bytes]
    streamed: bool
    tokens: int


#: Path endings and the routes they name.
_ENDINGS: tuple[tuple[str, Route], ...] = (
    ("/responses", "responses"),
    ("/responses/input_tokens", "responses_input_tokens"),
    ("/embeddings", "openai_embeddings"),
    ("/messages/count_tokens", "anthropic_count_tokens"),
    (":embedContent", "gemini_embed"),
    (":batchEmbedContents", "gemini_batch_embed"),
    (":countTokens", "gemini_count_tokens"),
)


def route_of(path: str) -> Route | None:
    """The route a request path (without query) names, or ``None``."""
    return next((route for ending, route in _ENDINGS if path.endswith(ending)), None)


def route_format(route: Route) -> Format:
    """The provider whose error and rate-limit shapes the route answers in."""
    return _FORMAT[route]


def error_format(path: str, headers: dict[str, str]) -> Format:
    """Whose error shape an unknown path gets: told by the path and the auth header."""
    if path.startswith("/v1beta") or ":" in path or "x-goog-api-key" in headers:
        return "gemini"
    if "x-api-key" in headers or "anthropic-version" in headers:
        return "anthropic"
    return "openai"


#: The top-level fields OpenAI's routes take (from the API reference); any other field is
#: refused with the live API's ``unknown_parameter`` 400, so a request the client got wrong
#: fails here as it would there.
_OPENAI_FIELDS: dict[Route, frozenset[str]] = {
    "responses": frozenset(
        {
            "background", "context_management", "conversation", "include", "input",
            "instructions", "max_output_tokens", "max_tool_calls", "metadata", "model",
            "parallel_tool_calls", "personality", "previous_response_id", "prompt",
            "prompt_cache_key", "prompt_cache_retention", "reasoning", "safety_identifier",
            "service_tier", "store", "stream", "stream_options", "temperature", "text",
            "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user",
        }
    ),
    "responses_input_tokens": frozenset(
        {
            "conversation", "input", "instructions", "model", "parallel_tool_calls",
            "personality", "previous_response_id", "reasoning", "text", "tool_choice", "tools",
            "truncation",
        }
    ),
    "openai_embeddings": frozenset({"model", "input", "dimensions", "encoding_format", "user"}),
}  # fmt: skip


def _unknown_parameter(route: Route, body: Any) -> RouteReply | None:
    """OpenAI's 400 for the first field ``route`` does not take, or ``None``."""
    fields = _OPENAI_FIELDS.get(route)
    if fields is None or not isinstance(body, dict):
        return None
    name = next((key for key in body if key not in fields), None)
    if name is None:
        return None
    return _openai_400(f"Unknown parameter: '{name}'.", name, "unknown_parameter")


def _openai_400(message: str, param: str, code: str) -> RouteReply:
    """OpenAI's 400 naming the parameter at fault."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return RouteReply(400, "application/json", [json.dumps({"error": error}).encode()], False, 0)


def generate(route: Route, path: str, body: Any, options: ReplyOptions) -> RouteReply:
    """The generated answer to ``body`` on ``route`` (a 400 if the live API would refuse it)."""
    request = body if isinstance(body, dict) else {}
    fmt = _FORMAT[route]
    unknown = _unknown_parameter(route, body)
    if unknown is not None:
        return unknown
    if route == "responses":
        problem = check_responses_request(body)
        if problem is not None:
            return _refused(fmt, problem)
        plan = plan_responses(request, options)
        tokens = plan.input_tokens + plan.output_tokens
        if request.get("stream") is True:
            return RouteReply(200, "text/event-stream", render_responses_stream(plan), True, tokens)
        return _json(fmt, json.loads(render_responses_plain(plan)), tokens)
    if route == "responses_input_tokens":
        problem = check_responses_request(body)
        if problem is not None:
            return _refused(fmt, problem)
        count = responses_input_tokens(request)
        return _json(fmt, {"object": "response.input_tokens", "input_tokens": count}, 0)
    if route == "openai_embeddings":
        return _openai_embeddings(request)
    if route == "anthropic_count_tokens":
        return _anthropic_count(request)
    if route == "gemini_count_tokens":
        return _gemini_count(request)
    return _gemini_embed(route, path, request)


def _json(fmt: Format, obj: Any, tokens: int) -> RouteReply:
    kind = "application/json; charset=UTF-8" if fmt == "gemini" else "application/json"
    return RouteReply(200, kind, [json.dumps(obj).encode()], False, tokens)


def _refused(fmt: Format, message: str) -> RouteReply:
    kind = "application/json; charset=UTF-8" if fmt == "gemini" else "application/json"
    return RouteReply(400, kind, [error_body(fmt, 400, message)], False, 0)


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def vector_for(text: str, dims: int) -> list[float]:
    """A unit vector of ``dims`` values derived from the text alone (float32-exact)."""
    raw: list[float] = []
    block = 0
    while len(raw) < dims:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        raw += [b / 127.5 - 1.0 for b in digest]
        block += 1
    raw = raw[:dims]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    # Round through float32, as the services store them, so base64 and JSON agree exactly.
    packed = struct.pack(f"<{dims}f", *(v / norm for v in raw))
    return list(struct.unpack(f"<{dims}f", packed))


def _openai_embeddings(request: dict[str, Any]) -> RouteReply:
    model = request.get("model")
    if not isinstance(model, str) or not model:
        return _refused("openai", "You must provide a model parameter.")
    texts = _embedding_inputs(request.get("input"))
    if texts is None:
        return _refused(
            "openai",
            "'input' must be a non-empty string, array of strings, array of tokens or array "
            "of token arrays.",
        )
    if len(texts) > OPENAI_EMBED_CAP:
        return _refused(
            "openai", f"'input' holds {len(texts)} items: at most {OPENAI_EMBED_CAP} allowed."
        )
    dims = request.get("dimensions", EMBED_DIMENSIONS)
    if not isinstance(dims, int) or dims < 1:
        return _refused("openai", f"Invalid 'dimensions': {dims!r}.")
    encoding = request.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        message = f"Invalid value: {encoding!r}. Supported values are: 'float' and 'base64'."
        return _openai_400(message, "encoding_format", "invalid_value")
    b64 = encoding == "base64"
    data = []
    for i, text in enumerate(texts):
        vector = vector_for(text if isinstance(text, str) else json.dumps(text), dims)
        embedding: Any = vector
        if b64:
            embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(_tokens(t) if isinstance(t, str) else len(t) for t in texts)
    obj = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return _json("openai", obj, tokens)


def _embedding_inputs(given: Any) -> list[Any] | None:
    """The inputs of an embeddings request, or ``None`` if malformed: a string is one input,
    and so is a list of token ids; a list of strings, or of token-id lists, is several."""
    if isinstance(given, str):
        return [given]
    if not isinstance(given, list) or not given:
        return None
    if all(map(_token_id, given)):
        return [given]
    if all(isinstance(t, str) for t in given) or all(
        isinstance(t, list) and t and all(map(_token_id, t)) for t in given
    ):
        return given
    return None


def _token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parts_text(content: Any) -> str | None:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return None
    return "".join(str(p.get("text", "")) for p in content["parts"] if isinstance(p, dict))


def _gemini_embed(route: Route, path: str, request: dict[str, Any]) -> RouteReply:
    single = route == "gemini_embed"
    entries = [request] if single else request.get("requests")
    if not isinstance(entries, list) or not entries:
        return _refused("gemini", "* BatchEmbedContentsRequest.requests: must not be empty")
    if len(entries) > GEMINI_BATCH_CAP:
        return _refused(
            "gemini", f"* BatchEmbedContentsRequest.requests: at most {GEMINI_BATCH_CAP} requests"
        )
    embeddings = []
    tokens = 0
    for i, entry in enumerate(entries):
        text = _parts_text(entry.get("content") if isinstance(entry, dict) else None)
        if text is None:
            return _refused("gemini", f"* requests[{i}].content: a content with parts is required")
        dims = entry.get("outputDimensionality", EMBED_DIMENSIONS)
        if not isinstance(dims, int) or dims < 1:
            return _refused("gemini", f"* requests[{i}].outputDimensionality: invalid {dims!r}")
        tokens += _tokens(text)
        embeddings.append({"values": vector_for(text, dims)})
    obj: dict[str, Any] = {"embedding": embeddings[0]} if single else {"embeddings": embeddings}
    return _json("gemini", obj, tokens)


#: The fields Anthropic's ``/v1/messages/count_tokens`` takes: what makes up the prompt.
_ANTHROPIC_COUNTED = frozenset(
    {
        "model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
        "context_management", "output_config", "output_format", "cache_control",
    }
)  # fmt: skip


def _anthropic_count(request: dict[str, Any]) -> RouteReply:
    if not isinstance(request.get("model"), str):
        return _refused("anthropic", "model: Field required")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return _refused("anthropic", "messages: Field required")
    extra = next((key for key in request if key not in _ANTHROPIC_COUNTED), None)
    if extra is not None:  # max_tokens, temperature, stream, ...: generation settings
        return _refused("anthropic", f"{extra}: Extra inputs are not permitted")
    count = math.ceil(_input_chars("anthropic", request) / 4)
    return _json("anthropic", {"input_tokens": count}, 0)


def _gemini_count(request: dict[str, Any]) -> RouteReply:
    contents = request.get("contents")
    inner = request.get("generateContentRequest")
    if contents is None and isinstance(inner, dict):
        contents = inner.get("contents")
    if not isinstance(contents, list):
        return _refused("gemini", "* CountTokensRequest.contents: contents is not specified")
    chars = sum(len(_parts_text(c) or "") for c in contents if isinstance(c, dict))
    count = math.ceil(chars / 4)
    obj = {"totalTokens": count, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": count}]}
    return _json("gemini", obj, 0)
