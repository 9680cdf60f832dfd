"""Google Gemini API (``models/{model}:generateContent`` and ``:streamGenerateContent``).

Accepts native ``contents`` or OpenAI-style ``messages`` (system messages become
``systemInstruction``, ``assistant`` becomes ``model``).
"""

from __future__ import annotations

import json
import mimetypes
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, model_validator

from lionpride import errors
from lionpride.services.providers._common import RequestModel, provider_config
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
    "messages_to_contents",
    "normalize_generate_content",
]


class GenerateContentRequest(RequestModel):
    """The body of ``generateContent`` plus ``model`` (sent in the path)."""

    model: str = Field(min_length=1)
    contents: list[dict[str, Any]] | None = None
    messages: list[dict[str, Any]] | None = None
    systemInstruction: dict[str, Any] | None = None
    generationConfig: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    toolConfig: dict[str, Any] | None = None
    safetySettings: list[dict[str, Any]] | None = None
    cachedContent: str | None = None
    labels: dict[str, str] | None = None
    extra_body: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _to_contents(self) -> GenerateContentRequest:
        if self.messages is not None:
            if self.contents is not None:
                raise ValueError("give either contents or messages, not both")
            contents, system = messages_to_contents(self.messages)
            self.contents, self.messages = contents, None
            if system and self.systemInstruction is None:
                self.systemInstruction = {"parts": [{"text": system}]}
        if not self.contents:
            raise ValueError("contents (or messages) must hold at least one message")
        for i, item in enumerate(self.contents):
            if item.get("role", "user") not in ("user", "model", "function"):
                raise ValueError(f"contents[{i}].role must be 'user' or 'model'")
        return self


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
    for item in content or ():
        if isinstance(item, str):
            parts.append({"text": item})
        elif item.get("type") == "text":
            parts.append({"text": item.get("text", "")})
        elif item.get("type") == "image_url":
            parts.append(_image_part(item.get("image_url")))
        else:
            parts.append(item)
    return parts


def _image_part(image: Any) -> dict[str, Any]:
    """An OpenAI ``image_url`` part as a Gemini part: data URLs inline, other URLs as files."""
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise ValueError("an image_url part needs image_url.url")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        mime, _, encoding = header[5:].partition(";")
        if encoding != "base64" or not data:
            raise ValueError("a data: image URL must be base64 (data:<mime>;base64,<data>)")
        return {"inlineData": {"mimeType": mime or "application/octet-stream", "data": data}}
    # Gemini fetches File API and Cloud Storage URIs itself; it needs their type.
    mime = mimetypes.guess_type(url)[0] or "image/jpeg"
    return {"fileData": {"fileUri": url, "mimeType": mime}}


def _text_of(content: Any) -> str:
    """The text of a string or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    return "".join(
        item if isinstance(item, str) else str(item.get("text", ""))
        for item in content or ()
        if isinstance(item, str) or (isinstance(item, dict) and item.get("type") == "text")
    )


def messages_to_contents(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], str | None]:
    """Convert OpenAI-style messages to Gemini ``contents`` and a system text."""
    contents: list[dict[str, Any]] = []
    system: list[str] = []
    # OpenAI tool results name their call by id only; Gemini needs the function's name.
    call_names: dict[str, str] = {}
    for i, msg in enumerate(messages):
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            system.append(_text_of(content))
        elif role == "user":
            contents.append({"role": "user", "parts": _parts(content)})
        elif role == "assistant":
            parts = _parts(content) if content else []
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") or {}
                if call.get("id") and fn.get("name"):
                    call_names[call["id"]] = fn["name"]
                args = fn.get("arguments")
                parts.append(
                    {
                        "functionCall": {
                            "name": fn.get("name"),
                            "args": json.loads(args) if isinstance(args, str) else args or {},
                        }
                    }
                )
            contents.append({"role": "model", "parts": parts})
        elif role == "tool":
            name = msg.get("name") or call_names.get(msg.get("tool_call_id") or "", "")
            result = {"name": name, "response": {"content": content}}
            contents.append({"role": "user", "parts": [{"functionResponse": result}]})
        else:
            raise ValueError(
                f"messages[{i}].role must be system, user, assistant or tool, got {role!r}"
            )
    return contents, "\n\n".join(system) or None


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


def normalize_generate_content(raw: Any) -> NormalizedResponse:
    """Turn a GenerateContentResponse into a :class:`NormalizedResponse`."""
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
    for part in (cand.get("content") or {}).get("parts") or ():
        if "functionCall" in part:
            fc = part["functionCall"]
            calls.append(ToolCall(id=fc.get("id"), name=fc["name"], arguments=fc.get("args") or {}))
        elif "text" in part:
            (thoughts if part.get("thought") else text).append(part["text"])
    native = cand.get("finishReason")
    metadata: dict[str, Any] = {"native_finish_reason": native}
    if raw.get("usageMetadata") is not None:
        metadata["usage"] = raw["usageMetadata"]
    for key, name in (("modelVersion", "model"), ("responseId", "id")):
        if raw.get(key) is not None:
            metadata[name] = raw[key]
    if thoughts:
        metadata["reasoning"] = "".join(thoughts)
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
