"""with_rate_limit keeps the exact call-site types of all four kinds; one limiter serves all."""

from __future__ import annotations

from typing_extensions import assert_type

from fixedmodel import (
    ClosableAFixedModelCompletion,
    ClosableAFixedModelEmbedding,
    ClosableFixedModelCompletion,
    ClosableFixedModelEmbedding,
    CustomStreamWrapper,
    EmbeddingResponse,
    ModelResponse,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    bind_embedding,
)
from fixedmodel.middleware.rate_limit import Permit, RateLimit, RateLimiter, with_rate_limit
from fixedmodel.stores._limiter_store import LimiterStore
from fixedmodel.stores.limiter_memory import MemoryLimiterStore

MESSAGES = [{"role": "user", "content": "Hi"}]


async def rate_limited_sites(flag: bool) -> None:
    quota = RateLimiter(RateLimit(requests=500, tokens=200_000), key="openai")
    chat = with_rate_limit(bind_acompletion("openai/m"), quota)
    assert_type(chat, ClosableAFixedModelCompletion)
    assert_type(await chat(messages=MESSAGES), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=False), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=True), CustomStreamWrapper)
    assert_type(await chat(messages=MESSAGES, stream=flag), ModelResponse | CustomStreamWrapper)
    assert_type(await chat(messages=MESSAGES, max_tokens=64, n=2), ModelResponse)

    sync_chat = with_rate_limit(bind_completion("openai/m"), quota)
    assert_type(sync_chat, ClosableFixedModelCompletion)
    assert_type(sync_chat(messages=MESSAGES), ModelResponse)
    assert_type(sync_chat(messages=MESSAGES, stream=True), CustomStreamWrapper)

    aembed = with_rate_limit(bind_aembedding("openai/e"), quota)
    assert_type(aembed, ClosableAFixedModelEmbedding)
    assert_type(await aembed(input=["x", "y"], dimensions=8), EmbeddingResponse)

    embed = with_rate_limit(bind_embedding("openai/e"), RateLimit(requests=60, period=1.0))
    assert_type(embed, ClosableFixedModelEmbedding)
    assert_type(embed(input="x"), EmbeddingResponse)

    twice = with_rate_limit(chat, RateLimit(tokens=10_000))
    assert_type(twice, ClosableAFixedModelCompletion)


async def limiter_sites() -> None:
    store: LimiterStore = MemoryLimiterStore()
    limiter = RateLimiter(RateLimit(tokens=1_000, period=1.0), store=store)
    permit = await limiter.aacquire(tokens=120)
    assert_type(permit, Permit)
    assert_type(permit.waited, float)
    await limiter.asettle(permit, 80)
    await limiter.apause(2.5)
    limiter.settle(limiter.acquire(), 0)
    limiter.pause(1)
    assert_type(limiter.limit.requests, int | None)
    assert_type(limiter.limit.period, float)
