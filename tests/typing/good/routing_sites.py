"""with_fallbacks, with_load_balancing and with_budget keep the exact call-site types."""

from __future__ import annotations

from typing_extensions import assert_type

from fixedmodel import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    Budget,
    BudgetStatus,
    CooldownPolicy,
    CustomStreamWrapper,
    EmbeddingResponse,
    FallbackPolicy,
    FixedModelCompletion,
    FixedModelEmbedding,
    ModelResponse,
    RedisBudgetStore,
    RedisCooldownStore,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    bind_embedding,
    fallback_causes,
    with_budget,
    with_fallbacks,
    with_load_balancing,
    with_retries,
)

MESSAGES = [{"role": "user", "content": "Hi"}]


async def fallback_sites(flag: bool) -> None:
    chat = with_fallbacks(bind_acompletion("openai/a"), bind_acompletion("anthropic/b"))
    assert_type(chat, AFixedModelCompletion)
    assert_type(await chat(messages=MESSAGES), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=True), CustomStreamWrapper)
    assert_type(await chat(messages=MESSAGES, stream=flag), ModelResponse | CustomStreamWrapper)
    policy = FallbackPolicy(content_policy=True, when=None)
    sync_chat = with_fallbacks(bind_completion("openai/a"), bind_completion("x/b"), policy=policy)
    assert_type(sync_chat, FixedModelCompletion)
    assert_type(sync_chat(messages=MESSAGES), ModelResponse)
    aembed = with_fallbacks(bind_aembedding("openai/e"), bind_aembedding("cohere/e"))
    assert_type(aembed, AFixedModelEmbedding)
    assert_type(await aembed(input="x"), EmbeddingResponse)
    embed = with_fallbacks(bind_embedding("openai/e"))
    assert_type(embed, FixedModelEmbedding)
    try:
        embed(input="x")
    except Exception as error:
        assert_type(fallback_causes(error), tuple[BaseException, ...])


async def load_balancing_sites() -> None:
    east = bind_acompletion("azure/gpt-4o", api_base="https://east.example")
    west = bind_acompletion("azure/gpt-4o", api_base="https://west.example")
    chat = with_load_balancing([east, west])
    assert_type(chat, AFixedModelCompletion)
    assert_type(await chat(messages=MESSAGES), ModelResponse)
    store = RedisCooldownStore("redis://localhost:6379/0")
    named = with_load_balancing(
        {"east": east, "west": with_retries(west)},
        strategy="round_robin",
        cooldown=CooldownPolicy(failures=5, cooldown=10.0, when_all_cooling="raise"),
        store=store,
        key="gpt-4o",
    )
    assert_type(named, AFixedModelCompletion)
    sync_chat = with_load_balancing([bind_completion("openai/m")], "usage_based")
    assert_type(sync_chat, FixedModelCompletion)
    assert_type(sync_chat(messages=MESSAGES, stream=True), CustomStreamWrapper)
    embed = with_load_balancing((bind_embedding("openai/e"), bind_embedding("openai/e")))
    assert_type(embed, FixedModelEmbedding)


async def budget_sites() -> None:
    budget = Budget(max_cost=5.0, max_requests=1000, period=86400)
    chat = with_budget(bind_acompletion("openai/gpt-4o-mini"), budget)
    assert_type(chat, AFixedModelCompletion)
    assert_type(await chat(messages=MESSAGES, max_tokens=100), ModelResponse)
    shared = Budget(max_tokens=10_000, store=RedisBudgetStore("redis://localhost:6379/0"))
    embed = with_budget(bind_aembedding("openai/e"), shared)
    assert_type(embed, AFixedModelEmbedding)
    sync_chat = with_budget(bind_completion("openai/m"), budget)
    assert_type(sync_chat, FixedModelCompletion)
    status = budget.status()
    assert_type(status, BudgetStatus)
    assert_type(status.cost_left, float | None)
    assert_type((await budget.astatus()).requests, int)


def the_canonical_stack(
    primary: AFixedModelCompletion, backup: AFixedModelCompletion, budget: Budget
) -> AFixedModelCompletion:
    balanced = with_load_balancing([with_retries(with_budget(primary, budget))])
    return with_fallbacks(balanced, backup)
