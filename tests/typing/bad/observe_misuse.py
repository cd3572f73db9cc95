"""Misuse of the logging and metrics wrappers that both checkers must report."""

from __future__ import annotations

from fixedmodel import (
    AFixedModelCompletion,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    with_logging,
    with_metrics,
)

MESSAGES = [{"role": "user", "content": "Hi"}]


def takes_async(chat: AFixedModelCompletion) -> None: ...


async def misuse() -> None:
    chat = with_logging(bind_acompletion("openai/m"))
    sync_chat = with_metrics(bind_completion("openai/m"))
    embed = with_logging(bind_aembedding("openai/e"))
    await chat(messages=MESSAGES, temprature=0.1)  # expect-error
    await sync_chat(messages=MESSAGES)  # expect-error
    takes_async(sync_chat)  # expect-error
    await embed(messages=MESSAGES)  # expect-error
    with_metrics(chat, sink="stdout")  # expect-error
    with_logging(chat, level="INFO")  # expect-error
    with_logging("openai/m")  # expect-error
