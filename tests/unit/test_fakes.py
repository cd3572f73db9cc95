"""A hand-written fake conforms to AFixedModelCompletion and works where the real one does."""

from __future__ import annotations

from typing import Literal, overload

from typing_extensions import Unpack

from fixedmodel import (
    AFixedModelCompletion,
    CompletionParams,
    CustomStreamWrapper,
    Messages,
    ModelResponse,
    bind_acompletion,
    responses,
)


class FakeChat:
    def __init__(self, reply: ModelResponse) -> None:
        self.reply = reply
        self.calls: list[Messages] = []

    @overload
    async def __call__(
        self,
        *,
        messages: Messages,
        stream: Literal[False] | None = None,
        **kwargs: Unpack[CompletionParams],
    ) -> ModelResponse: ...
    @overload
    async def __call__(
        self, *, messages: Messages, stream: Literal[True], **kwargs: Unpack[CompletionParams]
    ) -> CustomStreamWrapper: ...
    @overload
    async def __call__(
        self, *, messages: Messages, stream: bool | None = None, **kwargs: Unpack[CompletionParams]
    ) -> ModelResponse | CustomStreamWrapper: ...
    async def __call__(
        self, *, messages: Messages, stream: bool | None = None, **kwargs: object
    ) -> ModelResponse | CustomStreamWrapper:
        if stream:
            raise NotImplementedError("this fake does not stream")
        self.calls.append(messages)
        return self.reply


async def summarize(chat: AFixedModelCompletion, document: str) -> str:
    response = await chat(messages=[{"role": "user", "content": f"Summarize: {document}"}])
    return responses.text(response)


async def test_hand_written_fake_stands_in_and_records_calls() -> None:
    reply = ModelResponse(choices=[{"message": {"role": "assistant", "content": "Short."}}])
    fake = FakeChat(reply)
    assert isinstance(fake, AFixedModelCompletion)
    assert await summarize(fake, "a long text") == "Short."
    assert fake.calls == [[{"role": "user", "content": "Summarize: a long text"}]]


async def test_mock_response_binding_is_the_other_fake() -> None:
    fake = bind_acompletion("openai/gpt-4o-mini", mock_response="Mocked summary.")
    assert await summarize(fake, "text") == "Mocked summary."
