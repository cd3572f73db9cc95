"""The four callable kinds of fixedmodel, as Protocols.

Each is a model-bound litellm call: the keyword parameters of the litellm function minus
``model``. Anything with a matching ``__call__`` conforms: a bound object from the factories,
a middleware wrapper, or a small fake written for a test.

The completion Protocols are overloaded on ``stream`` the way openai-python is: ``stream``
omitted, ``None`` or ``False`` gives a ``ModelResponse``; ``True`` gives a
``CustomStreamWrapper``; a plain ``bool`` gives the union of both.

The ``Closable...`` Protocols add what a bound object and a middleware stack over one have:
the ``model`` name, ``close()``/``aclose()`` and the context-manager protocol. The middleware
functions return them when given them, so a wrapped stack stays closable for the checker.

:class:`ACompletionOverloads` and :class:`CompletionOverloads` give the bound objects and the
test kit's fakes the same overloads as methods they inherit.
"""

from __future__ import annotations

from collections.abc import Awaitable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, overload, runtime_checkable

from typing_extensions import Self, Unpack

from fixedmodel._params import CompletionParams, EmbeddingInput, EmbeddingParams, Messages

if TYPE_CHECKING:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    from litellm.types.utils import EmbeddingResponse, ModelResponse

__all__ = [
    "AFixedModelCompletion",
    "AFixedModelEmbedding",
    "ClosableAFixedModelCompletion",
    "ClosableAFixedModelEmbedding",
    "ClosableFixedModelCompletion",
    "ClosableFixedModelEmbedding",
    "FixedModelCompletion",
    "FixedModelEmbedding",
    "ModelFn",
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


class ACompletionOverloads:
    """The ``__call__`` of a concrete ``AFixedModelCompletion``: the overloads, then ``_complete``.

    A subclass (a bound object, a fake) answers in ``_complete``; the checkers see the
    overloads, so it conforms to the Protocol without writing them out again.
    """

    __slots__ = ()

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

    async def __call__(self, **kwargs: Any) -> ModelResponse | CustomStreamWrapper:
        return await self._complete(kwargs)

    def _complete(self, kwargs: dict[str, Any]) -> Awaitable[ModelResponse | CustomStreamWrapper]:
        # An awaitable, not a coroutine of its own: a bound object hands back litellm's, so
        # a call awaits one coroutine of fixedmodel's, not two.
        raise NotImplementedError


class CompletionOverloads:
    """The ``__call__`` of a concrete ``FixedModelCompletion``; see ``ACompletionOverloads``."""

    __slots__ = ()

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

    def __call__(self, **kwargs: Any) -> ModelResponse | CustomStreamWrapper:
        return self._complete(kwargs)

    def _complete(self, kwargs: dict[str, Any]) -> ModelResponse | CustomStreamWrapper:
        raise NotImplementedError


class _AsyncClosable(Protocol):
    @property
    def model(self) -> str:
        """The model the innermost bound object calls."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP clients litellm cached on the running event loop."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _SyncClosable(Protocol):
    @property
    def model(self) -> str:
        """The model the innermost bound object calls."""
        ...

    def close(self) -> None:
        """Release the HTTP clients litellm cached for synchronous calls."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class ClosableAFixedModelCompletion(AFixedModelCompletion, _AsyncClosable, Protocol):
    """An ``AFixedModelCompletion`` that tells its model and can be closed (``async with``).

    ``bind_acompletion`` returns one, and so does every middleware function given one.
    """


@runtime_checkable
class ClosableFixedModelCompletion(FixedModelCompletion, _SyncClosable, Protocol):
    """A ``FixedModelCompletion`` that tells its model and can be closed (``with``)."""


@runtime_checkable
class ClosableAFixedModelEmbedding(AFixedModelEmbedding, _AsyncClosable, Protocol):
    """An ``AFixedModelEmbedding`` that tells its model and can be closed (``async with``)."""


@runtime_checkable
class ClosableFixedModelEmbedding(FixedModelEmbedding, _SyncClosable, Protocol):
    """A ``FixedModelEmbedding`` that tells its model and can be closed (``with``)."""


ModelFn = TypeVar(
    "ModelFn",
    ClosableAFixedModelCompletion,
    ClosableFixedModelCompletion,
    ClosableAFixedModelEmbedding,
    ClosableFixedModelEmbedding,
    AFixedModelCompletion,
    FixedModelCompletion,
    AFixedModelEmbedding,
    FixedModelEmbedding,
)
"""One of the eight kinds: a middleware or routing function returns the kind it is given.

Constrained, not bound, so the checker answers with one of these Protocols (a closable one
whenever the argument can close) and rejects arguments of different kinds given together.
"""
