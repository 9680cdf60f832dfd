"""Every recorded conversation in ``wire/conversations``: the canonical request, sent to the
recorded provider, puts on the wire a request that means what the recorded one does; the
recorded answer reads back to the expected message; a round trip through ``to_message()``
reproduces the recorded next request."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import WIRE_DIR, model_on

from lionpride.testing import FakeProvider, Reply

CONVERSATIONS = WIRE_DIR / "conversations"


def conversation_files() -> list[Any]:
    """Each conversation file, as a pytest param named after it."""
    if not CONVERSATIONS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{CONVERSATIONS} is missing"))]
    return [pytest.param(path, id=path.stem) for path in sorted(CONVERSATIONS.glob("*.json"))]


# -- meaning of a request, per provider (the README's "Equivalences") ----------------------


def _schema(value: Any) -> Any:
    """A JSON schema without the keys that change nothing (titles, closed objects)."""
    if isinstance(value, list):
        return [_schema(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: _schema(item)
        for key, item in value.items()
        if key != "title" and not (key == "additionalProperties" and item is False)
    }


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    out = []
    for block in content:
        block = dict(block)
        if block.get("type") == "tool_result":
            block["content"] = _blocks(block.get("content", ""))
            if block.get("is_error") is False:
                del block["is_error"]
        out.append(block)
    return out


def anthropic_meaning(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic request with one spelling for each meaning."""
    out = {k: v for k, v in body.items() if k != "stream"}
    system = out.get("system")
    if isinstance(system, list):
        out["system"] = "".join(block["text"] for block in system)
    turns: list[dict[str, Any]] = []
    for msg in out["messages"]:
        if turns and turns[-1]["role"] == msg["role"]:
            turns[-1]["content"] += _blocks(msg["content"])
        else:
            turns.append({"role": msg["role"], "content": _blocks(msg["content"])})
    out["messages"] = turns
    if out.get("tool_choice") == {"type": "auto"}:
        del out["tool_choice"]
    for tool in out.get("tools") or ():
        tool["input_schema"] = _schema(tool["input_schema"])
    if "output_config" in out:
        out["output_config"] = _schema(out["output_config"])
    if isinstance(out.get("thinking"), dict):
        out["thinking"] = {"type": out["thinking"]["type"]}  # the budget is the library's
    return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _gemini_keys(value: Any) -> Any:
    if isinstance(value, list):
        return [_gemini_keys(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {_camel(key): _gemini_keys(item) for key, item in value.items()}


def _standard_b64(data: str) -> bytes:
    return base64.b64decode(data.replace("-", "+").replace("_", "/") + "==")


def gemini_meaning(body: dict[str, Any]) -> dict[str, Any]:
    """A Gemini request with one spelling for each meaning."""
    out = _gemini_keys(body)
    config = {k: v for k, v in (out.pop("generationConfig", None) or {}).items()}
    config.pop("responseModalities", None)
    if "responseJsonSchema" in config:
        config["responseJsonSchema"] = _schema(config["responseJsonSchema"])
    if config:
        out["generationConfig"] = config
    if "systemInstruction" in out:
        out["systemInstruction"] = {"parts": out["systemInstruction"]["parts"]}
    for content in out["contents"]:
        for part in content["parts"]:
            if "inlineData" in part:
                part["inlineData"]["data"] = _standard_b64(part["inlineData"]["data"])
            if "thoughtSignature" in part:
                part["thoughtSignature"] = _standard_b64(part["thoughtSignature"])
            for key in ("functionCall", "functionResponse"):
                if key in part and str(part[key].get("id", "")).startswith("pyd_ai_"):
                    del part[key]["id"]  # the recorder's own ids
            if "functionResponse" in part:
                response = part["functionResponse"]["response"]
                part["functionResponse"]["response"] = sorted(map(str, response.values()))
    for tool in out.get("tools") or ():
        for declaration in tool.get("functionDeclarations") or ():
            schema = declaration.pop("parametersJsonSchema", None)
            if schema is not None:
                declaration["parameters"] = _schema(schema)
    mode = (out.get("toolConfig") or {}).get("functionCallingConfig")
    if mode == {"mode": "AUTO"}:
        del out["toolConfig"]
    return out


def openai_meaning(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request with one spelling for each meaning."""
    out = {k: v for k, v in body.items() if (k, v) not in (("stream", False), ("n", 1))}
    messages = []
    for msg in out["messages"]:
        msg = {k: v for k, v in msg.items() if not (k == "content" and v is None)}
        for call in msg.get("tool_calls") or ():
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
        messages.append(msg)
    out["messages"] = messages
    return out


MEANING = {"anthropic": anthropic_meaning, "gemini": gemini_meaning, "openai": openai_meaning}


def assert_same_request(provider: str, sent: Any, recorded: dict[str, Any]) -> None:
    """The sent body means what the recorded one does."""
    meaning = MEANING[provider]
    assert meaning(json.loads(json.dumps(sent))) == meaning(json.loads(json.dumps(recorded)))


# -- the answer --------------------------------------------------------------------------


def assert_message(message: dict[str, Any], expected: dict[str, Any]) -> None:
    """``to_message()`` holds the expected text, tool calls and provider state."""
    assert message["role"] == "assistant"
    assert message["content"] == expected["content"]
    calls = message.get("tool_calls") or []
    assert len(calls) == len(expected["tool_calls"])
    for call, want in zip(calls, expected["tool_calls"], strict=True):
        assert call["type"] == "function"
        assert call["id"]  # made up where the provider issued none
        if want["id"] is not None:
            assert call["id"] == want["id"]
        assert call["function"]["name"] == want["name"]
        assert json.loads(call["function"]["arguments"]) == want["arguments"]
    noted = expected.get("provider_state")
    state = message.get("provider_state")
    if not noted:
        # Nothing the next turn needs (a Gemini text part's signature may ride along).
        assert state is None or set(state) <= {"provider", "text_signature"}
    elif "anthropic_thinking_blocks" in noted:
        assert state["provider"] == "anthropic"
        signed = [b for b in state["thinking"] if b.get("signature")]
        assert len(signed) == noted["anthropic_thinking_blocks"]
    else:
        assert state["provider"] == "gemini"
        signed = [c for c in state["calls"].values() if c.get("signature")]
        assert len(signed) == noted["gemini_function_call_signatures"]


def resolve(append: list[dict[str, Any]], message: dict[str, Any]) -> list[dict[str, Any]]:
    """The appended messages with ``@call:N`` replaced by the id of call N in ``message``."""
    out = []
    for msg in append:
        ref = re.fullmatch(r"@call:(\d+)", str(msg.get("tool_call_id", "")))
        if ref:
            msg = {**msg, "tool_call_id": message["tool_calls"][int(ref.group(1))]["id"]}
        out.append(msg)
    return out


@pytest.mark.parametrize("path", conversation_files())
async def test_conversation(path: Path, fake_provider: FakeProvider) -> None:
    """The canonical request translates to the recorded one, and the answers read back."""
    record = json.loads(path.read_text())
    provider = record["provider"]
    canonical = record["canonical"]
    expect = record["expect"]
    fake_provider.script(Reply.from_wire(record))
    async with model_on(fake_provider, provider, retry_config=None) as model:
        calling = await model.invoke(**canonical)
        assert_same_request(provider, fake_provider.requests[-1].body, record["request"]["body"])
        response = calling.response
        assert response is not None
        message = response.to_message()
        assert_message(message, expect["message"])
        if "parsed" in expect:
            assert json.loads(message["content"]) == expect["parsed"]
        if record["kind"] != "round_trip":
            return
        follow = record["next"]
        messages = [*canonical["messages"], message, *resolve(follow["append"], message)]
        fake_provider.script(Reply.from_wire(follow))
        calling = await model.invoke(**{**canonical, "messages": messages})
        assert_same_request(provider, fake_provider.requests[-1].body, follow["request"]["body"])
        assert calling.response is not None
        assert_message(calling.response.to_message(), expect["next_message"])
