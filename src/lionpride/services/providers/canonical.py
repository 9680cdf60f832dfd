"""Reading the canonical request (OpenAI Chat Completions) for the translating providers.

The Anthropic and Gemini translators share these readers: the walk over the messages
(:func:`read_messages`); what a content part, a tool, a ``tool_choice`` or a
``response_format`` says, whatever the spelling; the provider state a message carries back to
its own provider (see :func:`own_state`); and the error for a parameter a provider has no
equivalent for. Public so that each provider package imports it by a public path; it imports
only :mod:`~lionpride.services.providers.common` and ``errors``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lionpride import errors
from lionpride.services.providers.common import parse_arguments

__all__ = [
    "OPENAI_ONLY",
    "call_arguments",
    "choice_of",
    "data_url",
    "drop_unsupported",
    "file_of",
    "function_name_and_description",
    "function_of",
    "image_url_of",
    "json_schema_of",
    "no_equivalent",
    "own_state",
    "read_messages",
    "speaker_name",
    "stop_list",
    "text_of",
    "tool_calls_of",
    "unknown_effort",
]


#: Canonical parameters that only OpenAI's APIs have (each translator adds its own to these).
OPENAI_ONLY = frozenset(
    {
        "logit_bias", "functions", "function_call", "reasoning", "verbosity", "store",
        "modalities", "audio", "prediction", "prompt_cache_key", "prompt_cache_options",
        "safety_identifier", "web_search_options", "stream_options",
    }
)  # fmt: skip


def image_url_of(part: dict[str, Any]) -> str:
    """The URL of an ``image_url`` part (an object with ``url``, or the URL itself)."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    return str(url or "")


def no_equivalent(name: str, provider: str, hint: str = "") -> errors.ValidationError:
    """The error for a canonical parameter ``provider`` cannot express."""
    extra = f"; {hint}" if hint else ""
    return errors.ValidationError(f"{name!r} has no equivalent in the {provider} API{extra}")


def drop_unsupported(
    out: dict[str, Any],
    names: frozenset[str],
    provider: str,
    as_if_absent: dict[str, Any] | None = None,
) -> None:
    """Remove the parameters ``provider`` has nothing for from the request ``out``.

    A ``None`` value, or one in ``as_if_absent`` (a value that asks for the API's own
    behaviour, such as a penalty of 0), goes quietly.

    Raises:
        ValidationError: Any other value of such a parameter (see :func:`no_equivalent`).
    """
    quiet = as_if_absent or {}
    for key in names.intersection(out):
        value = out.pop(key)
        if value is not None and (key not in quiet or quiet[key] != value):
            raise no_equivalent(key, provider)


def speaker_name(message: dict[str, Any], index: int, provider: str) -> None:
    """Refuse a message's ``name`` (who speaks), which ``provider`` has no field for.

    Raises:
        ValidationError: The message has a ``name``.
    """
    if message.get("name") and message.get("role") != "tool":
        raise no_equivalent(
            f"messages[{index}].name",
            provider,
            "it has no participant names; say who speaks in the content",
        )


def read_messages(messages: list[Any], provider: str) -> Iterator[tuple[Any, Any, Any]]:
    """Each entry of canonical ``messages`` as ``(role, content, entry)``, in order.

    An entry that is not a message has the role and content ``None``: a translator passes it
    on as it is, and the API says what is wrong with it.

    Raises:
        ValidationError: A message with a speaker ``name`` (see :func:`speaker_name`).
    """
    for index, msg in enumerate(messages):
        if not isinstance(msg, dict):
            yield None, None, msg
            continue
        speaker_name(msg, index, provider)
        yield msg.get("role"), msg.get("content"), msg


def unknown_effort(effort: str, choices: Any, provider: str, model: str) -> errors.ValidationError:
    """The error for a ``reasoning_effort`` value ``provider`` has no setting for."""
    return errors.ValidationError(
        f"reasoning_effort {effort!r} is not one of {', '.join(choices)} (for {provider} {model})"
    )


def own_state(message: dict[str, Any], provider: str) -> dict[str, Any] | None:
    """The ``provider_state`` of an assistant message, when ``provider`` wrote it.

    State another provider wrote (thinking signatures, thought signatures) means nothing
    here and is dropped, never sent.
    """
    state = message.get("provider_state")
    if isinstance(state, dict) and state.get("provider") == provider:
        return state
    return None


