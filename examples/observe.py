"""Log one record per call and aggregate metrics, offline (litellm's mock_response)."""

from __future__ import annotations

import asyncio
import logging

from fixedmodel import InMemoryMetrics, bind_acompletion, with_cache, with_logging, with_metrics


async def main() -> None:
    # INFO for fixedmodel's records only: litellm's logger has its own handler, so a root
    # logger at INFO (basicConfig(level=INFO)) would print each litellm line twice.
    logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("fixedmodel").setLevel(logging.INFO)
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
