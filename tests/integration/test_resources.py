"""Closing a bound object leaves no unclosed session, transport or socket behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from fixedmodel import bind_acompletion, bind_completion, responses
from tests.support.openai_server import Fault, OpenAIServer

ROOT = Path(__file__).parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio
    from fixedmodel import bind_acompletion, bind_aembedding, bind_completion, responses
    from tests.support.openai_server import OpenAIServer

    async def use_async(base_url):
        async with bind_acompletion("openai/m", api_base=base_url, api_key="k") as chat:
            await chat(messages=[{"role": "user", "content": "hi"}])
            stream = await chat(messages=[{"role": "user", "content": "hi"}], stream=True)
            print("".join([p async for p in responses.atext_deltas(stream)]))
        async with bind_aembedding("openai/e", api_base=base_url, api_key="k") as embed:
            print(len(responses.embeddings(await embed(input=["a", "b"]))))

    with OpenAIServer() as server:
        asyncio.run(use_async(server.base_url))
        asyncio.run(use_async(server.base_url))  # a second loop, as pytest-asyncio makes
        with bind_completion("openai/m", api_base=server.base_url, api_key="k") as chat:
            print(responses.text(chat(messages=[{"role": "user", "content": "hi"}])))
    """
)


def test_closed_bound_objects_leave_no_resource_warning() -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always::ResourceWarning", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Hello from the loopback server.") == 3
    assert "nclosed" not in result.stderr, result.stderr


async def test_closing_one_object_does_not_break_another_objects_call_in_flight(
    server: OpenAIServer,
) -> None:
    messages = [{"role": "user", "content": "hi"}]
    async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k") as long_lived:
        await long_lived(messages=messages)  # litellm now caches a client for this loop
        server.enqueue(Fault.delay(1.0))

        async def close_another_soon() -> None:
            await asyncio.sleep(0.3)
            async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k"):
                pass

        slow, _ = await asyncio.gather(
            long_lived(messages=messages, max_retries=0), close_another_soon()
        )
    assert responses.text(slow) == server.reply_text


def test_closing_a_sync_object_does_not_break_a_call_in_another_thread(
    server: OpenAIServer,
) -> None:
    messages = [{"role": "user", "content": "hi"}]
    chat = bind_completion("openai/m", api_base=server.base_url, api_key="k")
    chat(messages=messages)
    server.enqueue(Fault.delay(1.0))
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(chat(messages=messages, max_retries=0)))
    worker.start()
    time.sleep(0.3)
    with bind_completion("openai/other", api_base="http://127.0.0.1:9/v1", api_key="z"):
        pass
    worker.join(timeout=10)
    (response,) = outcome
    assert responses.text(response) == server.reply_text  # type: ignore[arg-type]
    chat.close()


UNFINISHED_STREAMS = textwrap.dedent(
    """
    import asyncio
    import sys
    from fixedmodel import bind_acompletion, responses
    from tests.support.openai_server import OpenAIServer

    MESSAGES = [{"role": "user", "content": "hi"}]
    kept = []

    async def broken_out_of(base_url):  # the reviewer's repro
        async with bind_acompletion("openai/m", api_base=base_url, api_key="k") as chat:
            stream = await chat(messages=MESSAGES, stream=True)
            async for piece in responses.atext_deltas(stream):
                break

    async def closed_while_read(base_url):  # read to its end after aclose(), then return
        chat = bind_acompletion("openai/m", api_base=base_url, api_key="k")
        stream = await chat(messages=MESSAGES, stream=True)
        pieces = 0
        async for piece in responses.atext_deltas(stream):
            pieces += 1
            if pieces == 2:
                await chat.aclose()
        print("read after close", pieces)

    async def kept_past_its_loop(base_url):
        chat = bind_acompletion("openai/m", api_base=base_url, api_key="k")
        stream = await chat(messages=MESSAGES, stream=True)
        async for piece in stream:
            break
        await chat.aclose()
        kept.append(stream)

    with OpenAIServer(reply_text=" ".join(f"w{i}" for i in range(60))) as server:
        for scenario in (broken_out_of, closed_while_read, kept_past_its_loop):
            asyncio.run(scenario(server.base_url))
            print(scenario.__name__, "done", flush=True)
    kept.clear()
    """
)


def test_closing_with_an_unfinished_stream_leaves_no_warning() -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-W",
            "error::ResourceWarning",
            "-W",
            "error::RuntimeWarning",
            "-c",
            UNFINISHED_STREAMS,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "read after close 60" in result.stdout, result.stdout  # the read was not cut short
    for scenario in ("broken_out_of", "closed_while_read", "kept_past_its_loop"):
        assert f"{scenario} done" in result.stdout, result.stdout
    assert "nclosed" not in result.stderr, result.stderr
    assert "never awaited" not in result.stderr, result.stderr
