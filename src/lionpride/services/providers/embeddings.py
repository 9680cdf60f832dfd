"""Embeddings: OpenAI ``POST /embeddings`` (and compatible servers) and Gemini
``models/{model}:batchEmbedContents`` / ``:embedContent``.

One request for both: ``invoke(model=..., input=[texts])`` gives ``response.data``, a list of
float vectors in input order, and ``response.usage.input_tokens`` where the provider reports
it. ``dimensions`` passes through (Gemini: ``outputDimensionality``), and so do Gemini's
``task_type`` and ``title``. Native bodies are taken as they are: OpenAI's own, Gemini's
``{"requests": [...]}`` or ``{"content": ...}``.

OpenAI vectors travel as base64 little-endian float32 (as the official SDK asks: a quarter of
the bytes of JSON numbers, and no float parsing); they are decoded to floats, so the caller
gets floats whatever the wire encoding. An input longer than the provider's per-request cap
is split by :meth:`EmbeddingsEndpoint.split_request` into calls that each take their own
capacity from the model's limits, and the vectors are put back in order.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, ClassVar

from pydantic import Field

from lionpride import errors
from lionpride.services.providers.gemini import create_gemini_config, gemini_body, model_path
from lionpride.services.providers.oai_chat import oai_config_factory
from lionpride.services.types.endpoint import Endpoint
from lionpride.services.types.request import RequestModel
from lionpride.services.types.response import NormalizedResponse, Usage, normalized, usage_of
from lionpride.services.utilities.tokens import estimate_text_tokens

__all__ = [
    "EmbeddingsEndpoint",
    "GeminiEmbeddingsEndpoint",
    "GeminiEmbeddingsRequest",
    "OAIEmbeddingsEndpoint",
    "OpenAIEmbeddingsRequest",
    "create_gemini_embeddings",
    "create_oai_embeddings",
    "merge_embeddings",
]


class OpenAIEmbeddingsRequest(RequestModel):
    """The body of ``POST /embeddings``."""

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: str | None = None
    user: str | None = None
    extra_body: dict[str, Any] | None = None


class GeminiEmbeddingsRequest(RequestModel):
    """``batchEmbedContents`` (``requests``) or ``embedContent`` (``content``), or the
    common request (``input`` texts), plus ``model`` (sent in the path)."""

    model: str = Field(min_length=1)
    input: str | list[str] | None = None
    requests: list[dict[str, Any]] | None = None
    content: dict[str, Any] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    outputDimensionality: int | None = Field(default=None, ge=1)
    task_type: str | None = None
    taskType: str | None = None
    title: str | None = None
    extra_body: dict[str, Any] | None = None


class EmbeddingsEndpoint(Endpoint):
    """What the embedding endpoints share: no output budget, and the split of long inputs."""

    #: The most inputs one request may carry.
    max_inputs: ClassVar[int] = 2048
    #: The most (estimated) input tokens one request may carry.
    max_tokens_per_request: ClassVar[int] = 300_000
    #: The request key that holds the list to split.
    list_key: ClassVar[str] = "input"

    def output_budget(self, payload: dict[str, Any]) -> int:
        """Embeddings produce no output tokens."""
        return 0

    def split_request(self, request: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The request as several, each under the per-request caps, or ``None`` if it fits.

        The caps are on the number of inputs (:attr:`max_inputs`) and, estimated from the
        characters (or counted, for token ids), on their tokens
        (:attr:`max_tokens_per_request`); a batch takes the texts in order, so concatenating
        the answers restores the input order. A list of numbers is one input, never split.
        """
        items = request.get(self.list_key)
        if not isinstance(items, list) or len(items) <= 1 or isinstance(items[0], int):
            return None  # one input (a list of numbers is one text as token ids)
        batches: list[list[Any]] = [[]]
        tokens = 0
        for item in items:
            size = estimate_text_tokens(item) if isinstance(item, str) else _length(item)
            batch = batches[-1]
            if batch and (
                len(batch) >= self.max_inputs or tokens + size > self.max_tokens_per_request
            ):
                batches.append([])
                tokens = 0
            batches[-1].append(item)
            tokens += size
        if len(batches) == 1:
            return None
        return [{**request, self.list_key: batch} for batch in batches]

    def merge_responses(self, responses: list[NormalizedResponse]) -> NormalizedResponse:
        """The answers to a split request's parts as one (see :func:`merge_embeddings`)."""
        return merge_embeddings(responses)

    def no_vectors(self, raw: Any) -> errors.InvalidResponseError:
        """The error for a 200 body in which no vectors can be read."""
        return errors.InvalidResponseError(
            f"{self.name}: expected embeddings, got {str(raw)[:200]!r}",
            status_code=200,
            body=raw,
            provider=self.provider,
        )


