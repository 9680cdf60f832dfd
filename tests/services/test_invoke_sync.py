"""iModel.invoke_sync: a blocking call on a private loop that keeps its connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from lionpride import errors
from lionpride.services import iModel
from lionpride.services.types.hook import HookPhase, HookRegistry
from lionpride.services.utilities.resilience import no_backoff
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Capital of France?"}]


@contextlib.contextmanager
def provider_in_thread(**limits: Any) -> Iterator[FakeProvider]:
    """A FakeProvider serving from its own thread's loop, so this thread may block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fp = FakeProvider(reply_text="Paris.", **limits)
    asyncio.run_coroutine_threadsafe(fp.__aenter__(), loop).result(10)
    try:
        yield fp
    finally:
        asyncio.run_coroutine_threadsafe(fp.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class Connections:
    """Counts the client's new and reused connections (aiohttp's public tracing hooks)."""

    def __init__(self) -> None:
        self.created = 0
        self.reused = 0
        self.trace = aiohttp.TraceConfig()
        self.trace.on_connection_create_end.append(self._created)
        self.trace.on_connection_reuseconn.append(self._reused)

    async def _created(self, *_: Any) -> None:
        self.created += 1

    async def _reused(self, *_: Any) -> None:
        self.reused += 1


def answers_from_threads(model: iModel, threads: int, wait: float) -> list[str]:
    """The answers of one blocking call from each of ``threads`` threads started at once,
    joined for up to ``wait`` seconds each (a thread still waiting then adds nothing)."""
    answers: list[str] = []

    def call() -> None:
        calling = model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES)
        answers.append(calling.response.data)

    workers = [threading.Thread(target=call, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(wait)
    return answers


def openai_model(fp: FakeProvider, connections: Connections, **kw: Any) -> iModel:
    """An OpenAI-format model on ``fp`` whose connections are counted."""
    return iModel(
        provider="openai",
        base_url=fp.base_url("openai"),
        api_key=SecretStr("k"),
        client_kwargs={"trace_configs": [connections.trace]},
        **kw,
    )


def test_sync_calls_share_one_pooled_connection() -> None:
    """Three blocking calls go through the model's limits and return completed Callings over
    one connection, reused; a call after close() opens a new one."""
    connections = Connections()
    with provider_in_thread() as fp:
        with openai_model(fp, connections, limit_requests=10) as model:
            callings = [model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES) for _ in "abc"]
            assert model.executor is not None and model.executor.stats()["completed"] == 3
        assert [c.response.data for c in callings] == ["Paris."] * 3
        assert (connections.created, connections.reused) == (1, 2)
        model = openai_model(fp, connections)
        model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES)
        model.close()
        model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES)
        model.close()
    assert connections.created == 3


def test_sync_call_retries_and_raises_like_invoke() -> None:
    """A 429 is retried as for invoke; a failure raises the typed error with its Calling,
    or returns the failed Calling with raise_on_error=False."""
    connections = Connections()
    with provider_in_thread() as fp, no_backoff():
        fp.script(Reply(status=429), Reply(status=401))
        with openai_model(fp, connections, retry_config=None) as model:
            with pytest.raises(errors.RateLimitError) as caught:
                model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES)
            assert caught.value.calling is not None
            failed = model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES, raise_on_error=False)
            assert isinstance(failed.execution.error, errors.AuthenticationError)
        with openai_model(fp, connections) as model:
            fp.script(Reply(status=429))
            done = model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES)
            assert done.response.data == "Paris." and done.execution.attempts == 2


