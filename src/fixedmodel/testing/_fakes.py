"""Scripted fakes of the four callable kinds, for tests that must not reach a provider.

Each fake conforms to its Protocol (the checkers verify it), answers from a script or from a
function of the request, returns real litellm objects, and records every call.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast

from typing_extensions import Unpack

from fixedmodel._closing import AsyncClosing, Closing
from fixedmodel._params import CompletionParams, EmbeddingInput, EmbeddingParams, Messages
from fixedmodel._protocols import ACompletionOverloads, CompletionOverloads
from fixedmodel.middleware._call import flatten_request
from fixedmodel.testing._script import (
    ChatEntry,
    EmbeddingEntry,
    Fail,
    as_reply,
    build_embedding,
    build_response,
    build_stream,
)

if TYPE_CHECKING:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    from litellm.types.utils import EmbeddingResponse, ModelResponse

    from fixedmodel._protocols import (
        AFixedModelCompletion,
        AFixedModelEmbedding,
        FixedModelCompletion,
        FixedModelEmbedding,
    )

__all__ = [
    "CompletionCall",
    "EmbeddingCall",
    "FakeACompletion",
    "FakeAEmbedding",
    "FakeCompletion",
    "FakeEmbedding",
    "UnexpectedCallError",
]

_Entry = TypeVar("_Entry")
_Call = TypeVar("_Call", "CompletionCall", "EmbeddingCall")


class UnexpectedCallError(AssertionError):
    """A fake was called more often than its script has answers.

    An ``AssertionError``, so that pytest reports it as a failed expectation, and so that no
    retry or fallback layer mistakes it for a provider failure.
    """


@dataclass(frozen=True)
class CompletionCall:
    """One call a completion fake received.

    Attributes:
        messages: The messages of the call.
        stream: Whether the call asked for a stream.
        params: The other keywords, the fake's defaults merged in (the call wins), keywords
            given as None left out and ``extra_params`` flattened, as a bound object would
            send them to litellm.
    """

    messages: Messages
    stream: bool
    params: CompletionParams


@dataclass(frozen=True)
class EmbeddingCall:
    """One call an embedding fake received.

    Attributes:
        input: The input of the call.
        params: The other keywords, merged as for :class:`CompletionCall`.
    """

    input: EmbeddingInput
    params: EmbeddingParams


def _merged(defaults: Mapping[str, object], kwargs: Mapping[str, object]) -> dict[str, object]:
    """Defaults and call keywords merged the way bound objects merge them (call wins)."""
    return {**flatten_request(defaults), **flatten_request(kwargs)}


class _Fake(Closing, AsyncClosing, Generic[_Entry, _Call]):
    """What the four fakes share: the script, the record of calls, model and closing."""

    _kind = ""

    def __init__(
        self,
        script: Iterable[_Entry] | Callable[[_Call], _Entry],
        model: str,
        defaults: Mapping[str, object],
    ) -> None:
        if "model" in defaults:
            msg = f"{self._kind}() takes the model as model=, not among the defaults"
            raise TypeError(msg)
        self._model = model
        self._defaults = dict(defaults)
        self._respond: Callable[[_Call], _Entry] | None = None
        self._script: deque[_Entry] = deque()
        if callable(script):
            self._respond = script
        else:
            self._script.extend(script)
        self._lock = threading.Lock()
        self.calls: list[_Call] = []
        """Every call received, in order."""

    @property
    def model(self) -> str:
        """The model name the fake reports in its answers."""
        return self._model

    @property
    def remaining(self) -> int:
        """Scripted answers not used yet (0 for a function-backed fake)."""
        return len(self._script)

    def add(self, *entries: _Entry) -> None:
        """Append answers to the script."""
        with self._lock:
            self._script.extend(entries)

    def _request(self, kwargs: Mapping[str, object]) -> dict[str, object]:
        if "model" in kwargs:
            msg = f"this fake is bound to model {self._model!r}; do not pass model="
            raise TypeError(msg)
        return _merged(self._defaults, kwargs)

    def _fixedmodel_request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """What a bound object would send for ``kwargs``: read by the middleware layers."""
        return _merged(self._defaults, kwargs)

    def _next(self, call: _Call, request: Mapping[str, object]) -> _Entry:
        with self._lock:
            self.calls.append(call)
            number = len(self.calls)
            if self._respond is None:
                if not self._script:
                    shown = {k: v for k, v in request.items() if k in {"messages", "input"}}
                    msg = (
                        f"{self._kind} got call #{number} but its script has no answer left "
                        f"(it had {number - 1}): {shown!r}"
                    )
                    raise UnexpectedCallError(msg)
                return self._script.popleft()
        return self._respond(call)

    def _raise_failure(self, entry: object) -> None:
        if isinstance(entry, Fail):
            raise entry.exception(self._model)
        if isinstance(entry, BaseException):
            raise entry

    def close(self) -> None:
        """Do nothing: a fake holds no resources (there for parity with bound objects)."""

    async def aclose(self) -> None:
        """Do nothing: a fake holds no resources (there for parity with bound objects)."""

    def __repr__(self) -> str:
        source = "function" if self._respond is not None else f"{self.remaining} scripted"
        return f"{self._kind}(model={self._model!r}, {source}, calls={len(self.calls)})"


class _CompletionFake(_Fake[ChatEntry, CompletionCall]):
    # Read by the routing layers, as on the bound objects, to refuse mixed kinds.
    _fixedmodel_kind: ClassVar[Literal["completion", "embedding"]] = "completion"

    def __init__(
        self,
        script: Iterable[ChatEntry] | Callable[[CompletionCall], ChatEntry] = (),
        *,
        model: str = "fake/model",
        **defaults: Unpack[CompletionParams],
    ) -> None:
        super().__init__(script, model, defaults)

    def _answer(
        self, kwargs: dict[str, Any], *, asynchronous: bool
    ) -> ModelResponse | CustomStreamWrapper:
        request = self._request(kwargs)
        messages = cast("Messages", request.get("messages", ()))
        stream = request.get("stream") is True
        params = {k: v for k, v in request.items() if k not in {"messages", "stream"}}
        call = CompletionCall(messages, stream, cast("CompletionParams", params))
        entry = self._next(call, request)
        self._raise_failure(entry)
        reply = as_reply(cast("str | Any", entry))
        if stream:
            return build_stream(reply, self._model, request, asynchronous=asynchronous)
        return build_response(reply, self._model, request)


class FakeACompletion(_CompletionFake, ACompletionOverloads):
    """A scripted stand-in for a bound ``litellm.acompletion``; an ``AFixedModelCompletion``.

    Args:
        script: The answers, one per call, in order (see ``ChatEntry``), or a function that
            computes the answer from the :class:`CompletionCall`.
        model: The model name the answers report.
        **defaults: Keywords merged into every call, as a bound object's defaults are.

    Raises:
        UnexpectedCallError: On a call after the script ran out (from the call).
    """

    _kind = "FakeACompletion"

    async def _complete(self, kwargs: dict[str, Any]) -> ModelResponse | CustomStreamWrapper:
        await asyncio.sleep(0)  # a real call yields to the loop; so does the fake
        return self._answer(kwargs, asynchronous=True)


class FakeCompletion(_CompletionFake, CompletionOverloads):
    """A scripted stand-in for a bound ``litellm.completion``; a ``FixedModelCompletion``.

    Takes the same arguments as :class:`FakeACompletion`.
    """

    _kind = "FakeCompletion"

    def _complete(self, kwargs: dict[str, Any]) -> ModelResponse | CustomStreamWrapper:
        return self._answer(kwargs, asynchronous=False)


class _EmbeddingFake(_Fake[EmbeddingEntry, EmbeddingCall]):
    _fixedmodel_kind: ClassVar[Literal["completion", "embedding"]] = "embedding"

    def __init__(
        self,
        script: Iterable[EmbeddingEntry] | Callable[[EmbeddingCall], EmbeddingEntry] = (),
        *,
        model: str = "fake/embedding-model",
        **defaults: Unpack[EmbeddingParams],
    ) -> None:
        super().__init__(script, model, defaults)

    def _answer(self, kwargs: dict[str, Any]) -> EmbeddingResponse:
        request = self._request(kwargs)
        params = {k: v for k, v in request.items() if k != "input"}
        call = EmbeddingCall(
            cast("EmbeddingInput", request.get("input")), cast("EmbeddingParams", params)
        )
        entry = self._next(call, request)
        self._raise_failure(entry)
        return build_embedding(cast("Any", entry), self._model, request)


class FakeAEmbedding(_EmbeddingFake):
    """A scripted stand-in for a bound ``litellm.aembedding``; an ``AFixedModelEmbedding``.

    Args:
        script: The answers, one per call (see ``EmbeddingEntry``), or a function that
            computes the answer from the :class:`EmbeddingCall`.
        model: The model name the answers report.
        **defaults: Keywords merged into every call, as a bound object's defaults are.

    Raises:
        UnexpectedCallError: On a call after the script ran out (from the call).
    """

    _kind = "FakeAEmbedding"

    async def __call__(
        self, *, input: EmbeddingInput, **kwargs: Unpack[EmbeddingParams]
    ) -> EmbeddingResponse:
        await asyncio.sleep(0)
        return self._answer({"input": input, **kwargs})


class FakeEmbedding(_EmbeddingFake):
    """A scripted stand-in for a bound ``litellm.embedding``; a ``FixedModelEmbedding``.

    Takes the same arguments as :class:`FakeAEmbedding`.
    """

    _kind = "FakeEmbedding"

    def __call__(
        self, *, input: EmbeddingInput, **kwargs: Unpack[EmbeddingParams]
    ) -> EmbeddingResponse:
        return self._answer({"input": input, **kwargs})


if TYPE_CHECKING:
    # Checked by mypy and pyright only: each fake satisfies its Protocol.
    _async_completion: type[AFixedModelCompletion] = FakeACompletion
    _sync_completion: type[FixedModelCompletion] = FakeCompletion
    _async_embedding: type[AFixedModelEmbedding] = FakeAEmbedding
    _sync_embedding: type[FixedModelEmbedding] = FakeEmbedding
