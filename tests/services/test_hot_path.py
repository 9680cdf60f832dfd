"""The per-call shortcuts of the HTTP path keep the behaviour of the long way round."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.services import iModel
from lionpride.services.types import _transport
from lionpride.services.types._json_wire import json_dumps
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "hi"}]


def test_request_bodies_are_compact_utf8_json() -> None:
    body = json_dumps({"a": [1, 2.5, None, True], "s": 'é"\n'})
    assert body == '{"a":[1,2.5,null,true],"s":"é\\"\\n"}'.encode()
    with pytest.raises(TypeError, match="object"):
        json_dumps({"x": object()})


async def test_attempts_with_the_same_time_left_share_timeouts_and_later_ones_get_less() -> None:
    model = iModel(
        provider="openai", base_url="http://127.0.0.1:9/v1", api_key=SecretStr("k"), timeout=30
    )
    endpoint = model.backend
    clock = FakeClock(100.0)
    endpoint._transport.clock = clock
    first = endpoint._transport._timeout(endpoint, endpoint._deadline(None))
    assert first.total == pytest.approx(30.0)
    assert endpoint._transport._timeout(endpoint, endpoint._deadline(None)) is first
    deadline = endpoint._deadline(None)
    await clock.advance(12.0)  # a retry, 12 s later: only what is left of the deadline
    later = endpoint._transport._timeout(endpoint, deadline)
    assert later is not first and later.total == pytest.approx(18.0)
    assert later.connect is not None and later.connect <= 18.0


async def test_create_calling_builds_the_same_calling_with_or_without_caller_values() -> None:
    model = iModel(provider="openai", base_url="http://127.0.0.1:9/v1", api_key=SecretStr("k"))
    plain = await model.create_calling(model="m", messages=MESSAGES)
    timed = await model.create_calling(model="m", messages=MESSAGES, timeout=5.0)
    assert plain.payload == timed.payload == {"model": "m", "messages": MESSAGES}
    assert plain.timeout is None and timed.timeout == 5.0
    assert plain.hook_registry is None
    # reserved_tokens: before the first answer the model reserves against a token limit
    # it may learn from it
    assert plain.model_fields_set == {"backend", "payload", "reserved_tokens"}
    with pytest.raises(ValueError, match="timeout"):
        await model.create_calling(model="m", messages=MESSAGES, timeout=-1.0)


async def test_a_replaced_config_changes_the_url_at_once(fake_provider: FakeProvider) -> None:
    model = iModel(provider="openai", base_url="http://127.0.0.1:9/v1", api_key=SecretStr("k"))
    endpoint = model.backend
    assert endpoint.request_url({}) == "http://127.0.0.1:9/v1/chat/completions"
    endpoint.config = endpoint.config.model_copy(
        update={"base_url": fake_provider.base_url("openai")}
    )
    calling = await model.invoke(model="m", messages=MESSAGES)
    assert calling.response is not None and calling.response.data
    await model.aclose()


async def test_the_session_is_reused_on_its_loop_and_left_to_a_forking_parent(
    fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = iModel(
        provider="openai", base_url=fake_provider.base_url("openai"), api_key=SecretStr("k")
    )
    await model.invoke(model="m", messages=MESSAGES)
    session = model.backend._transport.session
    await model.invoke(model="m", messages=MESSAGES)
    assert model.backend._transport.session is session
    # As in a forked child: the parent's session (and its sockets) are not used or closed.
    monkeypatch.setattr(_transport.Process, "pid", _transport.Process.pid + 1)
    await model.invoke(model="m", messages=MESSAGES)
    replacement = model.backend._transport.session
    assert replacement is not session and session is not None and not session.closed
    await model.aclose()
    await session.close()


async def test_a_session_is_not_shared_with_a_loop_in_another_thread(
    fake_provider: FakeProvider,
) -> None:
    """The loop check must tell two running loops apart, not only a closed one."""
    model = iModel(provider="openai", base_url="http://127.0.0.1:9/v1", api_key=SecretStr("k"))
    here = model.backend._transport._session({})

    def elsewhere() -> bool:
        async def run() -> bool:
            other = model.backend._transport._session({})
            await other.close()
            return other is not here

        return asyncio.run(run())

    assert await asyncio.to_thread(elsewhere)
    await model.aclose()
    await here.close()


def test_bodies_decode_as_utf8_and_in_the_encodings_json_allows() -> None:
    endpoint = iModel(
        provider="openai", base_url="http://127.0.0.1:9/v1", api_key=SecretStr("k")
    ).backend
    value = {"text": "héllo ✓"}
    for body in (
        '{"text":"héllo ✓"}'.encode(),
        '\ufeff{"text":"héllo ✓"}'.encode(),  # a UTF-8 byte-order mark
        '{"text":"héllo ✓"}'.encode("utf-16"),
    ):
        assert endpoint._transport._json(endpoint, body) == value
    with pytest.raises(errors.InvalidResponseError, match="not JSON"):
        endpoint._transport._json(endpoint, b"\xff\xfe\x00garbage")


async def test_a_retry_never_gets_more_time_than_is_left(fake_provider: FakeProvider) -> None:
    """A shared ClientTimeout is reused only when it is no longer than the time left."""
    fake_provider.script(Reply(status=503, headers={"retry-after-ms": "0"}))
    model = iModel(
        provider="openai", base_url=fake_provider.base_url("openai"), api_key=SecretStr("k")
    )
    endpoint = model.backend
    clock = FakeClock(1000.0)
    endpoint._transport.clock = clock

    async def on_retry(attempt: int, error: BaseException, delay: float) -> None:
        await clock.advance(0.0009)  # the failed attempt took 0.9 ms

    payload = endpoint.create_payload({"model": "m", "messages": MESSAGES})
    await endpoint.call(payload, timeout=5.0, on_retry=on_retry)
    await model.aclose()
    assert len(fake_provider.requests) == 2
    given = endpoint._transport.timeout
    assert given is not None and given.total is not None
    assert given.total <= 1005.0 - clock.now()


async def test_a_new_config_sends_its_own_key(fake_provider: FakeProvider) -> None:
    """Cached headers follow the config: a rotated key is used from the next call on."""
    url = fake_provider.base_url("openai")
    model = iModel(provider="openai", base_url=url, api_key=SecretStr("old-key"))
    await model.invoke(model="m", messages=MESSAGES)
    rotated = iModel(provider="openai", base_url=url, api_key=SecretStr("new-key"))
    model.backend.config = rotated.backend.config
    await model.invoke(model="m", messages=MESSAGES)
    await model.aclose()
    keys = [r.headers.get("authorization") for r in fake_provider.requests]
    assert keys == ["Bearer old-key", "Bearer new-key"]


async def test_a_copied_endpoint_has_its_own_key_and_sessions(fake_provider: FakeProvider) -> None:
    url = fake_provider.base_url("openai")
    first = iModel(provider="openai", base_url=url, api_key=SecretStr("key-a")).backend
    await first.call(first.create_payload({"model": "m", "messages": MESSAGES}))
    other = iModel(provider="openai", base_url=url, api_key=SecretStr("key-b")).backend
    second = first.model_copy(update={"config": other.config})
    deep = first.model_copy(deep=True)
    assert second._transport is not first._transport and deep._transport is not first._transport
    await second.call(second.create_payload({"model": "m", "messages": MESSAGES}))
    await second.aclose()  # closes the copy's session only
    await first.call(first.create_payload({"model": "m", "messages": MESSAGES}))
    await first.aclose()
    keys = [r.headers.get("authorization") for r in fake_provider.requests]
    assert keys == ["Bearer key-a", "Bearer key-b", "Bearer key-a"]


async def test_a_call_cut_by_aclose_fails_and_opens_no_session(fake_provider: FakeProvider) -> None:
    """Closing a model under a running call fails the call at once instead of retrying it
    on a new session that nothing would close."""
    fake_provider.script(Reply(delay=0.3))
    model = iModel(
        provider="openai", base_url=fake_provider.base_url("openai"), api_key=SecretStr("k")
    )
    call = asyncio.create_task(model.invoke(model="m", messages=MESSAGES))
    await fake_provider.wait_for_requests(1)  # the call is on the wire
    await model.aclose()
    with pytest.raises(errors.ExecutionError, match="closed"):
        await call
    assert model.backend._transport.session is None and len(fake_provider.requests) == 1
    calling = await model.invoke(model="m", messages=MESSAGES)  # a new call opens a session
    assert calling.response is not None
    await model.aclose()
