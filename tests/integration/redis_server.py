"""A real ``redis-server`` on 127.0.0.1 for the Redis store tests, and its fixtures.

Each server runs from a temporary directory with persistence off (``--save ""``,
``--appendonly no``) on a free port. It can be stopped and started again on the same port,
or frozen with SIGSTOP to play a Redis that accepts connections but never answers.

The test modules import the fixtures from here (``from tests.integration.redis_server import
redis_server``); ``tests/integration/conftest.py`` belongs to the HTTP server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
from typing_extensions import Self

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on loopback; a context manager that stops it on exit."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._directory = tempfile.mkdtemp(prefix="fixedmodel-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if self._process is not None:
            return
        self._process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._directory,
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                msg = f"redis-server exited with code {self._process.returncode}"
                raise RuntimeError(msg)
            if self._answers_ping():
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server and wait for it to exit; its data is gone (no persistence)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # A frozen server cannot act on SIGTERM.
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def freeze(self) -> None:
        """Suspend the server: connections are still accepted, but nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume a frozen server."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        shutil.rmtree(self._directory, ignore_errors=True)


def unique_namespace(label: str) -> str:
    """A key prefix no other test uses, so tests sharing one server never interfere."""
    return f"test:{label}:{uuid.uuid4().hex[:8]}:"


_MISSING = (
    "redis-server is not installed: the Redis tests need it (scripts/test.sh installs Debian's"
    " redis-server when run as root; otherwise apt-get install redis-server)"
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server shared by the tests of a module; they keep apart by namespace."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.fail(_MISSING)
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test alone, which it may stop, restart or freeze."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.fail(_MISSING)
    with RedisServer() as server:
        yield server
