"""The loopback OpenAI-compatible server of the tests, run in a child process.

``tests/support/openai_server.py`` serves from a thread of the process that starts it. In a
benchmark that thread would compete for the GIL with the client being measured, so here a
child process runs it: the child prints its port on stdout and serves until its stdin closes.

Run as ``python -m benchmarks._server`` from the repository root (``ServerProcess`` does).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

from typing_extensions import Self

REPO_ROOT = Path(__file__).resolve().parent.parent
_READY = "PORT "
# The server records every request; forget them now and then so a long run stays small.
_RESET_EVERY_SECONDS = 5.0


class ServerProcess:
    """A child process serving the loopback OpenAI-compatible API on ``127.0.0.1``.

    Use it as a context manager: ``with ServerProcess() as server: server.base_url``.
    """

    def __init__(self, *, start_timeout: float = 30.0) -> None:
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[str] | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        """Base URL for OpenAI clients: ``http://127.0.0.1:PORT/v1``."""
        if self._process is None:
            raise RuntimeError("server process is not running")
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def pid(self) -> int:
        """Process id of the child."""
        if self._process is None:
            raise RuntimeError("server process is not running")
        return self._process.pid

    def start(self) -> Self:
        """Start the child and return once it listens."""
        if self._process is not None:
            raise RuntimeError("server process already started")
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._server"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._process = process
        try:
            self._port = _read_port(process, self._start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Ask the child to stop (by closing its stdin) and wait for it; kill it if it hangs."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _read_port(process: subprocess.Popen[str], timeout: float) -> int:
    # readline() has no timeout of its own; a timer kills a child that never gets ready.
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        line = process.stdout.readline() if process.stdout is not None else ""
    finally:
        timer.cancel()
    if not line.startswith(_READY):
        msg = f"benchmark server did not start (exit code {process.poll()}, said {line!r})"
        raise RuntimeError(msg)
    return int(line[len(_READY) :])


def _serve() -> None:
    from tests.support.openai_server import OpenAIServer

    stdin_closed = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stdin_closed.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    with OpenAIServer() as server:
        print(f"{_READY}{server.port}", flush=True)
        while not stdin_closed.wait(_RESET_EVERY_SECONDS):
            server.clear_requests()  # Faults and batch jobs stay.


if __name__ == "__main__":
    _serve()
