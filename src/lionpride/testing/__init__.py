"""Test helpers for lionpride and for users' own tests.

:class:`FakeProvider` is a real HTTP server on loopback that answers like the OpenAI chat
completions, Anthropic messages and Gemini generateContent APIs, plain JSON and SSE streams. It
records every request, can be scripted (status codes, headers, latency, dropped connections,
truncated bodies, stalled streams, recorded real exchanges) and enforces provider-side request
and token limits with the rate-limit headers real services send.

Point any client at :meth:`FakeProvider.base_url` and talk to it as to the real service::

    import aiohttp
    from lionpride.testing import FakeProvider, Reply

    async def test_my_app_retries_a_429():
        async with FakeProvider(reply_text="Paris.") as fp:
            fp.script(Reply(status=429, headers={"retry-after": "1"}))  # first call fails
            url = fp.base_url("openai") + "/chat/completions"
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
            async with aiohttp.ClientSession() as session:
                async with session.post(url, json=body) as first:
                    assert first.status == 429
                async with session.post(url, json=body) as second:
                    reply = await second.json()
            assert reply["choices"][0]["message"]["content"] == "Paris."
            assert fp.requests[1].body["model"] == "gpt-4o-mini"

Every request is first checked as the live API checks it; one the API would refuse (a tool
result that answers no call, a missing Anthropic ``max_tokens``, OpenAI-shaped tools sent to
Gemini, ...) gets that provider's own HTTP 400 body, whatever is scripted.

Without a script every request gets a generated reply in the format its path names
(``*/chat/completions``, ``*/messages``, ``*/models/{model}:generateContent`` or
``:streamGenerateContent?alt=sse``, ``*/responses`` with its typed events, ``*/embeddings``,
``:embedContent`` and ``:batchEmbedContents`` with vectors derived from the text, and the
token-count routes ``*/messages/count_tokens``, ``:countTokens``, ``*/responses/input_tokens``),
streamed when the request asks for a stream, with usage counted from the prompt (a token per
four characters of text) and the reply (a token per word). An unknown path is a 404 in the
caller's provider shape. A request that forces a tool is answered with a call whose arguments fit
the tool's schema, and a structured-output request with JSON that fits its schema (unless
``reply_text`` is set).
``Reply.from_wire(record)`` replays a recorded exchange byte for byte. ``FakeProvider(
limit_requests=5, window=1.0)`` answers the sixth immediate request with a 429 and a
``retry-after`` header, as the real services do. :class:`FakeClock` (from
:mod:`lionpride.core.clock`) drives time in unit tests without sleeping. :func:`load_script`
reads a script from a JSON file, the format ``lionpride fake-provider --script FILE`` serves
for tests written in other languages.
"""

from __future__ import annotations

from lionpride.core.clock import FakeClock
from lionpride.errors import ScriptError
from lionpride.testing._fake_provider import FakeProvider
from lionpride.testing._replies import ReceivedRequest, Reply
from lionpride.testing._script_file import load_script

__all__ = ["FakeClock", "FakeProvider", "ReceivedRequest", "Reply", "ScriptError", "load_script"]
