"""Misuse of with_retries and RetryPolicy that both checkers must report."""

from __future__ import annotations

from fixedmodel import (
    AFixedModelCompletion,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
)
from fixedmodel.middleware.retries import RetryPolicy, with_retries

MESSAGES = [{"role": "user", "content": "Hi"}]


def takes_async(chat: AFixedModelCompletion) -> None: ...


async def misuse() -> None:
    chat = with_retries(bind_acompletion("openai/m"))
    sync_chat = with_retries(bind_completion("openai/m"))
    embed = with_retries(bind_aembedding("openai/e"))
    print(chat(messages=MESSAGES).choices)  # expect-error
    await embed(messages=MESSAGES)  # expect-error
    takes_async(sync_chat)  # expect-error
    await sync_chat(messages=MESSAGES)  # expect-error
    await chat(messages=MESSAGES, model="openai/other")  # expect-error
    RetryPolicy(max_atempts=3)  # expect-error
    RetryPolicy(deadline="30s")  # expect-error
    with_retries(chat, {"max_attempts": 3})  # expect-error
    with_retries("openai/m")  # expect-error
