"""The canonical request (OpenAI Chat Completions) as a ``generateContent`` request.

System and developer messages become ``systemInstruction``; ``assistant`` turns become
``model`` turns with ``functionCall`` parts, and ``tool`` messages ``functionResponse`` parts
(named after the call they answer; consecutive results share one turn, as the API wants one
response per call of the turn before; their images and files follow in a user turn of their
own, as a function response holds only JSON). Ids go back on calls and responses only where
the API issued them; thought signatures go back on the parts they came with, and a call Gemini
did not make gets the documented stand-in where Gemini 3 requires one. ``image_url``, ``file``
and ``input_audio`` parts become ``inlineData`` (``data:`` URLs) or ``fileData`` (other URLs).
Sampling parameters, ``response_format`` and ``reasoning_effort`` go into
``generationConfig``; ``tools`` into ``functionDeclarations`` with the full JSON Schema in
``parametersJsonSchema``; ``tool_choice`` into ``toolConfig``. A native request (``contents``,
native tools, ``generationConfig``) passes unchanged; native values win over translated ones.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any
from urllib.parse import quote

from lionpride import errors
from lionpride.services.providers import canonical

__all__ = ["gemini_body", "generate_content_request", "messages_to_contents", "model_path"]

PROVIDER = "gemini"

#: Canonical sampling parameters and their ``generationConfig`` names.
_CONFIG_NAMES = {
    "temperature": "temperature",
    "top_p": "topP",
    "seed": "seed",
    "n": "candidateCount",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "logprobs": "responseLogprobs",
    "top_logprobs": "logprobs",
}

#: Canonical parameters the Gemini API has nothing for.
_NO_EQUIVALENT = canonical.OPENAI_ONLY | {"user", "service_tier", "metadata"}

#: Thinking budgets for ``reasoning_effort`` on models that take a budget (Gemini 2.x).
_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}

_GENERATION = re.compile(r"gemini-(\d+)(?:\.(\d+))?")

#: The thought signature the Gemini docs give for a function call Gemini did not make.
_NO_SIGNATURE = "skip_thought_signature_validator"


def model_path(template: str, model: str) -> str:
    """``template`` (a URL or an endpoint path) with the model in its ``{model}`` place."""
    return template.replace("{model}", quote(model, safe=""))


def gemini_body(payload: dict[str, Any]) -> dict[str, Any]:
    """The body of a Gemini request: the payload without ``model`` (it is in the path) and
    with ``extra_body`` merged; no ``stream`` flag (a stream has its own URL)."""
    body = {k: v for k, v in payload.items() if k not in ("model", "extra_body")}
    body.update(payload.get("extra_body") or {})
    return body


def generate_content_request(request: dict[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` request (plus ``model``) for a canonical or native one.

    Raises:
        ValidationError: Both ``messages`` and ``contents``, or a parameter or content part
            the Gemini API has no equivalent for.
    """
    out = dict(request)
    messages = out.pop("messages", None)
    if messages is not None:
        if out.get("contents") is not None:
            raise errors.ValidationError("gemini: give either contents or messages, not both")
        out["contents"], system = messages_to_contents(messages, str(out.get("model") or ""))
        if system and out.get("systemInstruction") is None:
            out["systemInstruction"] = {"parts": [{"text": system}]}
    canonical.drop_unsupported(out, _NO_EQUIVALENT, PROVIDER)
    config: dict[str, Any] = {}
    for name, native in _CONFIG_NAMES.items():
        if (value := out.pop(name, None)) is not None:
            config[native] = value
    budget = out.pop("max_tokens", None)
    budget = out.pop("max_completion_tokens", None) if budget is None else budget
    if budget is not None:
        config["maxOutputTokens"] = budget
    if (stop := out.pop("stop", None)) is not None:
        config["stopSequences"] = canonical.stop_list(stop)
    if (fmt := out.pop("response_format", None)) is not None:
        spec = canonical.json_schema_of(fmt, PROVIDER)
        if spec is not None:
            config["responseMimeType"] = "application/json"
            if spec:
                config["responseJsonSchema"] = spec["schema"]
    if (effort := out.pop("reasoning_effort", None)) is not None:
        config["thinkingConfig"] = _thinking(str(effort), str(out.get("model") or ""))
    if config:
        out["generationConfig"] = {**config, **(out.get("generationConfig") or {})}
    if isinstance(tools := out.get("tools"), list):
        out["tools"] = _tools(tools)
    if "tool_choice" in out and (native := out.pop("tool_choice")) is not None:
        choice = canonical.choice_of(native)
        if choice is None:
            hint = f"got {native!r:.80}; give a canonical tool_choice or a native toolConfig"
            raise canonical.no_equivalent("tool_choice", PROVIDER, hint)
        out["toolConfig"] = {
            **(out.get("toolConfig") or {}),
            "functionCallingConfig": _mode(*choice),
        }
    if out.pop("parallel_tool_calls", None) is False:
        raise canonical.no_equivalent("parallel_tool_calls=False", PROVIDER)
    return out


