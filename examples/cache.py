"""Offline demo of with_cache: repeated and concurrent requests reach the provider once.

No request leaves the machine: litellm's ``mock_response`` answers without contacting a
provider. Every answer that did not come from the cache is one the provider would have made.
"""

from __future__ import annotations

import asyncio
import tempfile

from fixedmodel import ModelResponse, bind_acompletion, bind_completion, responses
from fixedmodel.middleware.cache import is_cache_hit, with_cache
from fixedmodel.stores.disk import DiskCacheStore
from fixedmodel.stores.memory import MemoryCacheStore

MESSAGES = [{"role": "user", "content": "Say something short."}]


def complete(response: ModelResponse) -> bool:
    """Keep truncated answers out of the cache (the caller still gets them)."""
    return response.choices[0].finish_reason != "length"


async def main() -> None:
    async with bind_acompletion("openai/gpt-4o-mini", mock_response="Cached once.") as bound:
        chat = with_cache(bound, MemoryCacheStore(max_entries=100), ttl=3600, validator=complete)

        first = await chat(messages=MESSAGES)
        second = await chat(messages=MESSAGES)
        print("answers:         ", responses.text(first), "|", responses.text(second))
        print("cache hits:      ", is_cache_hit(first), is_cache_hit(second))
        warmer = await chat(messages=MESSAGES, temperature=0.9)  # Another request.
        print("other request:   ", "hit" if is_cache_hit(warmer) else "miss")

        question = [{"role": "user", "content": "Everyone asks this at once."}]
        answers = await asyncio.gather(*(chat(messages=question) for _ in range(20)))
        misses = sum(not is_cache_hit(answer) for answer in answers)
        print("20 concurrent identical calls made", misses, "provider request")

    with tempfile.TemporaryDirectory() as directory:
        with bind_completion("openai/gpt-4o-mini", mock_response="From disk.") as sync_bound:
            with DiskCacheStore(directory) as store:
                with_cache(sync_bound, store)(messages=MESSAGES)
            # A new store on the same directory, as another process or a restart opens it.
            with DiskCacheStore(directory) as reopened:
                again = with_cache(sync_bound, reopened)(messages=MESSAGES)
        print("after a restart: ", responses.text(again), "| hit:", is_cache_hit(again))


if __name__ == "__main__":
    asyncio.run(main())
