"""with_cache over real HTTP: hits never reach the loopback server, misses do exactly once."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import diskcache
import litellm
import pytest

from fixedmodel import (
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    bind_embedding,
    responses,
)
from fixedmodel.middleware._call import call_scope
from fixedmodel.middleware.cache import with_cache
from fixedmodel.stores._cache_store import decode_entry
from fixedmodel.stores.disk import DiskCacheStore
from fixedmodel.stores.memory import MemoryCacheStore
from tests.support.openai_server import Fault, OpenAIServer, embedding_vector

MESSAGES = [{"role": "user", "content": "Hello?"}]
SECRET = "sk-SECRET-cache-http-0123456789"
MODEL = "openai/test-model"


async def test_a_hit_skips_the_server(server: OpenAIServer) -> None:
    server.reply_text = "Answered once."
    async with bind_acompletion(MODEL, api_base=server.base_url, api_key=SECRET) as bound:
        chat = with_cache(bound)
        first = await chat(messages=MESSAGES)
        with call_scope() as info:
            second = await chat(messages=MESSAGES)
    assert server.request_count() == 1
    assert responses.text(first) == responses.text(second) == "Answered once."
    assert second._hidden_params["cache_hit"] is True
    assert info.cache_hit
    assert responses.usage(second) == responses.usage(first)


async def test_a_different_temperature_or_message_misses(server: OpenAIServer) -> None:
    async with bind_acompletion(MODEL, api_base=server.base_url, api_key=SECRET) as bound:
        chat = with_cache(bound)
        await chat(messages=MESSAGES, temperature=0.1)
        await chat(messages=MESSAGES, temperature=0.1)
        await chat(messages=MESSAGES, temperature=0.2)
        await chat(messages=[{"role": "user", "content": "Something else?"}], temperature=0.1)
    assert server.request_count() == 3


async def test_api_key_does_not_change_the_key_but_api_base_does(server: OpenAIServer) -> None:
    store = MemoryCacheStore()
    by_ip = server.base_url
    by_name = f"http://localhost:{server.port}/v1"

    async def ask(api_base: str, api_key: str) -> bool:
        async with bind_acompletion(MODEL, api_base=api_base, api_key=api_key) as bound:
            response = await with_cache(bound, store)(messages=MESSAGES)
        return response._hidden_params.get("cache_hit") is True

    assert not await ask(by_ip, SECRET)
    assert await ask(by_ip, "sk-another-key")
    assert server.request_count() == 1
    assert not await ask(by_name, SECRET)
    assert server.request_count() == 2


async def test_a_corrupt_disk_entry_is_a_miss_and_is_overwritten(
    server: OpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with DiskCacheStore(tmp_path) as store:
        async with bind_acompletion(MODEL, api_base=server.base_url, api_key=SECRET) as bound:
            chat = with_cache(bound, store)
            await chat(messages=MESSAGES)
            with diskcache.Cache(str(tmp_path)) as raw:
                [key] = list(raw)
                raw.set(key, b"\x00garbage that is no entry")
            with caplog.at_level(logging.WARNING, "fixedmodel.cache"):
                again = await chat(messages=MESSAGES)
            assert again._hidden_params.get("cache_hit") is not True
            assert server.request_count() == 2
            assert any("corrupt cache entry" in r.getMessage() for r in caplog.records)
            with diskcache.Cache(str(tmp_path)) as raw:
                assert decode_entry(raw.get(key))[0] == "completion"
            hit = await chat(messages=MESSAGES)
    assert hit._hidden_params["cache_hit"] is True
    assert server.request_count() == 2


_WRITER = textwrap.dedent(
    """
    import sys

    from fixedmodel import bind_completion, responses
    from fixedmodel.middleware.cache import with_cache
    from fixedmodel.stores.disk import DiskCacheStore

    directory, api_base, api_key = sys.argv[1:]
    with DiskCacheStore(directory) as store:
        with bind_completion("openai/test-model", api_base=api_base, api_key=api_key) as bound:
            response = with_cache(bound, store)(messages=[{"role": "user", "content": "Hello?"}])
    print(responses.text(response), response._hidden_params.get("cache_hit") is True)
    """
)


def _run_writer(directory: Path, server: OpenAIServer) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _WRITER, str(directory), server.base_url, SECRET],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.heavy  # Starts another interpreter; run at the newest litellm only.
def test_a_disk_entry_written_by_one_process_is_a_hit_in_another(
    server: OpenAIServer, tmp_path: Path
) -> None:
    server.reply_text = "Persisted."
    assert _run_writer(tmp_path, server) == "Persisted. False"
    assert server.request_count() == 1
    assert _run_writer(tmp_path, server) == "Persisted. True"
    assert server.request_count() == 1
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert files
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path


async def test_fifty_identical_concurrent_calls_make_one_request(server: OpenAIServer) -> None:
    server.latency = 0.2
    async with bind_acompletion(MODEL, api_base=server.base_url, api_key=SECRET) as bound:
        chat = with_cache(bound)
        results = await asyncio.gather(*(chat(messages=MESSAGES) for _ in range(50)))
    assert server.request_count() == 1
    assert {responses.text(r) for r in results} == {server.reply_text}
    assert sum(r._hidden_params.get("cache_hit") is True for r in results) == 49


async def test_concurrent_callers_share_the_leaders_error(server: OpenAIServer) -> None:
    server.latency = 0.2
    server.enqueue(Fault.status(400, message="Bad request for everyone."))
    async with bind_acompletion(MODEL, api_base=server.base_url, api_key=SECRET) as bound:
        chat = with_cache(bound)
        results = await asyncio.gather(
            *(chat(messages=MESSAGES) for _ in range(20)), return_exceptions=True
        )
        assert server.request_count() == 1
        assert all(isinstance(r, litellm.BadRequestError) for r in results)
        await chat(messages=MESSAGES)  # The error was not stored: this asks the server.
    assert server.request_count() == 2


async def test_async_embeddings_are_cached(server: OpenAIServer) -> None:
    async with bind_aembedding(
        "openai/text-embedding-3-small", api_base=server.base_url, api_key=SECRET
    ) as bound:
        embed = with_cache(bound)
        first = await embed(input=["first", "second"])
        second = await embed(input=["first", "second"])
        await embed(input=["third"])
    assert server.request_count("/embeddings") == 2
    assert responses.embeddings(second) == responses.embeddings(first)
    assert responses.embeddings(second)[0] == pytest.approx(embedding_vector("first"))
    assert second._hidden_params["cache_hit"] is True


def test_sync_completion_and_embedding_are_cached(server: OpenAIServer, tmp_path: Path) -> None:
    with (
        DiskCacheStore(tmp_path) as store,
        bind_completion(MODEL, api_base=server.base_url, api_key=SECRET) as chat_bound,
        bind_embedding(
            "openai/text-embedding-3-small", api_base=server.base_url, api_key=SECRET
        ) as embed_bound,
    ):
        chat, embed = with_cache(chat_bound, store), with_cache(embed_bound, store)
        assert chat(messages=MESSAGES)._hidden_params.get("cache_hit") is not True
        assert chat(messages=MESSAGES)._hidden_params["cache_hit"] is True
        embed(input="only one")
        hit = embed(input="only one")
    assert hit._hidden_params["cache_hit"] is True
    assert responses.embeddings(hit)[0] == pytest.approx(embedding_vector("only one"))
    assert server.request_count() == 1
    assert server.request_count("/embeddings") == 1


def test_identical_concurrent_sync_calls_make_one_request(server: OpenAIServer) -> None:
    server.latency = 0.2
    with bind_completion(MODEL, api_base=server.base_url, api_key=SECRET) as bound:
        chat = with_cache(bound)
        texts: list[str] = []
        threads = [
            threading.Thread(target=lambda: texts.append(responses.text(chat(messages=MESSAGES))))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert texts == [server.reply_text] * 8
    assert server.request_count() == 1


async def test_streams_always_reach_the_server(server: OpenAIServer) -> None:
    async with bind_acompletion(MODEL, api_base=server.base_url, api_key=SECRET) as bound:
        chat = with_cache(bound)
        for _ in range(2):
            stream = await chat(messages=MESSAGES, stream=True)
            assert "".join([p async for p in responses.atext_deltas(stream)]) == server.reply_text
    assert server.request_count() == 2
