"""Closing one bound object never breaks another object's call, at any point of that call.

Each test keeps object A busy with calls (plain and streamed) against the loopback server
while other objects for the same provider are opened and closed as fast as possible: with
``aclose()`` from another task, with the README's ``async with`` per request, and with
``close()`` from another thread. Every one of A's calls must succeed. The loops are bounded
in time (about 2 s each) and in count.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest

from fixedmodel import bind_acompletion, bind_completion, responses
from tests.support.openai_server import OpenAIServer

MESSAGES = [{"role": "user", "content": "hi"}]
DURATION = 2.0  # seconds each stress loop runs
MAX_ROUNDS = 5_000  # and at most this many closes or calls per loop


async def _hammer_async(server: OpenAIServer, closer: str) -> tuple[int, list[str]]:
    """Run A's calls while other objects close; return A's successes and failures."""
    failures: list[str] = []
    done = 0
    chat = bind_acompletion("openai/m", api_base=server.base_url, api_key="k", max_retries=0)
    await chat(messages=MESSAGES)  # litellm imported and warm before the clock starts
    stop = time.monotonic() + DURATION

    async def use_a() -> None:
        nonlocal done
        for round_number in range(MAX_ROUNDS):
            if time.monotonic() > stop:
                return
            try:
                if round_number % 2:
                    stream = await chat(messages=MESSAGES, stream=True, timeout=10)
                    text = "".join([part async for part in responses.atext_deltas(stream)])
                else:
                    text = responses.text(await chat(messages=MESSAGES, timeout=10))
                assert text == server.reply_text
                done += 1
            except Exception as error:  # recorded, asserted below
                failures.append(f"{type(error).__name__}: {error}")

    async def close_others() -> None:
        for _ in range(MAX_ROUNDS):
            if time.monotonic() > stop:
                return
            if closer == "aclose":
                other = bind_acompletion("openai/m", api_base=server.base_url, api_key="k")
                await other.aclose()
            else:  # the README's pattern: one object per request
                async with bind_acompletion(
                    "openai/m", api_base=server.base_url, api_key="k", max_retries=0
                ) as other:
                    await other(messages=MESSAGES, timeout=10)
            await asyncio.sleep(0)

    async with chat:
        await asyncio.gather(use_a(), use_a(), use_a(), close_others())
    return done, failures


async def test_aclose_from_another_task_never_breaks_a_call_in_flight(
    server: OpenAIServer,
) -> None:
    done, failures = await _hammer_async(server, "aclose")
    assert failures == []
    assert done > 10


async def test_async_with_per_request_never_breaks_another_objects_call(
    server: OpenAIServer,
) -> None:
    done, failures = await _hammer_async(server, "async with")
    assert failures == []
    assert done > 10


# litellm's client cache is not atomic across threads: two threads that miss it at once
# each build a client, and the one stored first is dropped unclosed when the other is
# stored (counted: 5-15 such overwrites per run of this test). Those orphans belong to
# litellm and surface as "unclosed socket" warnings when collected, so this test ignores
# ResourceWarning and collects them before it ends; test_resources.py checks that
# closing leaves nothing open otherwise.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_close_from_another_thread_never_breaks_a_call_in_flight(server: OpenAIServer) -> None:
    failures: list[str] = []
    done = [0]
    chat = bind_completion("openai/m", api_base=server.base_url, api_key="k", max_retries=0)
    chat(messages=MESSAGES)  # litellm imported and warm before the clock starts
    stop = time.monotonic() + DURATION

    def use_a() -> None:
        for round_number in range(MAX_ROUNDS):
            if time.monotonic() > stop:
                return
            try:
                if round_number % 2:
                    stream = chat(messages=MESSAGES, stream=True, timeout=10)
                    text = "".join(responses.text_deltas(stream))
                else:
                    text = responses.text(chat(messages=MESSAGES, timeout=10))
                assert text == server.reply_text
                done[0] += 1
            except Exception as error:  # recorded, asserted below
                failures.append(f"{type(error).__name__}: {error}")

    workers = [threading.Thread(target=use_a) for _ in range(3)]
    for worker in workers:
        worker.start()
    for _ in range(MAX_ROUNDS):
        if time.monotonic() > stop:
            break
        bind_completion("openai/m", api_base=server.base_url, api_key="k").close()
        time.sleep(0.001)
    for worker in workers:
        worker.join(timeout=30)
    chat.close()
    gc.collect()  # litellm's orphans go now, under this test's filter, not during a later test
    assert failures == []
    assert done[0] > 10
