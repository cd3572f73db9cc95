"""Routing misuse both checkers must report: mixed kinds, wrong policies, wrong results."""

from __future__ import annotations

from fixedmodel import (
    AFixedModelCompletion,
    Budget,
    CooldownPolicy,
    CustomStreamWrapper,
    FallbackPolicy,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    with_budget,
    with_fallbacks,
    with_load_balancing,
)

MESSAGES = [{"role": "user", "content": "Hi"}]


def takes_stream(stream: CustomStreamWrapper) -> None: ...


async def misuse() -> None:
    chat = bind_acompletion("openai/a")
    sync_chat = bind_completion("openai/b")
    embed = bind_aembedding("openai/e")
    with_fallbacks(chat, sync_chat)  # expect-error
    with_fallbacks(chat, embed)  # expect-error
    with_fallbacks(chat, policy=CooldownPolicy())  # expect-error
    with_load_balancing([chat, sync_chat])  # expect-error
    with_load_balancing([chat], strategy="random")  # expect-error
    with_load_balancing([chat], cooldown=FallbackPolicy())  # expect-error
    with_budget(chat, 5.0)  # expect-error
    Budget(max_cost="5 USD")  # expect-error
    routed = with_fallbacks(chat, bind_acompletion("openai/c"))
    await routed(messages=MESSAGES, model="openai/d")  # expect-error
    takes_stream(await routed(messages=MESSAGES))  # expect-error


async def closing_what_cannot_close(plain: AFixedModelCompletion, budget: Budget) -> None:
    await with_budget(plain, budget).aclose()  # expect-error
    print(with_fallbacks(bind_acompletion("openai/a"), plain).model)  # expect-error
    async with with_load_balancing([plain, bind_acompletion("openai/b")]):  # expect-error
        pass
    await with_budget(bind_completion("openai/b"), budget).aclose()  # expect-error
    with with_fallbacks(bind_acompletion("openai/a")):  # expect-error
        pass
    with_load_balancing([bind_acompletion("openai/a")]).close()  # expect-error
