"""Log one record per call and aggregate metrics, offline (litellm's mock_response)."""

from __future__ import annotations

import asyncio
import logging

from fixedmodel import InMemoryMetrics, bind_acompletion, with_cache, with_logging, with_metrics


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    metrics = InMemoryMetrics()
    async with bind_acompletion("openai/gpt-4o-mini", mock_response="Observed.") as bound:
        chat = with_logging(with_metrics(with_cache(bound), metrics))
        for _ in range(3):  # the second and third calls are cache hits
            await chat(messages=[{"role": "user", "content": "Hi"}])
    summary = metrics.summary()
    print(f"calls={summary.calls} cache_hit_rate={summary.cache_hit_rate:.2f}")
    print(f"completion_tokens={summary.completion_tokens} p50={summary.latency_p50 * 1000:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
