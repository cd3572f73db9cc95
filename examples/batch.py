"""Run a batch of requests through a stack, offline (litellm's mock_response)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator

from fixedmodel import (
    DiskCacheStore,
    RateLimit,
    RateLimiter,
    abatch,
    aiter_batch,
    bind_acompletion,
    responses,
    with_cache,
    with_rate_limit,
    with_retries,
)
from fixedmodel.batch import BatchProgress, CompletionRequest


def questions(count: int) -> Iterator[CompletionRequest]:
    # A generator: the runner reads it lazily, as room frees up.
    for number in range(count):
        yield {"messages": [{"role": "user", "content": f"Question {number}"}], "max_tokens": 50}


async def main() -> None:
    limiter = RateLimiter(RateLimit(requests=500, tokens=200_000, period=60))
    with tempfile.TemporaryDirectory() as directory:
        async with bind_acompletion("openai/gpt-4o-mini", mock_response="An answer.") as bound:
            chat = with_cache(with_retries(with_rate_limit(bound, limiter)),
                              DiskCacheStore(directory))  # fmt: skip

            # Every result, in input order; a failed item carries its exception.
            results = await abatch(chat, questions(20), concurrency=8, progress=False)
            answered = [r.response for r in results if r.response is not None]
            print(f"{len(answered)} answered, first: {responses.text(answered[0])}")

            # As they complete, with a callback for the counters (tokens, cost, errors).
            def report(progress: BatchProgress) -> None:
                if progress.done == progress.total:
                    print(f"done: {progress.done}, errors: {progress.errors}, "
                          f"cache hits: {progress.cache_hits}")  # fmt: skip

            async for result in aiter_batch(
                chat, questions(20), concurrency=8, ordered=False, total=20, progress=report
            ):
                assert result.ok  # the second run is answered from the disk cache


if __name__ == "__main__":
    asyncio.run(main())
