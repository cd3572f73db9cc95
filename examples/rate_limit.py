"""Offline demo of with_rate_limit: one quota shared by a chat and an embedding callable.

No request leaves the machine: litellm's ``mock_response`` answers. The period is one second
so that the waits show quickly; real provider quotas are per minute (the default period).
"""

from __future__ import annotations

import asyncio
import time

from fixedmodel import bind_acompletion, bind_aembedding, bind_completion, responses
from fixedmodel.middleware.rate_limit import RateLimit, RateLimiter, with_rate_limit


async def shared_quota() -> None:
    # One limiter per provider quota, shared by every callable that draws on it.
    quota = RateLimiter(RateLimit(requests=3, tokens=20_000, period=1.0))
    async with (
        bind_acompletion("openai/gpt-4o-mini", mock_response="Short answer.") as bound_chat,
        bind_aembedding("openai/text-embedding-3-small", mock_response=[0.1, 0.2]) as bound_embed,
    ):
        chat = with_rate_limit(bound_chat, quota)
        embed = with_rate_limit(bound_embed, quota)
        started = time.monotonic()

        async def ask(n: int) -> str:
            response = await chat(messages=[{"role": "user", "content": f"Question {n}?"}])
            return f"chat {n} at {time.monotonic() - started:.2f} s: {responses.text(response)}"

        async def vectorize(n: int) -> str:
            response = await embed(input=f"document {n}")
            size = len(responses.embeddings(response)[0])
            return f"embed {n} at {time.monotonic() - started:.2f} s: {size} floats"

        # Five calls, three requests per second: the last two wait for the window to move.
        lines = await asyncio.gather(ask(1), vectorize(2), ask(3), vectorize(4), ask(5))
        print("\n".join(lines))


def refunded_tokens() -> None:
    # Each call is charged its prompt plus max_tokens up front (about 810 tokens here), so
    # two would not fit in 1,000 tokens; the real usage reported afterwards (30 tokens in
    # litellm's mock) is what stays charged, and the second call goes at once.
    with bind_completion("openai/gpt-4o-mini", mock_response="Fine.") as bound:
        chat = with_rate_limit(bound, RateLimit(tokens=1_000, period=1.0))
        started = time.monotonic()
        for n in (1, 2):
            response = chat(messages=[{"role": "user", "content": "Hi"}], max_tokens=800)
            used = responses.usage(response).total_tokens
            print(f"sync call {n} at {time.monotonic() - started:.2f} s, used {used} tokens")
        print(repr(chat))


if __name__ == "__main__":
    asyncio.run(shared_quota())
    refunded_tokens()