def messages_to_contents(messages: list[Any], model: str = "") -> tuple[list[Any], str | None]:
    """Canonical messages as Gemini ``contents`` and the system text (for ``model``, which
    decides whether function calls need a thought signature)."""
    signed = _signs_calls(model)
    contents: list[Any] = []
    system: list[str] = []
    names: dict[str, str] = {}  # call id -> function name: a tool message names only the id
    made_up: set[str] = set()  # call ids the library made up: the API never sees them
    answers: dict[str, Any] | None = None  # the turn of the tool results just read
    attached: dict[str, Any] | None = None  # the user turn behind it with their media
    for role, content, msg in canonical.read_messages(messages, PROVIDER):
        if role in ("system", "developer"):
            system.append(canonical.text_of(content))
            continue
        if role == "tool":
            part, media = _function_response(msg, names, made_up)
            if answers is None:
                answers, attached = {"role": "user", "parts": []}, None
                contents.append(answers)
            answers["parts"].append(part)
            if media and attached is None:
                attached = {"role": "user", "parts": []}
                contents.append(attached)
            if attached is not None:
                attached["parts"] += media
            continue
        answers = None
        if role == "assistant":
            parts = _model_parts(msg, names, made_up, signed)
            if parts:  # an empty answer: the API takes no turn without parts
                contents.append({"role": "model", "parts": parts})
        elif role == "user":
            contents.append({"role": "user", "parts": _parts(content)})
        else:
            # Native content ({"role": "model", "parts": ...}), a new role, or not a message.
            contents.append(msg)
    return contents, "\n\n".join(system) or None


def _function_response(
    msg: dict[str, Any], names: dict[str, str], made_up: set[str]
) -> tuple[dict[str, Any], list[Any]]:
    """A tool message as a ``functionResponse`` part (its text) and the parts of its media.

    The media (images, files) go in a user turn behind the results, where every Gemini
    model takes them (as recorded); a function response itself holds only JSON.
    """
    call_id = msg.get("tool_call_id") or ""
    content = msg.get("content")
    media: list[Any] = []
    if isinstance(content, list):
        media = [_part(item) for item in content if not _is_text(item)]
        content = canonical.text_of(content)
    result: dict[str, Any] = {
        "name": names.get(call_id) or msg.get("name") or "",
        "response": {"content": content},
    }
    if call_id and call_id in names and call_id not in made_up:
        result["id"] = call_id
    return {"functionResponse": result}, media


