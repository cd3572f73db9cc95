"""Call sites that must type-check cleanly, with exact result types (mypy --strict, pyright)."""

from __future__ import annotations

from pydantic import BaseModel
from typing_extensions import assert_type

import fixedmodel
from fixedmodel import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    CustomStreamWrapper,
    EmbeddingResponse,
    FixedModelCompletion,
    FixedModelEmbedding,
    ModelResponse,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    bind_embedding,
    responses,
)
from tests.typing.good.fake_chat import FakeChat

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Hi"}]


class Answer(BaseModel):
    value: int


async def async_completion_sites(flag: bool) -> None:
    chat = bind_acompletion("openai/gpt-4o-mini", temperature=0.2, api_key="sk-test")
    assert_type(await chat(messages=MESSAGES), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=False), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=None), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=True), CustomStreamWrapper)
    assert_type(await chat(messages=MESSAGES, stream=flag), ModelResponse | CustomStreamWrapper)

    response = await chat(
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0.0,
        top_p=0.9,
        n=1,
        max_tokens=16,
        seed=7,
        stop=["\n"],
        timeout=5.0,
        api_base="http://127.0.0.1:8000/v1",
        api_version="2024-06-01",
        reasoning_effort="low",
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        tool_choice="auto",
        response_format=Answer,
        extra_headers={"X-Trace": "1"},
        extra_params={"top_k": 40},
    )
    assert_type(responses.text(response), str)
    assert_type(responses.parse_json(response, Answer), Answer)
    assert_type(responses.usage(response), responses.TokenUsage)
    assert_type(responses.tool_calls(response), list[responses.ToolCall])
    assert_type(response.choices[0].message.content, str | None)

    stream = await chat(messages=MESSAGES, stream=True)
    async for piece in responses.atext_deltas(stream):
        assert_type(piece, str)

    protocol_typed: AFixedModelCompletion = chat
    assert_type(await protocol_typed(messages=MESSAGES), ModelResponse)
    assert_type(await protocol_typed(messages=MESSAGES, stream=True), CustomStreamWrapper)
    assert_type(chat.model, str)
    await chat.aclose()
    async with bind_acompletion("openai/gpt-4o-mini") as scoped:
        assert_type(await scoped(messages=MESSAGES), ModelResponse)


def sync_completion_sites() -> None:
    chat = bind_completion("openai/gpt-4o-mini", max_tokens=32)
    assert_type(chat(messages=MESSAGES), ModelResponse)
    assert_type(chat(messages=MESSAGES, stream=True), CustomStreamWrapper)
    for piece in responses.text_deltas(chat(messages=MESSAGES, stream=True)):
        assert_type(piece, str)
    protocol_typed: FixedModelCompletion = chat
    assert_type(protocol_typed(messages=MESSAGES), ModelResponse)
    with bind_completion("openai/gpt-4o-mini") as scoped:
        assert_type(scoped(messages=MESSAGES), ModelResponse)


async def embedding_sites() -> None:
    aembed = bind_aembedding("openai/text-embedding-3-small", dimensions=8)
    assert_type(await aembed(input=["a", "b"]), EmbeddingResponse)
    embed = bind_embedding("openai/text-embedding-3-small")
    result = embed(input="a")
    assert_type(result, EmbeddingResponse)
    assert_type(responses.embeddings(result), list[list[float]])
    async_typed: AFixedModelEmbedding = aembed
    sync_typed: FixedModelEmbedding = embed
    assert_type(await async_typed(input="x"), EmbeddingResponse)
    assert_type(sync_typed(input="x"), EmbeddingResponse)


async def summarize(chat: AFixedModelCompletion, document: str) -> str:
    response = await chat(messages=[{"role": "user", "content": f"Summarize: {document}"}])
    return responses.text(response)


async def fake_sites(reply: ModelResponse) -> None:
    fake = FakeChat(reply)
    assert_type(await summarize(fake, "text"), str)
    assert_type(fixedmodel.ResponseContentError, type[fixedmodel.ResponseContentError])
