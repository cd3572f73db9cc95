"""Batch runners keep the types: results are typed by the callable's kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor

from typing_extensions import assert_type

from fixedmodel import (
    BatchProgress,
    BatchResult,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelResponse,
    abatch,
    aiter_batch,
    batch,
    batch_on,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    with_retries,
)


def show(progress: BatchProgress) -> None:
    print(progress.done, progress.cost, progress.requests_per_second)


async def sites() -> None:
    chat = with_retries(bind_acompletion("openai/gpt-4o-mini"))
    requests: list[CompletionRequest] = [
        {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10, "temperature": None}
    ]
    results = await abatch(chat, requests, concurrency=8, progress=show)
    assert_type(results, list[BatchResult[ModelResponse]])
    assert_type(results[0].response, ModelResponse | None)
    assert_type(results[0].error, BaseException | None)

    async def generated() -> AsyncIterator[CompletionRequest]:
        yield {"messages": [{"role": "user", "content": "Hi"}]}

    async for result in aiter_batch(chat, generated(), ordered=False):
        assert_type(result, BatchResult[ModelResponse])

    embed = bind_aembedding("openai/text-embedding-3-small")
    inputs: list[EmbeddingRequest] = [{"input": ["a", "b"], "dimensions": 256}]
    assert_type(await abatch(embed, inputs), list[BatchResult[EmbeddingResponse]])

    sync_chat = bind_completion("openai/gpt-4o-mini")
    assert_type(batch(sync_chat, requests, ids=["r1"]), list[BatchResult[ModelResponse]])
    with ProcessPoolExecutor() as pool:
        for result in batch_on(pool, chat, requests, chunk_size=50):
            assert_type(result, BatchResult[ModelResponse])
