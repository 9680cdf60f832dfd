"""A real ``redis-server`` on a free loopback port, started per test and killed after it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process without persistence; it can be killed and started again."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = directory
        self._proc: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None

    def start(self) -> None:
        """Start the server and return once it accepts connections and answers PING."""
        assert REDIS_SERVER is not None
        proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._proc = proc
        assert proc.stdout is not None
        # redis-server logs this line once it listens; reading the pipe blocks, never polls.
        for line in proc.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError(f"redis-server exited with {proc.wait()} before it was ready")
        # Keep reading so the server never blocks on a full log pipe.
        self._drain = threading.Thread(target=proc.stdout.read, daemon=True)
        self._drain.start()
        import redis

        client = redis.Redis(port=self.port, socket_timeout=5)
        try:
            assert client.ping()
        finally:
            client.close()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._drain is not None:
            self._drain.join()
            self._drain = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server; skipped (or failed under LIONPRIDE_REQUIRE_REDIS=1) without one."""
    if REDIS_SERVER is None:
        reason = "redis-server binary not found on PATH (apt-get install redis-server)"
        if os.environ.get("LIONPRIDE_REQUIRE_REDIS") == "1":
            pytest.fail(f"LIONPRIDE_REQUIRE_REDIS=1 but {reason}")
        pytest.skip(reason)
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()
