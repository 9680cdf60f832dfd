"""Google Gemini API (``models/{model}:generateContent`` and ``:streamGenerateContent``).

Takes native ``contents`` or the canonical request (OpenAI Chat Completions); see
:mod:`~lionpride.services.providers._gemini_request` for the translation.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field

from lionpride import errors
from lionpride.services.providers._common import RequestModel, provider_config
from lionpride.services.providers._gemini_request import (
    generate_content_request,
    messages_to_contents,
)
from lionpride.services.types.endpoint import Endpoint, StreamAssembler
from lionpride.services.types.response import (
    NormalizedResponse,
    ToolCall,
    Usage,
    normalized,
    usage_of,
)

__all__ = [
    "GeminiEndpoint",
    "GenerateContentRequest",
    "create_gemini_config",
    "gemini_usage",
    "made_up_call_id",
    "messages_to_contents",
    "normalize_generate_content",
]


class GenerateContentRequest(RequestModel):
    """The body of ``generateContent`` plus ``model`` (sent in the path).

    Roles and parts inside ``contents`` are the API's to check: a request is refused here
    only for its parameter names and types, and for having no contents at all.
    """

    model: str = Field(min_length=1)
    contents: list[dict[str, Any]] = Field(min_length=1)
    systemInstruction: dict[str, Any] | None = None
    generationConfig: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    toolConfig: dict[str, Any] | None = None
    safetySettings: list[dict[str, Any]] | None = None
    cachedContent: str | None = None
    labels: dict[str, str] | None = None
    extra_body: dict[str, Any] | None = None


def create_gemini_config(
    name: str = "gemini_generate",
    api_key: Any = None,
    base_url: str | None = None,
    endpoint: str = "models/{model}:generateContent",
    **kwargs: Any,
) -> dict[str, Any]:
    """Config dict for the Gemini API (``x-goog-api-key`` auth, ``GEMINI_API_KEY``)."""
    return provider_config(
        provider="gemini",
        name=name,
        base_url=base_url,
        default_base_url="https://generativelanguage.googleapis.com/v1beta",
        endpoint=endpoint,
        api_key=api_key,
        default_key_env="GEMINI_API_KEY",
        auth_type="x-goog-api-key",
        request_options=GenerateContentRequest,
        **kwargs,
    )


class GeminiEndpoint(Endpoint):
    """Gemini models through the Generative Language API."""

    config_factory = staticmethod(create_gemini_config)

    def translate_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The ``generateContent`` request for a canonical or native one."""
        return generate_content_request(request)

    def output_budget(self, payload: dict[str, Any]) -> int:
        """``generationConfig.maxOutputTokens``, or the configured default."""
        out = (payload.get("generationConfig") or {}).get("maxOutputTokens")
        return out if isinstance(out, int) else self.config.default_output_tokens

    def request_url(self, payload: dict[str, Any], *, stream: bool = False) -> str:
        """``{base}/models/{model}:generateContent`` (``:streamGenerateContent?alt=sse``)."""
        base = self.config.full_url.replace("{model}", quote(payload["model"], safe=""))
        if stream:
            return base.replace(":generateContent", ":streamGenerateContent") + "?alt=sse"
        return base

    def request_body(self, payload: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
        """The body without ``model`` (it is in the path); no ``stream`` flag."""
        body = {k: v for k, v in payload.items() if k not in ("model", "extra_body")}
        body.update(payload.get("extra_body") or {})
        return body

    def normalize_response(self, raw: Any) -> NormalizedResponse:
        """Normalize a GenerateContentResponse."""
        return normalize_generate_content(raw)

    def stream_assembler(self, payload: dict[str, Any]) -> StreamAssembler:
        """Assembles streamed GenerateContentResponse chunks."""
        from lionpride.services.providers._gemini_stream import GeminiStreamAssembler

        return GeminiStreamAssembler()

    def count_tokens_route(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``models/{model}:countTokens``: ``contents`` alone, or the whole request (system
        instruction, tools) as ``generateContentRequest``."""
        model = payload["model"]
        path = self.config.endpoint.replace("{model}", quote(model, safe=""))
        path = path.replace(":generateContent", ":countTokens")
        body = self.request_body(payload)
        if body.keys() <= {"contents"}:
            return path, body
        return path, {"generateContentRequest": {"model": f"models/{model}", **body}}


FINISH_REASONS: dict[str, Literal["stop", "length", "tool_calls", "content_filter", "error"]] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
}


def gemini_usage(raw: dict[str, Any] | None) -> Usage | None:
    """Normalize ``usageMetadata``: thoughts count as output (and as reasoning)."""
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("promptTokenCount") or 0
    thoughts = raw.get("thoughtsTokenCount") or 0
    out = (raw.get("candidatesTokenCount") or 0) + thoughts
    return usage_of(
        {
            "input_tokens": prompt,
            "output_tokens": out,
            "total_tokens": raw.get("totalTokenCount") or prompt + out,
            "cached_tokens": raw.get("cachedContentTokenCount") or 0,
            "reasoning_tokens": thoughts,
        }
    )


def made_up_call_id() -> str:
    """An id for a function call the API gave none (most Gemini models give none)."""
    return f"call_{secrets.token_hex(12)}"


def normalize_generate_content(
    raw: Any, made_up: frozenset[str] = frozenset()
) -> NormalizedResponse:
    """Turn a GenerateContentResponse into a :class:`NormalizedResponse`.

    A function call without an id gets one made up, so that the canonical tool loop can
    answer it by id; ``metadata["provider_state"]`` notes which ids the API issued (only
    those are sent back) and the thought signatures the next turn must carry. ``made_up``
    names ids already made up by the stream assembler.
    """
    if not isinstance(raw, dict):
        raise errors.InvalidResponseError("gemini: expected a JSON object", status_code=200)
    if "error" in raw and "candidates" not in raw:
        err = raw["error"] if isinstance(raw["error"], dict) else {"message": str(raw["error"])}
        code = err.get("code")
        raise errors.error_for_status(
            code if isinstance(code, int) and code >= 400 else 500,
            str(err.get("message")),
            body=raw,
            provider="gemini",
        )
    candidates = raw.get("candidates") or [{}]
    cand = candidates[0]
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    state: dict[str, Any] = {}
    for part in (cand.get("content") or {}).get("parts") or ():
        if "functionCall" in part:
            fc = part["functionCall"]
            call_id = fc.get("id")
            issued = bool(call_id) and call_id not in made_up
            call_id = call_id or made_up_call_id()
            calls.append(ToolCall(id=call_id, name=fc["name"], arguments=fc.get("args") or {}))
            noted = {"issued": issued}
            if part.get("thoughtSignature"):
                noted["signature"] = part["thoughtSignature"]
            state.setdefault("calls", {})[call_id] = noted
        elif "text" in part:
            (thoughts if part.get("thought") else text).append(part["text"])
            if part.get("thoughtSignature") and not part.get("thought"):
                state["text_signature"] = part["thoughtSignature"]
    native = cand.get("finishReason")
    metadata: dict[str, Any] = {"native_finish_reason": native}
    if raw.get("usageMetadata") is not None:
        metadata["usage"] = raw["usageMetadata"]
    for key, name in (("modelVersion", "model"), ("responseId", "id")):
        if raw.get(key) is not None:
            metadata[name] = raw[key]
    if thoughts:
        metadata["reasoning"] = "".join(thoughts)
    if state:
        metadata["provider_state"] = {"provider": "gemini", **state}
    if raw.get("promptFeedback"):
        metadata["prompt_feedback"] = raw["promptFeedback"]
    finish = FINISH_REASONS.get(native) if native else None
    block = (raw.get("promptFeedback") or {}).get("blockReason")
    if finish is None and block:
        # A blocked prompt has no candidates at all: it is filtered, not an empty success.
        metadata["block_reason"] = block
        finish = "content_filter"
    if calls and finish == "stop":
        finish = "tool_calls"
    return normalized(
        data="".join(text),
        tool_calls=calls,
        usage=gemini_usage(raw.get("usageMetadata")),
        finish_reason=finish,
        metadata=metadata,
        raw_response=raw,
    )
