"""Closing bound objects: bounded waits, and evicted clients closed only when no call holds them."""

from __future__ import annotations

import asyncio
import time

import litellm
import pytest

from fixedmodel import _resources, bind_acompletion, bind_completion

MESSAGES = [{"role": "user", "content": "Hi"}]


class FakeClient:
    """Stands in for an SDK client in litellm's cache; records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeAsyncClient:
    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_aclose_waits_for_the_logging_worker_at_most_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # litellm 1.82.6's flush never returned on a second event loop after a streamed call.
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    async def never() -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(GLOBAL_LOGGING_WORKER, "flush", never)
    monkeypatch.setattr(_resources, "CLOSE_TIMEOUT", 0.2)
    chat = bind_acompletion("openai/m", mock_response="x")
    started = time.monotonic()
    await asyncio.wait_for(chat.aclose(), 5)
    assert time.monotonic() - started < 2


def test_a_sync_client_is_closed_only_after_the_calls_that_could_hold_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = litellm.in_memory_llm_clients_cache
    client = FakeClient()
    cache.set_cache("fixedmodel-test-sync-client", client)
    assert "fixedmodel-test-sync-client" in cache.cache_dict
    epoch = _resources._begin(_resources._sync_scope)  # a call in flight, begun before
    bind_completion("openai/m").close()
    assert "fixedmodel-test-sync-client" not in cache.cache_dict  # evicted at once
    assert not client.closed  # but the call in flight may hold it
    later = _resources._begin(_resources._sync_scope)  # begun after: cannot hold it
    _resources._end_sync(epoch)
    assert client.closed
    _resources._end_sync(later)


async def test_an_async_client_is_closed_when_the_last_older_call_ends() -> None:
    cache = litellm.in_memory_llm_clients_cache
    client = FakeAsyncClient()
    key = "fixedmodel-test-async-client" + (_resources._loop_suffix() or "")
    cache.cache_dict[key] = client
    loop = asyncio.get_running_loop()
    scope = _resources._loop_scope(loop)
    epoch = _resources._begin(scope)
    await bind_acompletion("openai/m").aclose()
    assert key not in cache.cache_dict
    assert not client.closed
    _resources._end_async(loop, scope, epoch)
    await bind_acompletion("openai/m").aclose()  # waits for closes under way
    assert client.closed


async def test_a_stream_holds_its_ticket_until_it_ends() -> None:
    chat = bind_acompletion("openai/m", mock_response="one two three")
    scope = _resources._loop_scope(asyncio.get_running_loop())
    stream = await chat(messages=MESSAGES, stream=True)
    assert sum(scope.active.values()) == 1
    async for _chunk in stream:
        pass
    assert sum(scope.active.values()) == 0
    await chat(messages=MESSAGES)
    assert sum(scope.active.values()) == 0
    await chat.aclose()
