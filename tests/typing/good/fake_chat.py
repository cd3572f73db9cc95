"""The hand-written fake of docs/testing.md: checked by both type checkers, run by pytest."""

from __future__ import annotations

from typing import Literal, overload

from typing_extensions import Unpack

from fixedmodel import CompletionParams, CustomStreamWrapper, Messages, ModelResponse


class FakeChat:
    """A test double written by hand: it conforms to AFixedModelCompletion."""

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
