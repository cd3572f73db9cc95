"""The four callable kinds of fixedmodel, as Protocols.

Each is a model-bound litellm call: the keyword parameters of the litellm function minus
``model``. Anything with a matching ``__call__`` conforms: a bound object from the factories,
a middleware wrapper, or a small fake written for a test.

The completion Protocols are overloaded on ``stream`` the way openai-python is: ``stream``
omitted, ``None`` or ``False`` gives a ``ModelResponse``; ``True`` gives a
``CustomStreamWrapper``; a plain ``bool`` gives the union of both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, overload, runtime_checkable

from typing_extensions import Unpack

from fixedmodel._params import CompletionParams, EmbeddingInput, EmbeddingParams, Messages

if TYPE_CHECKING:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    from litellm.types.utils import EmbeddingResponse, ModelResponse

__all__ = [
    "AFixedModelCompletion",
    "AFixedModelEmbedding",
    "FixedModelCompletion",
    "FixedModelEmbedding",
]


@runtime_checkable
class AFixedModelCompletion(Protocol):
    """An async chat completion call with its model already bound."""

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
        self,
        *,
        messages: Messages,
        stream: Literal[True],
        **kwargs: Unpack[CompletionParams],
    ) -> CustomStreamWrapper: ...

    @overload
    async def __call__(
        self,
        *,
        messages: Messages,
        stream: bool | None = None,
        **kwargs: Unpack[CompletionParams],
    ) -> ModelResponse | CustomStreamWrapper: ...


@runtime_checkable
class FixedModelCompletion(Protocol):
    """A synchronous chat completion call with its model already bound."""

    @overload
    def __call__(
        self,
        *,
        messages: Messages,
        stream: Literal[False] | None = None,
        **kwargs: Unpack[CompletionParams],
    ) -> ModelResponse: ...

    @overload
    def __call__(
        self,
        *,
        messages: Messages,
        stream: Literal[True],
        **kwargs: Unpack[CompletionParams],
    ) -> CustomStreamWrapper: ...

    @overload
    def __call__(
        self,
        *,
        messages: Messages,
        stream: bool | None = None,
        **kwargs: Unpack[CompletionParams],
    ) -> ModelResponse | CustomStreamWrapper: ...


@runtime_checkable
class AFixedModelEmbedding(Protocol):
    """An async embedding call with its model already bound."""

    async def __call__(
        self, *, input: EmbeddingInput, **kwargs: Unpack[EmbeddingParams]
    ) -> EmbeddingResponse: ...


@runtime_checkable
class FixedModelEmbedding(Protocol):
    """A synchronous embedding call with its model already bound."""

    def __call__(
        self, *, input: EmbeddingInput, **kwargs: Unpack[EmbeddingParams]
    ) -> EmbeddingResponse: ...
