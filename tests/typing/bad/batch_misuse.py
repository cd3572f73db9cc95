"""Misuse of the batch runners that both checkers must report."""

from __future__ import annotations

from fixedmodel import (
    CompletionRequest,
    abatch,
    batch,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
)


async def misuse() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini")
    embed = bind_aembedding("openai/text-embedding-3-small")
    streamed: CompletionRequest = {"messages": [], "stream": True}  # expect-error
    typo: CompletionRequest = {"messages": [], "temprature": 0.2}  # expect-error
    await abatch(chat, [{"input": "text"}])  # expect-error
    await abatch(embed, [{"messages": []}])  # expect-error
    batch(chat, [{"messages": []}])  # expect-error
    await abatch(bind_completion("openai/gpt-4o-mini"), [{"messages": []}])  # expect-error
    del streamed, typo