def _is_text(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == "text"


def _model_parts(
    msg: dict[str, Any], names: dict[str, str], made_up: set[str], signed: bool
) -> list[dict[str, Any]]:
    """An assistant message as ``model`` parts, with the state its provider gave it.

    Where the model needs a signature on a step's first function call (``signed``) and the
    call has none of Gemini's (another provider made it, or the application did), it gets
    the stand-in the Gemini docs give for such calls.
    """
    state = canonical.own_state(msg, PROVIDER)
    calls_state: dict[str, Any] = (state.get("calls") or {}) if state is not None else {}
    content = msg.get("content")
    parts = _parts(content) if content else []
    if state is not None and state.get("text_signature") and parts:
        parts[-1] = {**parts[-1], "thoughtSignature": state["text_signature"]}
    for call in canonical.tool_calls_of(msg):
        call_id = call.get("id") or ""
        name = call["function"].get("name")
        names[call_id] = str(name or "")
        known = calls_state.get(call_id) or {}
        function_call: dict[str, Any] = {"name": name, "args": canonical.call_arguments(call)}
        if known.get("issued"):
            function_call["id"] = call_id
        else:
            made_up.add(call_id)
        part: dict[str, Any] = {"functionCall": function_call}
        if known.get("signature"):
            part["thoughtSignature"] = known["signature"]
        elif signed and not any("functionCall" in earlier for earlier in parts):
            part["thoughtSignature"] = _NO_SIGNATURE
        parts.append(part)
    return parts


def _signs_calls(model: str) -> bool:
    """Whether ``model`` refuses a function call of the current turn without a thought
    signature (Gemini 3 and later)."""
    match = _GENERATION.search(model)
    return match is not None and int(match.group(1)) >= 3


def _parts(content: Any) -> list[Any]:
    """User content as parts: text, ``inlineData`` and ``fileData``; native parts unchanged."""
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        return [content]
    return [_part(item) for item in content]


def _part(item: Any) -> Any:
    kind = item.get("type") if isinstance(item, dict) else None
    if kind == "text":
        return {"text": item.get("text", "")}
    if kind == "refusal":  # an assistant's refusal is its text
        return {"text": item.get("refusal", "")}
    if kind == "image_url":
        return _media(canonical.image_url_of(item), "image/jpeg")
    if kind == "file":
        file = canonical.file_of(item)
        data = file.get("file_data")
        if isinstance(data, str):
            if not data.startswith("data:"):
                return {"inlineData": {"mimeType": "application/pdf", "data": data}}
            return _media(data, "application/pdf")
        file_id = str(file.get("file_id") or "")
        if not file_id.startswith("https://"):
            raise canonical.no_equivalent(
                "file.file_id", PROVIDER, "give file_data, or a Gemini File API URI as file_id"
            )
        guess = mimetypes.guess_type(str(file.get("filename") or file_id))[0]
        return {"fileData": {"fileUri": file_id, "mimeType": guess or "application/pdf"}}
    if kind == "input_audio":
        audio = item.get("input_audio") or {}
        media = f"audio/{audio.get('format') or 'wav'}"
        return {"inlineData": {"mimeType": media, "data": audio.get("data", "")}}
    return item


def _media(url: str, default: str) -> dict[str, Any]:
    """A URL as a part: ``data:`` URLs inline, others as files Gemini fetches itself."""
    if not url:
        raise errors.ValidationError("gemini: an image_url part needs a URL")
    inline = canonical.data_url(url)
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    media = mimetypes.guess_type(url.split("?", 1)[0])[0] or default
    return {"fileData": {"fileUri": url, "mimeType": media}}


def _tools(tools: list[Any]) -> list[Any]:
    """OpenAI function tools as one ``functionDeclarations`` tool; native tools unchanged."""
    declarations: list[dict[str, Any]] = []
    native: list[Any] = []
    for tool in tools:
        function = canonical.function_of(tool)
        if function is None:
            native.append(tool)
            continue
        declaration = canonical.function_name_and_description(function)
        if function.get("parameters") is not None:
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    if not declarations:
        return native
    return [*native, {"functionDeclarations": declarations}]


def _mode(mode: str, name: str | None) -> dict[str, Any]:
    if mode == "function":
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    return {"mode": {"required": "ANY"}.get(mode, mode.upper())}


def _thinking(effort: str, model: str) -> dict[str, Any]:
    """``reasoning_effort`` as a thinking budget (Gemini 2.x) or a thinking level (later).

    Raises:
        ValidationError: An effort with no budget, or ``none`` for a Pro model, which
            cannot turn its thinking off (the API refuses a budget of 0 there).
    """
    match = _GENERATION.search(model)
    if match is not None and int(match.group(1)) < 3:
        budget = _BUDGETS.get(effort)
        if budget is None:
            raise canonical.unknown_effort(effort, _BUDGETS, PROVIDER, model)
        if budget == 0 and "-pro" in model:
            raise canonical.unknown_effort(
                effort, [e for e in _BUDGETS if _BUDGETS[e]], PROVIDER, model
            )
        return {"thinkingBudget": budget}
    return {"thinkingLevel": "minimal" if effort == "none" else effort}