#: What reading vectors from a body of another shape raises (a missing key, a wrong type,
#: base64 of the wrong length).
_UNREADABLE = (KeyError, TypeError, AttributeError, ValueError, struct.error)


#: Config dict for an OpenAI-compatible embeddings endpoint (the chat config at ``/embeddings``).
create_oai_embeddings = oai_config_factory("embeddings", OpenAIEmbeddingsRequest)


class OAIEmbeddingsEndpoint(EmbeddingsEndpoint):
    """OpenAI embeddings (and compatible servers): base64 on the wire, floats returned."""

    config_factory = staticmethod(create_oai_embeddings)

    def request_body(self, payload: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
        """Ask for base64 vectors unless the request chose an encoding."""
        body = super().request_body(payload, stream=False)
        if "encoding_format" not in body:
            body = {**body, "encoding_format": "base64"}
        return body

    def estimate_tokens(self, payload: dict[str, Any]) -> int:
        """Texts by the usual estimate; token ids (one input or several) one token each."""
        items = payload.get("input")
        ids = 0
        if isinstance(items, list) and items:
            ids = len(items) if isinstance(items[0], int) else sum(map(_length, items))
        return super().estimate_tokens(payload) + ids

    def normalize_response(self, raw: Any) -> NormalizedResponse:
        """Vectors by ``data[].index``, base64 float32 decoded; ``prompt_tokens`` as input."""
        try:
            items = sorted(raw["data"], key=lambda d: d.get("index", 0))
            vectors = [_floats(item["embedding"]) for item in items]
        except _UNREADABLE as exc:
            raise self.no_vectors(raw) from exc
        native = raw.get("usage")
        usage = None
        if isinstance(native, dict):
            prompt = native.get("prompt_tokens") or 0
            usage = usage_of(
                {"input_tokens": prompt, "total_tokens": native.get("total_tokens") or prompt}
            )
        return _embedded(vectors, usage, raw, _metadata(raw, native))


def _length(item: Any) -> int:
    """The tokens of an input given as token ids (a list of numbers); 0 for anything else."""
    return len(item) if isinstance(item, list) else 0


def _metadata(raw: dict[str, Any], native: Any) -> dict[str, Any]:
    """The model the provider names, and its native usage."""
    metadata: dict[str, Any] = {}
    if raw.get("model") is not None:
        metadata["model"] = raw["model"]
    if native is not None:
        metadata["usage"] = native
    return metadata


def _floats(embedding: Any) -> list[float]:
    """A vector as floats: base64 little-endian float32, or JSON numbers."""
    if isinstance(embedding, str):
        data = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(data) // 4}f", data))
    return [float(v) for v in embedding]


def _embedded(
    vectors: list[list[float]], usage: Usage | None, raw: Any, metadata: dict[str, Any]
) -> NormalizedResponse:
    """The response holding ``vectors``; ``metadata`` gains their count."""
    metadata["count"] = len(vectors)
    return normalized(
        data=vectors,
        tool_calls=[],
        usage=usage,
        finish_reason="stop",
        metadata=metadata,
        raw_response=raw,
    )


def create_gemini_embeddings(
    name: str = "gemini_embeddings",
    endpoint: str = "models/{model}:batchEmbedContents",
    **kwargs: Any,
) -> dict[str, Any]:
    """Config dict for Gemini embeddings (``x-goog-api-key`` auth, ``GEMINI_API_KEY``)."""
    config = create_gemini_config(name=name, endpoint=endpoint, **kwargs)
    config["request_options"] = GeminiEmbeddingsRequest
    return config


class GeminiEmbeddingsEndpoint(EmbeddingsEndpoint):
    """Gemini embeddings: texts become one ``batchEmbedContents`` request per batch."""

    config_factory = staticmethod(create_gemini_embeddings)
    max_inputs = 100
    list_key = "input"

    def create_payload(self, request: dict[str, Any]) -> dict[str, Any]:
        """Validate; the common request (``input``) becomes ``requests``.

        Raises:
            ValueError: Unknown parameters (named), or none of ``input``, ``requests``,
                ``content`` (or more than one).
        """
        payload = super().create_payload(request)
        given = [k for k in ("input", "requests", "content") if k in payload]
        if len(given) != 1:
            raise errors.ValidationError(
                f"{self.name}: give exactly one of input, requests or content, got {given}"
            )
        if "input" not in payload:
            return payload
        texts = payload.pop("input")
        entry: dict[str, Any] = {"model": f"models/{payload['model']}"}
        for ours, theirs in (
            ("task_type", "taskType"),
            ("dimensions", "outputDimensionality"),
            ("title", "title"),
        ):
            value = payload.pop(ours, None)
            if value is None:
                value = payload.pop(theirs, None)
            if value is not None:
                entry[theirs] = value
        texts = [texts] if isinstance(texts, str) else texts
        payload["requests"] = [{**entry, "content": {"parts": [{"text": t}]}} for t in texts]
        return payload

    def split_request(self, request: dict[str, Any]) -> list[dict[str, Any]] | None:
        """As for any embeddings endpoint, on ``input`` or on native ``requests``."""
        key = "requests" if "requests" in request else "input"
        if key == "input":
            return super().split_request(request)
        items = request[key]
        if not isinstance(items, list) or len(items) <= self.max_inputs:
            return None
        step = self.max_inputs
        return [{**request, key: items[i : i + step]} for i in range(0, len(items), step)]

    def estimate_tokens(self, payload: dict[str, Any]) -> int:
        """The characters of every text, by the usual heuristic."""
        entries = payload.get("requests") or [payload]
        return sum(
            estimate_text_tokens(part.get("text") or "")
            for entry in entries
            for part in (entry.get("content") or {}).get("parts") or ()
        )

    def request_url(self, payload: dict[str, Any], *, stream: bool = False) -> str:
        """``{base}/models/{model}:batchEmbedContents`` (``:embedContent`` for ``content``)."""
        url = model_path(self.config.full_url, payload["model"])
        if "content" in payload:
            return url.replace(":batchEmbedContents", ":embedContent")
        return url

    def request_body(self, payload: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
        """The body without ``model`` (it is in the path)."""
        return gemini_body(payload)

    def normalize_response(self, raw: Any) -> NormalizedResponse:
        """``embeddings[].values`` (or ``embedding.values``); usage when reported."""
        try:
            items = raw["embeddings"] if "embeddings" in raw else [raw["embedding"]]
            vectors = [[float(v) for v in item["values"]] for item in items]
        except _UNREADABLE as exc:
            raise self.no_vectors(raw) from exc
        native = raw.get("usageMetadata")
        usage = None
        if isinstance(native, dict):
            prompt = native.get("promptTokenCount") or 0
            usage = usage_of({"input_tokens": prompt, "total_tokens": prompt})
        return _embedded(vectors, usage, raw, _metadata(raw, native))


def merge_embeddings(responses: list[NormalizedResponse]) -> NormalizedResponse:
    """One response from the responses of a split request's parts, in order."""
    vectors = [vector for response in responses for vector in response.data]
    usages = [r.usage for r in responses if r.usage is not None]
    usage = None
    if usages:
        usage = usage_of(
            {
                "input_tokens": sum(u.input_tokens for u in usages),
                "total_tokens": sum(u.total_tokens for u in usages),
            }
        )
    metadata = {k: v for k, v in responses[0].metadata.items() if k != "usage"}
    metadata["parts"] = len(responses)
    return _embedded(vectors, usage, [r.raw_response for r in responses], metadata)
