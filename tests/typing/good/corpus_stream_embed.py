"""Streaming and embedding call sites in the shapes public projects write them (ported).

See ``corpus_chat.py``: each function is one shape, written in our own words.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from typing_extensions import assert_type

from fixedmodel import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    CustomStreamWrapper,
    Delta,
    EmbeddingResponse,
    FixedModelCompletion,
    ModelResponse,
    ModelResponseStream,
    StreamingChoices,
    bind_aembedding,
    bind_embedding,
    responses,
)

USER = {"role": "user", "content": "Tell me a story."}


# 18. An async streaming loop that prints pieces as they come and keeps the whole text.
async def stream_and_print(chat: AFixedModelCompletion) -> str:
    stream = await chat(messages=[USER], stream=True, temperature=None)
    assert_type(stream, CustomStreamWrapper)
    pieces: list[str] = []
    async for piece in responses.atext_deltas(stream):
        print(piece, end="", flush=True)
        pieces.append(piece)
    return "".join(pieces)


# 19. A sync loop over the raw chunks, reading the delta of the first choice.
def raw_chunk_loop(chat: FixedModelCompletion) -> Iterator[str]:
    for chunk in chat(messages=[USER], stream=True):
        assert_type(chunk, ModelResponseStream)
        if chunk.choices:
            choice = chunk.choices[0]
            assert_type(choice, StreamingChoices)
            delta = choice.delta
            assert_type(delta, Delta)
            if delta.content:
                yield delta.content


# 20. A server-sent-events endpoint: an async generator over a stream, with its usage.
async def sse_endpoint(chat: AFixedModelCompletion) -> AsyncIterator[str]:
    stream = await chat(messages=[USER], stream=True, stream_options={"include_usage": True})
    async for chunk in stream:
        used = responses.chunk_usage(chunk)
        if used is not None:
            yield f"event: usage\ndata: {used.total_tokens}\n\n"
        elif chunk.choices and chunk.choices[0].delta.content:
            yield f"data: {chunk.choices[0].delta.content}\n\n"


# 21. Streaming decided by configuration: the result is either kind and is narrowed.
async def stream_if_configured(chat: AFixedModelCompletion, stream: bool) -> str:
    result = await chat(messages=[USER], stream=stream)
    assert_type(result, ModelResponse | CustomStreamWrapper)
    if isinstance(result, CustomStreamWrapper):
        collected = await responses.acollect(result)
        assert_type(collected, ModelResponse)
        return responses.text(collected)
    return responses.text(result)


# 22. The second of two streamed choices (n=2), followed by its index.
async def second_streamed_choice(chat: AFixedModelCompletion) -> list[str]:
    stream = await chat(messages=[USER], stream=True, n=2)
    return [piece async for piece in responses.atext_deltas(stream, index=1)]


# 23. Batch embeddings with reduced dimensions, vectors in input order.
async def embed_documents(texts: Sequence[str], dimensions: int | None) -> list[list[float]]:
    embed = bind_aembedding("openai/text-embedding-3-small", dimensions=dimensions)
    response = await embed(input=list(texts), encoding_format="float", user=None)
    assert_type(response, EmbeddingResponse)
    return responses.embeddings(response)


# 24. One query embedded through a Protocol-typed dependency, credentials optional.
async def embed_query(embed: AFixedModelEmbedding, query: str, api_key: str | None) -> list[float]:
    response = await embed(input=query, api_key=api_key, timeout=None)
    return responses.embeddings(response)[0]


# 25. Sync embeddings of pre-tokenised input, with litellm's cache switched per call.
def embed_tokens(tokens: list[list[int]]) -> int:
    embed = bind_embedding("openai/text-embedding-3-small", caching=None)
    response = embed(input=tokens, cache={"no-cache": True}, metadata={"job": "index"})
    return responses.usage(response).prompt_tokens


# 26. A synchronous stream collected into one answer to read text and usage after it.
def collect_then_account(chat: FixedModelCompletion, ledger: dict[str, Any]) -> str:
    answer = responses.collect(
        chat(messages=[USER], stream=True, stream_options={"include_usage": True})
    )
    ledger["tokens"] = responses.usage(answer).total_tokens
    return responses.text(answer)
