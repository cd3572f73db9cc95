"""Spread one batch over worker processes; state they share lives outside them (offline).

In production the limiter and cache would be Redis stores
(RedisLimiterStore("redis://..."), RedisCacheStore("redis://...")); here a disk cache is the
shared state, so the example runs without a Redis.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor

from fixedmodel import (
    CompletionRequest,
    DiskCacheStore,
    batch_on,
    bind_acompletion,
    with_cache,
    with_retries,
)


def main() -> None:
    requests: list[CompletionRequest] = [
        {"messages": [{"role": "user", "content": f"Item {number}"}]} for number in range(40)
    ]
    with tempfile.TemporaryDirectory() as directory:
        bound = bind_acompletion("openai/gpt-4o-mini", mock_response="Done.")
        stack = with_cache(with_retries(bound), DiskCacheStore(directory))
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            results = list(batch_on(pool, stack, requests, chunk_size=10, concurrency=4))
    print(f"{sum(r.ok for r in results)} of {len(results)} answered, in input order:",
          [r.index for r in results][:5], "...")  # fmt: skip


if __name__ == "__main__":
    main()
