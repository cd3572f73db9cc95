"""The scripted fakes of fixedmodel.testing conform to the Protocols and keep exact types."""

from __future__ import annotations

from typing_extensions import assert_type

from fixedmodel import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    CustomStreamWrapper,
    EmbeddingResponse,
    FixedModelCompletion,
    FixedModelEmbedding,
    ModelResponse,
    with_retries,
)
from fixedmodel.testing import (
    CompletionCall,
    Fail,
    FakeACompletion,
    FakeAEmbedding,
    FakeCompletion,
    FakeEmbedding,
    FakeToolCall,
    Reply,
)

MESSAGES = [{"role": "user", "content": "Hi"}]


def echo(call: CompletionCall) -> Reply:
    return Reply(text=f"{len(call.messages)} messages, stream={call.stream}")


async def fakes() -> None:
    chat = FakeACompletion(["Hi", Reply(tool_calls=[FakeToolCall("f", {"x": 1})]), Fail(429)])
    uses_async: AFixedModelCompletion = chat
    assert_type(await chat(messages=MESSAGES), ModelResponse)
    assert_type(await chat(messages=MESSAGES, stream=True), CustomStreamWrapper)
    assert_type(await with_retries(chat)(messages=MESSAGES), ModelResponse)
    assert_type(chat.calls[0], CompletionCall)
    assert_type(chat.calls[0].params.get("temperature"), "float | None")

    sync_chat = FakeCompletion(echo, temperature=0.1)
    uses_sync: FixedModelCompletion = sync_chat
    assert_type(sync_chat(messages=MESSAGES), ModelResponse)
    assert_type(sync_chat(messages=MESSAGES, stream=True), CustomStreamWrapper)

    embed = FakeAEmbedding([[0.1, 0.2]], dimensions=2)
    uses_aembed: AFixedModelEmbedding = embed
    assert_type(await embed(input="a"), EmbeddingResponse)
    sync_embed = FakeEmbedding([[[0.1], [0.2]]])
    uses_embed: FixedModelEmbedding = sync_embed
    assert_type(sync_embed(input=["a", "b"]), EmbeddingResponse)
    del uses_async, uses_sync, uses_aembed, uses_embed
