"""Logging and metrics wrappers keep the exact call-site types of all four kinds."""

from __future__ import annotations

import logging

from typing_extensions import assert_type

from fixedmodel import (
    ClosableAFixedModelCompletion,
    ClosableAFixedModelEmbedding,
    ClosableFixedModelCompletion,
    ClosableFixedModelEmbedding,
    CustomStreamWrapper,
    EmbeddingResponse,
    InMemoryMetrics,
    MetricsSummary,
    ModelResponse,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    bind_embedding,
    with_logging,
    with_metrics,
)

MESSAGES = [{"role": "user", "content": "Hi"}]


async def observed_sites() -> None:
    sink = InMemoryMetrics()
    chat = with_logging(with_metrics(bind_acompletion("openai/m"), sink))
    assert_type(chat, ClosableAFixedModelCompletion)
    assert_type(await chat(messages=MESSAGES), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=True), CustomStreamWrapper)

    sync_chat = with_metrics(with_logging(bind_completion("openai/m"), level=logging.DEBUG))
    assert_type(sync_chat, ClosableFixedModelCompletion)
    assert_type(sync_chat(messages=MESSAGES), ModelResponse)

    aembed = with_logging(bind_aembedding("openai/e"))
    assert_type(aembed, ClosableAFixedModelEmbedding)
    assert_type(await aembed(input="x"), EmbeddingResponse)

    embed = with_metrics(bind_embedding("openai/e"))
    assert_type(embed, ClosableFixedModelEmbedding)
    assert_type(embed(input=["x"]), EmbeddingResponse)
    assert_type(sink.summary(), MetricsSummary)
    assert_type(sink.summary().cache_hit_rate, float)