def text_of(content: Any) -> str:
    """The text of a string or of a list of ``text`` parts."""
    if isinstance(content, str):
        return content
    return "".join(
        str(part.get("text", ""))
        for part in content or ()
        if isinstance(part, dict) and part.get("type") == "text"
    )


def data_url(url: str) -> tuple[str, str] | None:
    """``(media type, base64 data)`` of a ``data:`` URL, ``None`` for any other URL.

    Raises:
        ValidationError: A ``data:`` URL that is not base64.
    """
    if not url.startswith("data:"):
        return None
    header, _, data = url.partition(",")
    media, _, encoding = header[5:].partition(";")
    if encoding != "base64" or not data:
        raise errors.ValidationError(
            f"a data: URL must be base64 (data:<type>;base64,<data>), got {url[:40]!r}"
        )
    return media or "application/octet-stream", data


def call_arguments(call: dict[str, Any]) -> dict[str, Any]:
    """The arguments of an assistant ``tool_calls`` entry as a dict."""
    return parse_arguments(call["function"].get("arguments"))


def function_of(tool: Any) -> dict[str, Any] | None:
    """The ``function`` object of an OpenAI function tool, ``None`` for a native tool."""
    if isinstance(tool, dict) and tool.get("type") == "function":
        function = tool.get("function")
        if isinstance(function, dict):
            return function
    return None


def function_name_and_description(function: dict[str, Any]) -> dict[str, Any]:
    """``name`` and (when given) ``description`` of a function: how every API starts a tool."""
    out: dict[str, Any] = {"name": function.get("name")}
    if function.get("description") is not None:
        out["description"] = function["description"]
    return out


def choice_of(choice: Any) -> tuple[str, str | None] | None:
    """A canonical ``tool_choice`` as ``(mode, function name)``; ``None`` for a native one.

    Modes are ``auto``, ``none``, ``required`` and ``function`` (with the name).

    Raises:
        ValidationError: A string that is none of the modes (no API takes another).
    """
    if choice in ("auto", "none", "required"):
        return str(choice), None
    if isinstance(choice, str):
        raise errors.ValidationError(
            "tool_choice must be 'auto', 'none', 'required' or "
            f"{{'type': 'function', 'function': {{'name': ...}}}}, got {choice!r:.80}"
        )
    function = function_of(choice)
    if function is not None:
        return "function", str(function.get("name") or "")
    return None


def json_schema_of(response_format: Any, provider: str) -> dict[str, Any] | None:
    """The ``json_schema`` object of a canonical ``response_format`` (``None``: plain text).

    A ``json_object`` format comes back as ``{}`` (JSON, no schema).

    Raises:
        ValidationError: A format type that is none of ``text``, ``json_object`` and
            ``json_schema``, or a ``json_schema`` without its schema.
    """
    if not isinstance(response_format, dict):
        raise errors.ValidationError(
            f"response_format for {provider} must be a dict or a pydantic model class, "
            f"got {type(response_format).__name__}"
        )
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {}
    spec = response_format.get("json_schema")
    if kind == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        return spec
    raise errors.ValidationError(
        f"response_format for {provider} must be text, json_object or json_schema with "
        f"json_schema.schema, got {response_format!r:.200}"
    )


def stop_list(stop: Any) -> list[str]:
    """``stop`` (one string or a list) as a list.

    Raises:
        ValidationError: ``stop`` is neither a string nor a list of strings.
    """
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list | tuple) and all(isinstance(item, str) for item in stop):
        return list(stop)
    raise errors.ValidationError(f"stop must be a string or a list of strings, got {stop!r:.80}")


def tool_calls_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``tool_calls`` of an assistant message (an empty list for none).

    Raises:
        ValidationError: ``tool_calls`` is not a list of tool calls with a ``function``
            object each.
    """
    calls = message.get("tool_calls") or []
    if isinstance(calls, list) and all(
        isinstance(call, dict) and isinstance(call.get("function"), dict) for call in calls
    ):
        return calls
    raise errors.ValidationError(
        "an assistant message's tool_calls must be a list of "
        f"{{'id', 'type': 'function', 'function': {{...}}}} objects, got {calls!r:.80}"
    )


def file_of(part: dict[str, Any]) -> dict[str, Any]:
    """The ``file`` object of a ``file`` part.

    Raises:
        ValidationError: ``file`` is not an object.
    """
    file = part.get("file") or {}
    if not isinstance(file, dict):
        raise errors.ValidationError(
            f"a file part's file must be an object with file_data or file_id, got {file!r:.80}"
        )
    return file
