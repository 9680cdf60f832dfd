"""FakeProvider's rate-limit headers, request ids, opt-in scripted limits and mid-run changes."""

from __future__ import annotations

from datetime import datetime

import aiohttp
import pytest

from lionpride.testing import FakeProvider, Reply
from lionpride.testing._limits import ProviderLimits, format_duration

OPENAI = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0599, "59.9ms"),
        (0.01201, "12.1ms"),
        (1.5, "1.5s"),
        (90.5, "1m30.5s"),
        (360.0, "6m0s"),
        (7200.0, "2h0m0s"),
        (3723.5, "1h2m3.5s"),
    ],
)
def test_openai_durations_are_written_as_the_service_writes_them(seconds: float, text: str) -> None:
    """Resets read as OpenAI writes them, hours included, rounded up, never early."""
    assert format_duration(seconds) == text


def test_anthropic_reset_is_when_the_bucket_is_full_never_earlier() -> None:
    """The RFC 3339 reset is rounded up to the second: a client that waits until then fits."""
    limits = ProviderLimits(requests=60, tokens=None, window=60.0, now=0.0)
    limits.admit(0, 0.0)  # one request taken: full again in exactly 1 s
    wall = 1_000_000.25
    reset = limits.headers("anthropic", wall=wall)["anthropic-ratelimit-requests-reset"]
    full_at = datetime.fromisoformat(reset.replace("Z", "+00:00")).timestamp()
    assert full_at == 1_000_002.0  # 1_000_001.25 rounded up, not down to 1_000_001


def test_anthropic_token_families_each_have_their_headers() -> None:
    """Input and output token limits are metered apart and sent as their own families."""
    limits = ProviderLimits(
        requests=None, tokens=None, window=60.0, now=0.0, input_tokens=100, output_tokens=50
    )
    assert limits.admit(70, 0.0, output=30).admitted
    headers = limits.headers("anthropic", wall=0.0)
    assert headers["anthropic-ratelimit-input-tokens-remaining"] == "60"
    assert headers["anthropic-ratelimit-output-tokens-remaining"] == "20"
    refused = limits.admit(30, 0.0, output=30)
    assert not refused.admitted and refused.kind == "output_tokens"


@pytest.mark.parametrize(
    ("path", "body", "header"),
    [("/v1/chat/completions", OPENAI, "x-request-id"), ("/v1/messages", ANTHROPIC, "request-id")],
)
async def test_every_answer_has_a_request_id(path: str, body: dict, header: str) -> None:  # type: ignore[type-arg]
    """Generated, scripted and refused answers all carry the service's request id header."""
    async with FakeProvider(limit_requests=1, window=60.0) as fp, aiohttp.ClientSession() as s:
        fp.script(Reply(status=500))
        ids = []
        for _ in range(3):  # scripted 500, generated 200, refused 429
            async with s.post(fp.url + path, json=body) as resp:
                ids.append(resp.headers[header])
    assert len(set(ids)) == 3 and all(i.startswith("req_") for i in ids)


async def test_scripted_replies_can_opt_into_the_limits() -> None:
    """A scripted reply with limited=True is refused once the limit is spent, else it is
    served with the rate-limit headers; other scripted replies ignore the limits."""
    async with FakeProvider(limit_requests=1, window=60.0) as fp, aiohttp.ClientSession() as s:
        fp.script(Reply(text="a", limited=True), Reply(text="b", limited=True), Reply(text="c"))
        answers = []
        for _ in range(3):
            async with s.post(fp.url + "/v1/chat/completions", json=OPENAI) as resp:
                answers.append((resp.status, resp.headers.get("x-ratelimit-remaining-requests")))
    assert answers == [(200, "0"), (429, "0"), (200, None)]


async def test_limits_change_mid_run() -> None:
    """set_limits replaces the limits at once, with full buckets of the new size."""
    async with FakeProvider(limit_requests=100, window=60.0) as fp, aiohttp.ClientSession() as s:
        fp.set_limits(limit_requests=2, window=60.0)
        statuses = []
        for _ in range(3):
            async with s.post(fp.url + "/v1/chat/completions", json=OPENAI) as resp:
                statuses.append((resp.status, resp.headers["x-ratelimit-limit-requests"]))
    assert statuses == [(200, "2"), (200, "2"), (429, "2")]


async def test_limits_can_be_enforced_without_headers() -> None:
    """limit_headers=False refuses as before but tells nothing but retry-after."""
    async with (
        FakeProvider(limit_requests=1, window=60.0, limit_headers=False) as fp,
        aiohttp.ClientSession() as s,
    ):
        for status in (200, 429):
            async with s.post(fp.url + "/v1/chat/completions", json=OPENAI) as resp:
                assert resp.status == status
                assert not any(k.lower().startswith("x-ratelimit") for k in resp.headers)
    assert fp.count_429 == 1
