"""with_cache keeps the callable kind and the exact result types (mypy --strict, pyright)."""

from __future__ import annotations

from typing_extensions import assert_type

from fixedmodel import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    ClosableAFixedModelCompletion,
    ClosableAFixedModelEmbedding,
    ClosableFixedModelCompletion,
    ClosableFixedModelEmbedding,
    CustomStreamWrapper,
    EmbeddingResponse,
    FixedModelCompletion,
    FixedModelEmbedding,
    ModelResponse,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    bind_embedding,
    responses,
)
from fixedmodel.middleware.cache import with_cache
from fixedmodel.stores._cache_store import CacheStore
from fixedmodel.stores.disk import DiskCacheStore
from fixedmodel.stores.memory import MemoryCacheStore

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Hi"}]


def finished(response: ModelResponse) -> bool:
    return responses.text(response) != ""


def has_vectors(response: EmbeddingResponse) -> bool:
    return len(responses.embeddings(response)) > 0


class DictStore:
    """A user-written store: conforms to CacheStore structurally."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.data[key] = value

    async def aget(self, key: str) -> bytes | None:
        return self.get(key)

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        self.set(key, value, ttl)


async def async_sites(flag: bool) -> None:
    chat = with_cache(bind_acompletion("openai/gpt-4o-mini", api_key="sk-test"))
    assert_type(chat, ClosableAFixedModelCompletion)
    assert_type(await chat(messages=MESSAGES), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=False), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=True), CustomStreamWrapper)
    assert_type(await chat(messages=MESSAGES, stream=flag), ModelResponse | CustomStreamWrapper)
    assert_type(await chat(messages=MESSAGES, temperature=0.2, seed=7), ModelResponse)

    configured = with_cache(
        bind_acompletion("openai/gpt-4o-mini"),
        MemoryCacheStore(max_entries=10),
        ttl=60,
        validator=finished,
        namespace="prompts-v2",
    )
    assert_type(configured, ClosableAFixedModelCompletion)
    assert_type(with_cache(configured), ClosableAFixedModelCompletion)

    embed = with_cache(bind_aembedding("openai/text-embedding-3-small"), DictStore(), ttl=3600.0)
    assert_type(embed, ClosableAFixedModelEmbedding)
    assert_type(await embed(input=["a", "b"]), EmbeddingResponse)
    assert_type(with_cache(embed, validator=has_vectors), ClosableAFixedModelEmbedding)


def sync_sites(flag: bool) -> None:
    store: CacheStore = DiskCacheStore("/tmp/fixedmodel-typing-cache")
    chat = with_cache(bind_completion("openai/gpt-4o-mini"), store, validator=finished)
    assert_type(chat, ClosableFixedModelCompletion)
    assert_type(chat(messages=MESSAGES), ModelResponse)
    assert_type(chat(messages=MESSAGES, stream=True), CustomStreamWrapper)
    assert_type(chat(messages=MESSAGES, stream=flag), ModelResponse | CustomStreamWrapper)

    embed = with_cache(bind_embedding("openai/text-embedding-3-small"))
    assert_type(embed, ClosableFixedModelEmbedding)
    assert_type(embed(input="one"), EmbeddingResponse)
    assert_type(
        with_cache(embed, MemoryCacheStore(), validator=has_vectors), ClosableFixedModelEmbedding
    )


def through_protocols(
    a_chat: AFixedModelCompletion,
    s_chat: FixedModelCompletion,
    a_embed: AFixedModelEmbedding,
    s_embed: FixedModelEmbedding,
) -> None:
    assert_type(with_cache(a_chat), AFixedModelCompletion)
    assert_type(with_cache(s_chat), FixedModelCompletion)
    assert_type(with_cache(a_embed), AFixedModelEmbedding)
    assert_type(with_cache(s_embed), FixedModelEmbedding)
