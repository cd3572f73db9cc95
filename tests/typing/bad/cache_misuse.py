"""with_cache call sites that MUST be rejected by mypy --strict and pyright.

Each line ending in ``# expect-error`` must be reported by both checkers at that very line;
no other line may be reported. ``tests/typing/test_type_checkers.py`` enforces this.
"""

from __future__ import annotations

from fixedmodel import (
    AFixedModelCompletion,
    EmbeddingResponse,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
)
from fixedmodel.middleware.cache import with_cache
from fixedmodel.stores.disk import DiskCacheStore
from fixedmodel.stores.memory import MemoryCacheStore

MESSAGES = [{"role": "user", "content": "Hi"}]


def takes_async(chat: AFixedModelCompletion) -> None: ...


def embedding_check(response: EmbeddingResponse) -> bool:
    return True


async def cache_misuse() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini")
    sync_chat = bind_completion("openai/gpt-4o-mini")
    embed = bind_aembedding("openai/text-embedding-3-small")

    with_cache(chat, ttl="60")  # expect-error
    with_cache(chat, 60)  # expect-error
    with_cache(chat, store=object())  # expect-error
    with_cache(chat, MemoryCacheStore)  # expect-error
    with_cache(chat, validator=embedding_check)  # expect-error
    with_cache(chat, namespace=2)  # expect-error
    with_cache(chat, max_size=10)  # expect-error
    with_cache("openai/gpt-4o-mini")  # expect-error
    takes_async(with_cache(sync_chat))  # expect-error
    takes_async(with_cache(embed))  # expect-error
    await with_cache(sync_chat)(messages=MESSAGES)  # expect-error
    await with_cache(chat)(messages=MESSAGES, model="openai/gpt-4o")  # expect-error
    await with_cache(chat)(messages=MESSAGES, temprature=0.2)  # expect-error
    await with_cache(embed)(input=["a"], temperature=0.1)  # expect-error
    MemoryCacheStore(max_entries="10")  # expect-error
    DiskCacheStore(size_limit=2**30)  # expect-error
