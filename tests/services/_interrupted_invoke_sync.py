"""A script for the Ctrl-C test of ``invoke_sync``: run as ``python _interrupted_invoke_sync.py
LATENCY``, it makes one blocking call that a FakeProvider answers after ``LATENCY`` seconds.

It prints ``in flight`` once the request has reached the provider, so the test knows when to
send SIGINT; interrupted, it prints the executor's counters as JSON and lets the
``KeyboardInterrupt`` end the process once the model is closed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading

from pydantic import SecretStr

from lionpride.services import iModel
from lionpride.testing import FakeProvider


def main(latency: float) -> None:
    """Serve a slow FakeProvider from a thread and block on one call to it."""
    # A parent that ignores SIGINT (a background job of a shell) passes that on; the test
    # needs Python's own handler, which raises KeyboardInterrupt on the main thread.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    fp = FakeProvider(latency=latency)
    asyncio.run_coroutine_threadsafe(fp.start(), loop).result()
    arrived = asyncio.run_coroutine_threadsafe(fp.wait_for_requests(1), loop)
    arrived.add_done_callback(lambda _: print("in flight", flush=True))
    model = iModel(
        provider="openai",
        base_url=fp.base_url("openai"),
        api_key=SecretStr("k"),
        limit_requests=10,
    )
    try:
        model.invoke_sync(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    except KeyboardInterrupt:
        assert model.executor is not None
        print(json.dumps(model.executor.stats()), flush=True)
        raise
    finally:
        model.close()


if __name__ == "__main__":
    main(float(sys.argv[1]))
