"""The factories that bind one model to a litellm function, and the objects they return.

A bound object merges its defaults with the call's keywords (the call wins, key by key),
flattens the ``extra_params`` escape hatch, and calls litellm. It changes no global litellm
setting and does not re-wrap what litellm returns.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

from typing_extensions import Self, Unpack

from fixedmodel._litellm import litellm_module
from fixedmodel._params import CompletionParams, EmbeddingInput, EmbeddingParams, Messages
from fixedmodel._protocols import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    FixedModelCompletion,
    FixedModelEmbedding,
)

if TYPE_CHECKING:
    from aiohttp import ClientSession
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    from litellm.types.utils import EmbeddingResponse, ModelResponse

__all__ = [
    "BoundACompletion",
    "BoundAEmbedding",
    "BoundCompletion",
    "BoundEmbedding",
    "bind_acompletion",
    "bind_aembedding",
    "bind_completion",
    "bind_embedding",
]

_EXTRA = "extra_params"


def _check_model(model: object, factory: str) -> str:
    if not isinstance(model, str):
        msg = f"{factory}() needs the model name as a str, got {type(model).__name__}"
        raise TypeError(msg)
    if not model.strip():
        msg = f"{factory}() needs a non-empty model name, e.g. 'openai/gpt-4o-mini'"
        raise ValueError(msg)
    return model


def _check_extra(extra: object, where: str) -> dict[str, object]:
    if not isinstance(extra, Mapping):
        msg = (
            f"{_EXTRA} must be a mapping of keyword to value ({where}), got {type(extra).__name__}"
        )
        raise TypeError(msg)
    checked: dict[str, object] = {}
    for key, value in extra.items():  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(key, str):
            msg = f"{_EXTRA} keys must be str ({where}), got {key!r}"
            raise TypeError(msg)
        if key == "model":
            msg = f"{_EXTRA} cannot set 'model' ({where}): the model is fixed at bind time"
            raise TypeError(msg)
        checked[key] = value
    return checked


class _Bound:
    """Shared state and behaviour of the four bound kinds."""

    __slots__ = ("_defaults", "_extra", "_function", "_model")

    _factory = ""
    _function_name = ""

    def __init__(self, model: str, defaults: Mapping[str, object]) -> None:
        self._model = _check_model(model, self._factory)
        if "model" in defaults:
            msg = f"{self._factory}() takes the model once, as its first argument"
            raise TypeError(msg)
        params = dict(defaults)
        self._extra = _check_extra(params.pop(_EXTRA, {}), f"{self._factory}() defaults")
        self._defaults = params
        # Resolved once: litellm is imported here, not at ``import fixedmodel``. The litellm
        # functions are untyped (Any) for checkers; the bound classes type the results.
        self._function: Callable[..., Any] = getattr(litellm_module(), self._function_name)

    @property
    def model(self) -> str:
        """The model this object calls, as given to the factory."""
        return self._model

    @property
    def default_names(self) -> tuple[str, ...]:
        """Names of the bound defaults (their values are not exposed: some are secrets)."""
        return tuple(self._defaults) + tuple(f"{_EXTRA}.{key}" for key in self._extra)

    def _arguments(self, kwargs: dict[str, object]) -> dict[str, Any]:
        if "model" in kwargs:
            msg = (
                f"this callable is bound to model {self._model!r}; do not pass model= "
                f"(bind another model with {self._factory}() instead)"
            )
            raise TypeError(msg)
        arguments: dict[str, Any] = {**self._defaults, **kwargs}
        extra = arguments.pop(_EXTRA, None)
        if self._extra or extra is not None:
            merged = dict(self._extra)
            if extra is not None:
                merged.update(_check_extra(extra, "call"))
            for key, value in merged.items():
                arguments.setdefault(key, value)
        arguments["model"] = self._model
        return arguments

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self._model!r}, defaults={list(self.default_names)!r})"
        )


class _SyncBound(_Bound):
    __slots__ = ()

    def close(self) -> None:
        """Release what this object holds; it stays usable (resources are made again on use)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _AsyncBound(_Bound):
    """An async bound kind that owns one aiohttp session per event loop.

    litellm otherwise caches its own HTTP clients globally and never closes them, which shows
    up as "Unclosed client session" / unclosed-transport warnings when a loop ends. The bound
    object hands litellm its own session (``shared_session``) and closes it in ``aclose()``,
    unless the caller supplied a session, which then stays the caller's to close.
    """

    __slots__ = ("_session", "_session_loop")

    _accepts_session = True

    def __init__(self, model: str, defaults: Mapping[str, object]) -> None:
        super().__init__(model, defaults)
        self._session: ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def _async_arguments(self, kwargs: dict[str, object]) -> dict[str, Any]:
        arguments = self._arguments(kwargs)
        if self._accepts_session and arguments.get("shared_session") is None:
            arguments["shared_session"] = self._own_session()
        return arguments

    def _own_session(self) -> ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._session_loop is not loop:
            # A session made on an earlier, finished loop cannot be used or awaited here;
            # its connections died with that loop.
            import aiohttp

            session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=_aiohttp_trust_env()
            )
            self._session, self._session_loop = session, loop
        return session

    async def aclose(self) -> None:
        """Close the HTTP session this object opened; it stays usable (a new one is made)."""
        session, self._session, self._session_loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _aiohttp_trust_env() -> bool:
    # Same rule litellm applies to the sessions it makes: proxies from the environment are
    # honoured when litellm.aiohttp_trust_env or AIOHTTP_TRUST_ENV says so.
    flag = os.environ.get("AIOHTTP_TRUST_ENV", "").strip().lower() in ("1", "true", "yes")
    return flag or bool(getattr(litellm_module(), "aiohttp_trust_env", False))


