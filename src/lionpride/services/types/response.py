"""The one response shape every backend returns (DESIGN D3)."""

from __future__ import annotations

import json
import typing
from typing import Any, Generic, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar

from lionpride.core._trusted import build_trusted

__all__ = [
    "FinishReason",
    "NormalizedResponse",
    "OutputT",
    "ToolCall",
    "Usage",
    "normalized",
    "usage_of",
]

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class ToolCall(BaseModel):
    """A function call the model asked for; ``arguments`` already parsed to a dict."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Usage(BaseModel):
    """Token counts, in the same names for every provider.

    ``cached_tokens`` are input tokens served from the provider's prompt cache and
    ``cache_write_tokens`` input tokens written to it (Anthropic's
    ``cache_creation_input_tokens``, the Responses API's ``cache_write_tokens``), of which
    ``cache_write_1h_tokens`` with the one-hour lifetime (the rest with the five-minute one); all
    three are already included in ``input_tokens``. ``reasoning_tokens`` are output tokens spent
    thinking (already included in ``output_tokens``).
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    cache_write_1h_tokens: int = Field(default=0, ge=0)


def usage_of(counts: dict[str, Any]) -> Usage:
    """A :class:`Usage` of a dict of token counts (``ValueError`` if one is not a count).

    Once per call. Counts that are already ``int`` and not negative (what providers send)
    are put in place without validation; anything else is validated, and so refused or
    coerced as ``Usage(**counts)`` would.
    """
    if counts.keys() <= _USAGE_FIELDS:
        for count in counts.values():
            if type(count) is not int or count < 0:
                break
        else:
            return build_trusted(Usage, counts)
    usage: Usage = _validate_usage(counts)
    return usage


#: The type of :attr:`NormalizedResponse.parsed`: the ``response_format`` model class.
OutputT = TypeVar("OutputT", default=Any)


class NormalizedResponse(BaseModel, Generic[OutputT]):
    """What a call returns, whatever the backend.

    Attributes:
        status: ``"success"`` or ``"error"``.
        data: Assistant text for LLMs, the return value for tools.
        error: Error text when ``status == "error"``.
        tool_calls: Function calls requested by the model, in order.
        usage: Normalized token counts, when the backend reports them.
        finish_reason: ``stop``, ``length``, ``tool_calls``, ``content_filter`` or ``error``;
            the provider's own value stays in ``metadata["native_finish_reason"]``. A value
            that is none of these (Anthropic's ``pause_turn``, Gemini's ``OTHER``, anything
            new) gives ``None`` for every provider alike, rather than a guess.
        metadata: Provider details: model, id, native usage, reasoning text, the
            ``provider_state`` the next turn sends back, ...
        raw_response: The provider's decoded body.
        parsed: With a pydantic model class as ``response_format``, the answer validated
            into it (``None`` otherwise).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    status: Literal["success", "error"] = "success"
    data: Any = None
    error: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    raw_response: Any = None
    parsed: OutputT | None = None

    def to_dict(self) -> dict[str, Any]:
        """Dump without ``None`` values."""
        return self.model_dump(exclude_none=True)

    def to_message(self) -> dict[str, Any]:
        """The answer as a canonical (OpenAI Chat Completions) assistant message.

        Append it to ``messages``, then the ``tool`` results, and call again, on any
        provider. ``content`` is the text: ``None`` beside tool calls when there is none, an
        empty string without them (the Chat Completions API refuses an assistant message
        whose content is null and that calls no tool). ``tool_calls`` carry their ids and
        JSON-string arguments. State the provider needs on the next turn
        (thinking or thought signatures) rides under ``"provider_state"``: it is sent back to
        the provider that wrote it and dropped for any other.

        Example:
            >>> NormalizedResponse(data="Hi.").to_message()
            {'role': 'assistant', 'content': 'Hi.'}
        """
        text = self.data if isinstance(self.data, str) else ""
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if not self.tool_calls:
            message["content"] = text
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": json.dumps(call.arguments, ensure_ascii=False),
                    },
                }
                for call in self.tool_calls
            ]
        state = self.metadata.get("provider_state")
        if state is not None:
            message["provider_state"] = state
        return message


def normalized(
    *,
    data: Any,
    tool_calls: list[ToolCall],
    usage: Usage | None,
    finish_reason: FinishReason | None,
    metadata: dict[str, Any],
    raw_response: Any,
) -> NormalizedResponse:
    """A successful :class:`NormalizedResponse` from a provider normalizer's parts.

    Once per call. Parts of their fields' types (what the normalizers make) are put in place
    without validation; anything else is validated, and refused as the model would.
    """
    fields = {
        "data": data,
        "tool_calls": tool_calls,
        "usage": usage,
        "finish_reason": finish_reason,
        "metadata": metadata,
        "raw_response": raw_response,
    }
    if (
        type(tool_calls) is list
        and type(metadata) is dict
        and (usage is None or type(usage) is Usage)
        and (finish_reason is None or finish_reason in _FINISH_REASONS)
    ):
        for call in tool_calls:
            if type(call) is not ToolCall:
                break
        else:
            return build_trusted(NormalizedResponse, fields)
    return NormalizedResponse(**fields)


_FINISH_REASONS = frozenset(typing.get_args(FinishReason))
_USAGE_FIELDS = frozenset(Usage.model_fields)
_validate_usage = Usage.__pydantic_validator__.validate_python
