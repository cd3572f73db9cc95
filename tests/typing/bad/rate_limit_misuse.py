"""Misuse of with_rate_limit, RateLimit and RateLimiter that both checkers must report."""

from __future__ import annotations

from fixedmodel import (
    AFixedModelCompletion,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
)
from fixedmodel.middleware.rate_limit import RateLimit, RateLimiter, with_rate_limit

MESSAGES = [{"role": "user", "content": "Hi"}]
LIMIT = RateLimit(requests=5)


def takes_async(chat: AFixedModelCompletion) -> None: ...


async def misuse() -> None:
    chat = with_rate_limit(bind_acompletion("openai/m"), LIMIT)
    sync_chat = with_rate_limit(bind_completion("openai/m"), LIMIT)
    embed = with_rate_limit(bind_aembedding("openai/e"), LIMIT)
    RateLimit(request=5)  # expect-error
    RateLimit(requests="5")  # expect-error
    RateLimit(tokens=1_000, period="60s")  # expect-error
    with_rate_limit("openai/m", LIMIT)  # expect-error
    with_rate_limit(chat, 5)  # expect-error
    with_rate_limit(chat, {"requests": 5})  # expect-error
    await sync_chat(messages=MESSAGES)  # expect-error
    takes_async(sync_chat)  # expect-error
    print(chat(messages=MESSAGES).choices)  # expect-error
    await chat(messages=MESSAGES, model="openai/other")  # expect-error
    await embed(messages=MESSAGES)  # expect-error
    RateLimiter(LIMIT, store=object())  # expect-error
    RateLimiter(5)  # expect-error
    await RateLimiter(LIMIT).acquire()  # expect-error