class BoundACompletion(_AsyncBound):
    """``litellm.acompletion`` with its model fixed; conforms to ``AFixedModelCompletion``."""

    __slots__ = ()
    _factory = "bind_acompletion"
    _function_name = "acompletion"

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
        response: ModelResponse | CustomStreamWrapper = await self._function(
            **self._async_arguments(kwargs)
        )
        return response


class BoundCompletion(_SyncBound):
    """``litellm.completion`` with its model fixed; conforms to ``FixedModelCompletion``."""

    __slots__ = ()
    _factory = "bind_completion"
    _function_name = "completion"

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
        response: ModelResponse | CustomStreamWrapper = self._function(**self._arguments(kwargs))
        return response


class BoundAEmbedding(_AsyncBound):
    """``litellm.aembedding`` with its model fixed; conforms to ``AFixedModelEmbedding``."""

    __slots__ = ()
    _factory = "bind_aembedding"
    _function_name = "aembedding"

    async def __call__(
        self, *, input: EmbeddingInput, **kwargs: Unpack[EmbeddingParams]
    ) -> EmbeddingResponse:
        response: EmbeddingResponse = await self._function(
            **self._async_arguments({"input": input, **kwargs})
        )
        return response


class BoundEmbedding(_SyncBound):
    """``litellm.embedding`` with its model fixed; conforms to ``FixedModelEmbedding``."""

    __slots__ = ()
    _factory = "bind_embedding"
    _function_name = "embedding"

    def __call__(
        self, *, input: EmbeddingInput, **kwargs: Unpack[EmbeddingParams]
    ) -> EmbeddingResponse:
        response: EmbeddingResponse = self._function(**self._arguments({"input": input, **kwargs}))
        return response


def bind_acompletion(model: str, /, **defaults: Unpack[CompletionParams]) -> BoundACompletion:
    """Bind ``model`` to ``litellm.acompletion``.

    Args:
        model: The litellm model name, e.g. ``"openai/gpt-4o-mini"``.
        **defaults: Keyword arguments sent with every call (``api_base``, ``api_key``,
            ``temperature``, ...); a call's own keywords override them one by one.

    Returns:
        An async callable that conforms to ``AFixedModelCompletion``.

    Raises:
        TypeError: ``model`` is not a str, or ``model=`` is among the defaults.
        ValueError: ``model`` is empty.
    """
    return BoundACompletion(model, defaults)


def bind_completion(model: str, /, **defaults: Unpack[CompletionParams]) -> BoundCompletion:
    """Bind ``model`` to ``litellm.completion``; see :func:`bind_acompletion`.

    Returns:
        A callable that conforms to ``FixedModelCompletion``.
    """
    return BoundCompletion(model, defaults)


def bind_aembedding(model: str, /, **defaults: Unpack[EmbeddingParams]) -> BoundAEmbedding:
    """Bind ``model`` to ``litellm.aembedding``; see :func:`bind_acompletion`.

    Returns:
        An async callable that conforms to ``AFixedModelEmbedding``.
    """
    return BoundAEmbedding(model, defaults)


def bind_embedding(model: str, /, **defaults: Unpack[EmbeddingParams]) -> BoundEmbedding:
    """Bind ``model`` to ``litellm.embedding``; see :func:`bind_acompletion`.

    Returns:
        A callable that conforms to ``FixedModelEmbedding``.
    """
    return BoundEmbedding(model, defaults)


if TYPE_CHECKING:
    # Checked by mypy and pyright only: each bound kind satisfies its Protocol.
    _async_completion: type[AFixedModelCompletion] = BoundACompletion
    _sync_completion: type[FixedModelCompletion] = BoundCompletion
    _async_embedding: type[AFixedModelEmbedding] = BoundAEmbedding
    _sync_embedding: type[FixedModelEmbedding] = BoundEmbedding
