"""The Redis stores plug into the limiter and the cache without changing any type."""

from __future__ import annotations

import redis
import redis.asyncio
from typing_extensions import assert_type

from fixedmodel import (
    ClosableAFixedModelCompletion,
    ClosableFixedModelEmbedding,
    ModelResponse,
    bind_acompletion,
    bind_embedding,
)
from fixedmodel.middleware.cache import with_cache
from fixedmodel.middleware.rate_limit import RateLimit, RateLimiter, with_rate_limit
from fixedmodel.stores._cache_store import CacheStore
from fixedmodel.stores._limiter_store import Acquisition, LimiterStore
from fixedmodel.stores.redis_cache import RedisCacheStore
from fixedmodel.stores.redis_limiter import OnError, RedisLimiterStore, RedisUnavailableError

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Hi"}]


def shares_a_quota(store: LimiterStore) -> LimiterStore:
    # Conformance: a RedisLimiterStore is accepted where the Protocol is expected.
    return store


def shares_answers(store: CacheStore) -> CacheStore:
    return store


async def redis_sites(url: str) -> None:
    store = RedisLimiterStore(url, namespace="app:rl:", on_error="closed", timeout=0.5)
    limiter = RateLimiter(RateLimit(requests=500, tokens=200_000), store=store, key="openai")
    assert_type(limiter, RateLimiter)
    assert_type(store.on_error, OnError)
    assert_type(store.acquire("openai", limiter.limit, 10), Acquisition)
    assert_type(await store.aacquire("openai", limiter.limit, 10), Acquisition)

    cache = RedisCacheStore(url, namespace="app:cache:")
    chat = with_cache(with_rate_limit(bind_acompletion("openai/m"), limiter), store=cache, ttl=60)
    assert_type(chat, ClosableAFixedModelCompletion)
    assert_type(await chat(messages=MESSAGES), ModelResponse)
    assert_type(cache.get("k"), bytes | None)
    assert_type(await cache.aget("k"), bytes | None)

    embed = with_cache(bind_embedding("openai/e"), RedisCacheStore(url))
    assert_type(embed, ClosableFixedModelEmbedding)

    assert_type(shares_a_quota(store), LimiterStore)
    assert_type(shares_answers(cache), CacheStore)

    with RedisLimiterStore(client=redis.Redis(), async_client=redis.asyncio.Redis()) as own:
        assert_type(own, RedisLimiterStore)
    try:
        store.acquire("openai", limiter.limit, 0)
    except RedisUnavailableError as exc:
        assert_type(exc, RedisUnavailableError)
    store.close()
    cache.close()
