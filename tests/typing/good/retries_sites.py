"""with_retries keeps the exact call-site types of all four kinds."""

from __future__ import annotations

from typing_extensions import assert_type

from fixedmodel import (
    AFixedModelCompletion,
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
from fixedmodel.middleware.retries import RetryPolicy, with_retries

MESSAGES = [{"role": "user", "content": "Hi"}]


async def retried_sites(flag: bool) -> None:
    chat = with_retries(bind_acompletion("openai/m"))
    assert_type(chat, ClosableAFixedModelCompletion)
    assert_type(await chat(messages=MESSAGES), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=False), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=True), CustomStreamWrapper)
    assert_type(await chat(messages=MESSAGES, stream=flag), ModelResponse | CustomStreamWrapper)
    assert_type(await with_retries(chat)(messages=MESSAGES, timeout=5.0), ModelResponse)

    policy = RetryPolicy(max_attempts=5, initial_wait=0.5, deadline=30.0, max_retry_after=10)
    sync_chat = with_retries(bind_completion("openai/m"), policy)
    assert_type(sync_chat, ClosableFixedModelCompletion)
    assert_type(sync_chat(messages=MESSAGES), ModelResponse)
    assert_type(sync_chat(messages=MESSAGES, stream=True), CustomStreamWrapper)

    aembed = with_retries(bind_aembedding("openai/e"), policy=RetryPolicy(jitter=0.0))
    assert_type(aembed, ClosableAFixedModelEmbedding)
    assert_type(await aembed(input=["x", "y"], dimensions=8), EmbeddingResponse)

    embed = with_retries(bind_embedding("openai/e"))
    assert_type(embed, ClosableFixedModelEmbedding)
    assert_type(embed(input="x"), EmbeddingResponse)

    assert_type(policy.max_attempts, int)
    assert_type(policy.deadline, float | None)


def takes_async(chat: AFixedModelCompletion) -> AFixedModelCompletion:
    # Application code takes the Protocol and may add retries itself.
    return with_retries(chat, RetryPolicy(max_attempts=2))
