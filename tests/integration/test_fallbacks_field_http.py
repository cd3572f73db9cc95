"""with_fallbacks over real HTTP: litellm talking to loopback servers.

Requests are counted at the servers, so a skip or a fallback that works only in the
wrapper's bookkeeping, and not on the wire, fails here.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import litellm
import openai
import pytest
from litellm.exceptions import MidStreamFallbackError

from fixedmodel import (
    CooldownPolicy,
    bind_acompletion,
    bind_completion,
    responses,
    with_fallbacks,
    with_load_balancing,
)
from fixedmodel.middleware._call import call_scope
from tests.support.openai_server import Fault, OpenAIServer

MESSAGES = [{"role": "user", "content": "Hello there?"}]
MODEL = "openai/gpt-4o-mini"
REPLY = "Hello from the loopback server."


@pytest.fixture
def servers() -> Iterator[list[OpenAIServer]]:
    started = [OpenAIServer().start() for _ in range(2)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def _sync(server: OpenAIServer | str, **defaults: Any) -> Any:
    base = server if isinstance(server, str) else server.base_url
    return bind_completion(MODEL, api_base=base, api_key="sk-test", **defaults)


def _async(server: OpenAIServer | str, **defaults: Any) -> Any:
    base = server if isinstance(server, str) else server.base_url
    return bind_acompletion(MODEL, api_base=base, api_key="sk-test", **defaults)


# Item 1: Retry-After is honoured across calls.


def test_a_primary_that_said_retry_after_is_not_asked_again(
    servers: list[OpenAIServer],
) -> None:
    primary, backup = servers
    primary.enqueue(Fault.status(429, retry_after=47))
    with _sync(primary) as first, _sync(backup) as second:
        chat = with_fallbacks(first, second)
        for _ in range(6):
            with call_scope() as info:
                assert responses.text(chat(messages=MESSAGES)) == REPLY
        assert info.route_skips == ((f"{MODEL}#0", "retry_after"),)
    assert primary.request_count() == 1
    assert backup.request_count() == 6


# Item 5: a 403 that litellm raises as a plain APIError.


async def test_a_403_api_error_falls_back(servers: list[OpenAIServer]) -> None:
    primary, backup = servers
    primary.enqueue(Fault.status(403))
    async with _async(primary) as first, _async(backup) as second:
        with call_scope() as info:
            answer = await with_fallbacks(first, second)(messages=MESSAGES)
    assert responses.text(answer) == REPLY
    assert info.route_failures == ((f"{MODEL}#0", "APIError"),)
    assert backup.request_count() == 1


def test_a_load_balanced_403_deployment_cools_down(servers: list[OpenAIServer]) -> None:
    denied, healthy = servers
    denied.enqueue(*[Fault.status(403)] * 6)
    with _sync(denied) as first, _sync(healthy) as second:
        chat = with_load_balancing(
            [first, second], cooldown=CooldownPolicy(failures=1, cooldown=60.0)
        )
        answers = [responses.text(chat(messages=MESSAGES)) for _ in range(6)]
    assert answers == [REPLY] * 6
    assert denied.request_count() <= 1
    assert healthy.request_count() == 6


# Item 7: a stream's role-only first chunk is not its first content.


def _texts(stream: Any) -> list[str]:
    return list(responses.text_deltas(stream))


def test_a_drop_after_the_role_only_chunk_falls_back(servers: list[OpenAIServer]) -> None:
    primary, backup = servers
    primary.enqueue(Fault.truncated_stream(chunks_before_close=1))  # role chunk, then cut
    with _sync(primary) as first, _sync(backup) as second:
        stream = with_fallbacks(first, second)(messages=MESSAGES, stream=True)
        assert "".join(_texts(stream)) == REPLY
    assert primary.request_count() == 1
    assert backup.request_count() == 1


async def test_async_drop_after_the_role_only_chunk_falls_back(
    servers: list[OpenAIServer],
) -> None:
    primary, backup = servers
    primary.enqueue(Fault.truncated_stream(chunks_before_close=1))
    async with _async(primary) as first, _async(backup) as second:
        stream = await with_fallbacks(first, second)(messages=MESSAGES, stream=True)
        text = "".join([piece async for piece in responses.atext_deltas(stream)])
    assert text == REPLY
    assert backup.request_count() == 1


def test_the_chunks_read_ahead_reach_the_caller_in_order(servers: list[OpenAIServer]) -> None:
    primary, backup = servers
    with _sync(primary) as first, _sync(backup) as second:
        stream = with_fallbacks(first, second)(messages=MESSAGES, stream=True)
        chunks = list(stream)
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert deltas[0].role == "assistant"
    assert not deltas[0].content
    assert "".join(d.content or "" for d in deltas) == REPLY
    assert backup.request_count() == 0


class _StallAfterRole(BaseHTTPRequestHandler):
    """Answers a stream with the role-only chunk, then says nothing until the test ends."""

    release: threading.Event

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        chunk = {
            "id": "chatcmpl-stall",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()
        self.release.wait(10)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def stalling() -> Iterator[str]:
    """A loopback server whose streams stall right after the role-only chunk."""
    release = threading.Event()
    handler = type("Handler", (_StallAfterRole,), {"release": release})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_a_stall_after_the_role_only_chunk_falls_back(
    stalling: str, servers: list[OpenAIServer]
) -> None:
    backup = servers[1]
    with _sync(stalling, timeout=0.5) as first, _sync(backup) as second, call_scope() as info:
        stream = with_fallbacks(first, second)(messages=MESSAGES, stream=True)
        assert "".join(_texts(stream)) == REPLY
    assert backup.request_count() == 1
    assert len(info.route_failures) == 1


async def test_async_stall_after_the_role_only_chunk_falls_back(
    stalling: str, servers: list[OpenAIServer]
) -> None:
    backup = servers[1]
    async with _async(stalling, timeout=0.5) as first, _async(backup) as second:
        stream = await with_fallbacks(first, second)(messages=MESSAGES, stream=True)
        text = "".join([piece async for piece in responses.atext_deltas(stream)])
    assert text == REPLY
    assert backup.request_count() == 1


def test_the_stalling_server_is_reachable(stalling: str) -> None:
    # Guards the two tests above: the stall, not a refused connection, is what they see.
    host, port = stalling.removeprefix("http://").removesuffix("/v1").split(":")
    with socket.create_connection((host, int(port)), timeout=2):
        pass
    with _sync(stalling, timeout=0.5) as only:
        started = time.monotonic()
        stream = only(messages=MESSAGES, stream=True)
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        with pytest.raises(openai.APIError) as raised:
            next(iter(stream))
        assert time.monotonic() - started < 8
    # Newer litellm releases raise the read timeout itself; older ones (1.100) wrap it in a
    # MidStreamFallbackError whose text keeps the timeout's.
    error = raised.value
    assert isinstance(error, litellm.Timeout) or (
        isinstance(error, MidStreamFallbackError) and "timed out" in str(error)
    ), repr(error)
