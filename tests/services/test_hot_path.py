"""The per-call shortcuts of the HTTP path keep the behaviour of the long way round."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.services import iModel
from lionpride.services.types import endpoint as endpoint_module
from lionpride.services.types.endpoint import _dumps
from lionpride.testing import FakeProvider

MESSAGES = [{"role": "user", "content": "hi"}]


def test_request_bodies_are_compact_utf8_json() -> None:
    body = _dumps({"a": [1, 2.5, None, True], "s": 'é"\n'})
    assert body == '{"a":[1,2.5,null,true],"s":"é\\"\\n"}'.encode()
    with pytest.raises(TypeError, match="object"):
        _dumps({"x": object()})


async def test_attempts_with_the_same_time_left_share_timeouts_and_later_ones_get_less() -> None:
    model = iModel(provider="openai", base_url="http://127.0.0.1:9/v1", api_key="k", timeout=30)
    endpoint = model.backend
    clock = FakeClock(100.0)
    endpoint._rt.clock = clock
    first = endpoint._timeout(endpoint._deadline(None))
    assert first.total == pytest.approx(30.0)
    assert endpoint._timeout(endpoint._deadline(None)) is first
    deadline = endpoint._deadline(None)
    await clock.advance(12.0)  # a retry, 12 s later: only what is left of the deadline
    later = endpoint._timeout(deadline)
    assert later is not first and later.total == pytest.approx(18.0)
    assert later.connect is not None and later.connect <= 18.0


async def test_create_calling_builds_the_same_calling_with_or_without_caller_values() -> None:
    model = iModel(provider="openai", base_url="http://127.0.0.1:9/v1", api_key="k")
    plain = await model.create_calling(model="m", messages=MESSAGES)
    timed = await model.create_calling(model="m", messages=MESSAGES, timeout=5.0)
    assert plain.payload == timed.payload == {"model": "m", "messages": MESSAGES}
    assert plain.timeout is None and timed.timeout == 5.0
    assert plain.retry_listener is not None and plain.hook_registry is None
    assert plain.model_fields_set == {"backend", "payload", "retry_listener"}
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
    model = iModel(provider="openai", base_url=fake_provider.base_url("openai"), api_key="k")
    await model.invoke(model="m", messages=MESSAGES)
    session = model.backend._rt.session
    await model.invoke(model="m", messages=MESSAGES)
    assert model.backend._rt.session is session
    # As in a forked child: the parent's session (and its sockets) are not used or closed.
    monkeypatch.setattr(endpoint_module._Process, "pid", endpoint_module._Process.pid + 1)
    await model.invoke(model="m", messages=MESSAGES)
    replacement = model.backend._rt.session
    assert replacement is not session and session is not None and not session.closed
    await model.aclose()
    await session.close()


async def test_a_session_is_not_shared_with_a_loop_in_another_thread(
    fake_provider: FakeProvider,
) -> None:
    """The loop check must tell two running loops apart, not only a closed one."""
    model = iModel(provider="openai", base_url="http://127.0.0.1:9/v1", api_key="k")
    here = model.backend._get_session()

    def elsewhere() -> bool:
        async def run() -> bool:
            other = model.backend._get_session()
            await other.close()
            return other is not here

        return asyncio.run(run())

    assert await asyncio.to_thread(elsewhere)
    await model.aclose()
    await here.close()


def test_bodies_decode_as_utf8_and_in_the_encodings_json_allows() -> None:
    endpoint = iModel(provider="openai", base_url="http://127.0.0.1:9/v1", api_key="k").backend
    value = {"text": "héllo ✓"}
    for body in (
        '{"text":"héllo ✓"}'.encode(),
        '\ufeff{"text":"héllo ✓"}'.encode(),  # a UTF-8 byte-order mark
        '{"text":"héllo ✓"}'.encode("utf-16"),
    ):
        assert endpoint._decode(body) == value
    with pytest.raises(errors.InvalidResponseError, match="not JSON"):
        endpoint._decode(b"\xff\xfe\x00garbage")
