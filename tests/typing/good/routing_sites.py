"""with_fallbacks, with_load_balancing and with_budget keep the exact call-site types."""

from __future__ import annotations

from typing_extensions import assert_type

from fixedmodel import (
    AFixedModelCompletion,
    Budget,
    BudgetStatus,
    ClosableAFixedModelCompletion,
    ClosableAFixedModelEmbedding,
    ClosableFixedModelCompletion,
    ClosableFixedModelEmbedding,
    CooldownPolicy,
    CustomStreamWrapper,
    EmbeddingResponse,
    FallbackPolicy,
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
    assert_type(chat, ClosableAFixedModelCompletion)
    assert_type(await chat(messages=MESSAGES), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=True), CustomStreamWrapper)
    assert_type(await chat(messages=MESSAGES, stream=flag), ModelResponse | CustomStreamWrapper)
    policy = FallbackPolicy(content_policy=True, when=None)
    sync_chat = with_fallbacks(bind_completion("openai/a"), bind_completion("x/b"), policy=policy)
    assert_type(sync_chat, ClosableFixedModelCompletion)
    assert_type(sync_chat(messages=MESSAGES), ModelResponse)
    aembed = with_fallbacks(bind_aembedding("openai/e"), bind_aembedding("cohere/e"))
    assert_type(aembed, ClosableAFixedModelEmbedding)
    assert_type(await aembed(input="x"), EmbeddingResponse)
    embed = with_fallbacks(bind_embedding("openai/e"))
    assert_type(embed, ClosableFixedModelEmbedding)
    try:
        embed(input="x")
    except Exception as error:
        assert_type(fallback_causes(error), tuple[BaseException, ...])


async def load_balancing_sites() -> None:
    east = bind_acompletion("azure/gpt-4o", api_base="https://east.example")
    west = bind_acompletion("azure/gpt-4o", api_base="https://west.example")
    chat = with_load_balancing([east, west])
    assert_type(chat, ClosableAFixedModelCompletion)
    assert_type(await chat(messages=MESSAGES), ModelResponse)
    store = RedisCooldownStore("redis://localhost:6379/0")
    named = with_load_balancing(
        {"east": east, "west": with_retries(west)},
        strategy="round_robin",
        cooldown=CooldownPolicy(failures=5, cooldown=10.0, when_all_cooling="raise"),
        store=store,
        key="gpt-4o",
    )
    assert_type(named, ClosableAFixedModelCompletion)
    sync_chat = with_load_balancing([bind_completion("openai/m")], "usage_based")
    assert_type(sync_chat, ClosableFixedModelCompletion)
    assert_type(sync_chat(messages=MESSAGES, stream=True), CustomStreamWrapper)
    embed = with_load_balancing((bind_embedding("openai/e"), bind_embedding("openai/e")))
    assert_type(embed, ClosableFixedModelEmbedding)


async def budget_sites() -> None:
    budget = Budget(max_cost=5.0, max_requests=1000, period=86400)
    chat = with_budget(bind_acompletion("openai/gpt-4o-mini"), budget)
    assert_type(chat, ClosableAFixedModelCompletion)
    assert_type(await chat(messages=MESSAGES, max_tokens=100), ModelResponse)
    shared = Budget(max_tokens=10_000, store=RedisBudgetStore("redis://localhost:6379/0"))
    embed = with_budget(bind_aembedding("openai/e"), shared)
    assert_type(embed, ClosableAFixedModelEmbedding)
    sync_chat = with_budget(bind_completion("openai/m"), budget)
    assert_type(sync_chat, ClosableFixedModelCompletion)
    status = budget.status()
    assert_type(status, BudgetStatus)
    assert_type(status.cost_left, float | None)
    assert_type((await budget.astatus()).requests, int)


def the_canonical_stack(
    primary: AFixedModelCompletion, backup: AFixedModelCompletion, budget: Budget
) -> AFixedModelCompletion:
    balanced = with_load_balancing([with_retries(with_budget(primary, budget))])
    return with_fallbacks(balanced, backup)


async def routed_stacks_close_like_a_bound_object(budget: Budget) -> None:
    # A stack over bound objects keeps model, aclose()/close() and (async) with, whichever
    # routing layers it holds.
    async with with_fallbacks(
        with_budget(bind_acompletion("openai/a"), budget),
        with_load_balancing([bind_acompletion("openai/b"), with_retries(bind_acompletion("x/c"))]),
    ) as chat:
        assert_type(chat, ClosableAFixedModelCompletion)
        assert_type(chat.model, str)
        assert_type(await chat(messages=MESSAGES), ModelResponse)
    balanced = with_load_balancing({"a": with_budget(bind_aembedding("openai/e"), budget)})
    assert_type(balanced.model, str)
    await balanced.aclose()
    with with_budget(
        with_fallbacks(bind_completion("openai/a"), bind_completion("x/b")), budget
    ) as sync_chat:
        assert_type(sync_chat, ClosableFixedModelCompletion)
        assert_type(sync_chat(messages=MESSAGES), ModelResponse)
    sync_embed = with_load_balancing([with_budget(bind_embedding("openai/e"), budget)])
    assert_type(sync_embed.model, str)
    sync_embed.close()


def a_plain_callable_stays_plain(
    plain: AFixedModelCompletion, plain_embed: FixedModelEmbedding, budget: Budget
) -> None:
    # Over a callable that cannot close (a fake, a hand-written function) nothing is added.
    assert_type(with_budget(plain, budget), AFixedModelCompletion)
    assert_type(with_fallbacks(bind_acompletion("openai/a"), plain), AFixedModelCompletion)
    assert_type(with_load_balancing([plain_embed]), FixedModelEmbedding)