async def test_sync_call_inside_a_running_loop_is_refused() -> None:
    """Inside async code invoke_sync and close refuse, pointing to the awaitable methods,
    and leave no coroutine un-awaited."""
    model = iModel(provider="openai", base_url="http://127.0.0.1:9", api_key=SecretStr("k"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(errors.ExecutionError, match=r"await model\.invoke\(\.\.\.\)"):
            model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(errors.ExecutionError, match=r"await model\.aclose\(\)"):
            model.close()
    await model.aclose()


def test_aclose_closes_the_idle_private_loops() -> None:
    """``await model.aclose()`` in async code closes the loop that blocking calls made in
    another thread (reused by both calls there)."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def note_loop(event: object, **kwargs: Any) -> None:
        loops.append(asyncio.get_running_loop())

    hooks = HookRegistry()
    hooks.register(HookPhase.PreInvocation, note_loop)
    connections = Connections()
    with provider_in_thread() as fp:
        model = openai_model(fp, connections, hook_registry=hooks)

        async def main() -> None:
            with ThreadPoolExecutor(max_workers=1) as worker:
                for _ in range(2):
                    await asyncio.get_running_loop().run_in_executor(
                        worker, lambda: model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES)
                    )
            assert loops[0] is loops[1] and not loops[0].is_closed()
            await model.aclose()

        asyncio.run(main())
    assert (connections.created, connections.reused) == (1, 1)
    assert loops[0].is_closed()


def test_sync_calls_from_many_threads_share_the_limits() -> None:
    """Blocking calls from six threads at once, two per half second allowed, all complete
    (none left waiting for a wake-up from another thread's loop) and none is refused by a
    provider enforcing the same limit."""
    with provider_in_thread(limit_requests=2, window=0.5) as fp:
        model = openai_model(
            fp, Connections(), limit_requests=2, capacity_refresh_time=0.5, retry_config=None
        )
        answers = answers_from_threads(model, 6, wait=30)
        model.close()
    assert answers == ["Paris."] * 6
    assert fp.count_429 == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_leaves_the_parents_connections_working() -> None:
    """A child forked after a blocking call makes its own calls, and the parent's next call
    on its pooled connection still gets its answer (the child never closes the parent's
    sockets, which would unregister them from the epoll the two share)."""
    with provider_in_thread() as fp:
        model = openai_model(fp, Connections(), limit_requests=100)
        model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                calling = model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES)
                code = 0 if calling.response.data == "Paris." else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        again = model.invoke_sync(model="gpt-4o-mini", messages=MESSAGES, poll_timeout=10)
        assert again.response.data == "Paris."
        model.close()


async def test_blocking_calls_from_worker_threads_share_the_limits_with_awaited_ones() -> None:
    """In an async program that has used the model, blocking calls from worker threads and
    awaited calls, six of each at once under two per half second, all complete and none is
    refused by a provider enforcing the same limit: one queue serves them all."""
    async with FakeProvider(reply_text="Paris.", limit_requests=2, window=0.5) as fp:
        model = openai_model(
            fp, Connections(), limit_requests=2, capacity_refresh_time=0.5, retry_config=None
        )
        await model.invoke(model="gpt-4o-mini", messages=MESSAGES)
        blocking = [
            asyncio.to_thread(model.invoke_sync, model="gpt-4o-mini", messages=MESSAGES)
            for _ in range(6)
        ]
        awaited = [model.invoke(model="gpt-4o-mini", messages=MESSAGES) for _ in range(6)]
        callings = await asyncio.gather(*blocking, *awaited)
        await model.aclose()
    assert [c.response.data for c in callings] == ["Paris."] * 12
    assert fp.count_429 == 0


async def test_blocking_calls_never_wait_for_a_loop_blocked_on_them() -> None:
    """Worker threads that a notebook cell waits for, the cell blocking the loop that used
    the model, get their answers (their calls go to the model's own loop once the blocked
    one has not started them) instead of waiting for it for ever."""
    with provider_in_thread() as fp:
        model = openai_model(fp, Connections(), limit_requests=10)
        await model.invoke(model="gpt-4o-mini", messages=MESSAGES)
        # Joining the threads blocks this loop, as a cell waiting for its threads does.
        assert answers_from_threads(model, 2, wait=10) == ["Paris."] * 2
        await model.aclose()


def test_ctrl_c_ends_a_slow_blocking_call_at_once() -> None:
    """A real SIGINT to a process blocked in invoke_sync on a call the provider answers after
    60 s cancels the call, returns its concurrency slot, and ends the process with
    KeyboardInterrupt long before the answer would come."""
    script = Path(__file__).with_name("_interrupted_invoke_sync.py")
    with subprocess.Popen(
        [sys.executable, str(script), "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        assert first == "in flight\n", process.stderr.read()
        interrupted = time.monotonic()
        os.kill(process.pid, signal.SIGINT)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("invoke_sync still blocked 30 s after SIGINT (the answer comes at 60 s)")
        ended = time.monotonic() - interrupted
    assert process.returncode == -signal.SIGINT, err
    assert "KeyboardInterrupt" in err.splitlines(), err
    stats = json.loads(out)
    assert (stats["in_flight"], stats["cancelled"]) == (0, 1), stats
    assert ended < 10, f"the process ended {ended:.1f} s after SIGINT"
