"""FakeProvider checks each request as the live API would, before it answers.

A request the live service refuses gets that service's own HTTP 400 body here too, so that a
client (or a user's test suite) cannot stay green on a request production turns away. The checks
err on the side of the live API: what a provider was recorded accepting always passes, and a
rule is only enforced where the API is known to refuse. Each format's rules live in its own
module; this one picks the module and writes the refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lionpride.testing._checks_anthropic import check_anthropic
from lionpride.testing._checks_gemini import check_gemini
from lionpride.testing._checks_openai import check_openai
from lionpride.testing._plan import Format, gemini_model
from lionpride.testing._rejection import Rejected

__all__ = ["Rejected", "check_request"]

# The generate routes of each format, the ones these checks are written for.
_ROUTES: dict[Format, tuple[str, ...]] = {
    "openai": ("/chat/completions",),
    "anthropic": ("/messages",),
    "gemini": (":generateContent", ":streamGenerateContent"),
}
_NOT_AN_OBJECT: dict[Format, str] = {
    "openai": "We could not parse the JSON body of your request. The OpenAI API expects a "
    "JSON payload, but what was sent was not valid JSON.",
    "anthropic": "The request body is not valid JSON: a JSON object is expected.",
    "gemini": "Invalid JSON payload received. Expected an object at the top level.",
}


def check_request(
    fmt: Format, body: Any, path: str = "", headers: Mapping[str, str] | None = None
) -> Rejected | None:
    """The reason the live API would refuse ``body`` with HTTP 400, or ``None`` if it accepts.

    Args:
        fmt: The wire format the request's path names.
        body: The parsed JSON body (``str`` when it was not JSON, ``None`` when empty).
        path: The request path without query: only the generate routes are checked, Gemini
            names the model there, and some rules hold for some models only.
        headers: The request headers with lower-cased names (Anthropic betas change rules).
    """
    routes = _ROUTES.get(fmt)
    if routes is None or (path and not path.endswith(routes)):
        return None  # a route without checks of its own (embeddings, token counts, ...)
    if not isinstance(body, dict):
        return Rejected(_NOT_AN_OBJECT[fmt])
    try:
        if fmt == "openai":
            check_openai(body)
        elif fmt == "anthropic":
            check_anthropic(body, (headers or {}).get("anthropic-beta", ""))
        elif fmt == "gemini":
            check_gemini(body, gemini_model(path))
    except Rejected as rejection:
        return rejection
    return None
