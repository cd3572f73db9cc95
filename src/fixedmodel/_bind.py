"""The factories that bind one model to a litellm function, and the objects they return.

A bound object merges its defaults with the call's keywords (the call wins, key by key),
flattens the ``extra_params`` escape hatch, adds the provider its model names when that is
safe (:func:`_provider_hint`), and calls litellm. It changes no global litellm setting and
does not re-wrap what litellm returns.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import sys
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn

from typing_extensions import Unpack

from fixedmodel._closing import AsyncClosing, Closing
from fixedmodel._guard import check_request, is_blocking
from fixedmodel._litellm import litellm_module
from fixedmodel._params import CompletionParams, EmbeddingInput, EmbeddingParams
from fixedmodel._protocols import (
    ACompletionOverloads,
    AFixedModelCompletion,
    AFixedModelEmbedding,
    CompletionOverloads,
    FixedModelCompletion,
    FixedModelEmbedding,
)
from fixedmodel._resources import release_async_clients, release_sync_clients, track_calls

if TYPE_CHECKING:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    from litellm.types.utils import EmbeddingResponse, ModelResponse

__all__ = [
    "BoundACompletion",
    "BoundAEmbedding",
    "BoundCompletion",
    "BoundEmbedding",
    "UnknownKeywordWarning",
    "bind_acompletion",
    "bind_aembedding",
    "bind_completion",
    "bind_embedding",
]

_EXTRA = "extra_params"


class UnknownKeywordWarning(UserWarning):
    """A keyword that neither fixedmodel types nor litellm lists was passed at the top level.

    litellm hands such keywords to the provider, which may ignore them silently (a typo such
    as ``temprature``) or reject them. The call still goes ahead: provider-specific keywords
    are legitimate. Pass them through ``extra_params={...}`` to say so and silence this
    warning, which is given once per keyword name and process.
    """


_warned: set[str] = set()

# Each kind's keywords: the typed ones, and the ones its call names itself.
_KEYWORDS: dict[str, tuple[Mapping[str, object], frozenset[str]]] = {
    "completion": (CompletionParams.__annotations__, frozenset({"messages", "stream"})),
    "embedding": (EmbeddingParams.__annotations__, frozenset({"input"})),
}


def _known_keywords(
    litellm: Any, function: Callable[..., Any], typed: Mapping[str, object]
) -> frozenset[str]:
    """Keywords litellm knows for ``function``: its signature, its lists, fixedmodel's types."""
    known = set(typed)
    # A litellm build whose function has no signature leaves the lists and the types.
    with contextlib.suppress(TypeError, ValueError):
        known.update(inspect.signature(function).parameters)
    # litellm reads many documented keywords out of **kwargs and keeps a list of them.
    types_utils: object = getattr(getattr(litellm, "types", None), "utils", None)
    listed: object = getattr(types_utils, "all_litellm_params", None)
    if isinstance(listed, (list, tuple, set, frozenset)):
        known.update(name for name in listed if isinstance(name, str))  # pyright: ignore[reportUnknownVariableType]
    known.discard("kwargs")
    return frozenset(known)


def _warn_unknown(names: list[str], known: frozenset[str], typed: Mapping[str, object]) -> None:
    for name in names:
        if name in _warned:
            continue
        _warned.add(name)
        close = difflib.get_close_matches(name, list(typed), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        msg = (
            f"keyword {name!r} is neither a typed fixedmodel parameter nor one litellm lists: "
            f"litellm passes it to the provider, which may ignore it{hint} Pass "
            f"provider-specific keywords through {_EXTRA}={{{name!r}: ...}} to silence this."
        )
        warnings.warn(msg, UnknownKeywordWarning, stacklevel=_outside_fixedmodel())


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _outside_fixedmodel() -> int:
    """The ``stacklevel`` of the first caller outside this package, for a warning raised by
    the function that calls this one: the line to fix is the user's, however many of
    fixedmodel's frames (binding, calling, wrappers) stand between."""
    frame, level = sys._getframe(1), 1  # pyright: ignore[reportPrivateUsage]
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


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
        if value is not None:
            checked[key] = value
    return checked


def _provider_hint(litellm: Any, model: str, defaults: Mapping[str, object]) -> dict[str, Any]:
    """The ``custom_llm_provider`` litellm would infer for ``model``, when it is safe to pass.

    With the provider given, litellm skips part of the provider and price lookups it makes on
    every call (a bound call measured about 2% faster than the raw call, see
    docs/performance.md). It is passed only when the model names its provider as a prefix and
    litellm resolves the model identically with and without it, so what litellm does with the
    request (route, model, credentials, ``api_base``) cannot change. A provider the caller
    binds, or passes on a call, always wins.
    """
    prefix = model.split("/", 1)[0]
    if "/" not in model or "custom_llm_provider" in defaults:
        return {}
    # Resolving the provider of some providers (GitHub Copilot, ChatGPT) starts an OAuth
    # login; litellm lists them. Without that list (another litellm) nothing is resolved.
    constants: object = getattr(litellm, "constants", None)
    logs_in: object = getattr(constants, "PROVIDERS_THAT_AUTHENTICATE_ON_PROVIDER_INFO", None)
    if not isinstance(logs_in, (set, frozenset)) or prefix in logs_in:
        return {}
    given = {
        name: value
        for name in ("api_base", "api_key")
        if isinstance(value := defaults.get(name), str)
    }
    try:
        inferred = litellm.get_llm_provider(model=model, **given)
        explicit = litellm.get_llm_provider(model=model, custom_llm_provider=prefix, **given)
    except Exception:  # Unknown to litellm: the call will report it; pass nothing now.
        return {}
    if inferred[1] != prefix or explicit != inferred:
        return {}
    return {"custom_llm_provider": prefix}


class _Bound:
    """Shared state and behaviour of the four bound kinds."""

    __slots__ = ("_defaults", "_extra", "_function", "_hint", "_model", "_sent")

    _factory = ""
    _function_name = ""
    # What the bound function answers, read by the routing layers to refuse mixed kinds; it
    # picks the keywords too (_KEYWORDS).
    _fixedmodel_kind: ClassVar[Literal["completion", "embedding"]] = "completion"
    # Per bound class, filled on first bind: see _known_keywords.
    _known: ClassVar[frozenset[str] | None] = None

    def __init__(self, model: str, defaults: Mapping[str, object]) -> None:
        self._model = _check_model(model, self._factory)
        if "model" in defaults:
            msg = f"{self._factory}() takes the model once, as its first argument"
            raise TypeError(msg)
        # None means "not given", for defaults as for call keywords (see _arguments).
        params = {name: value for name, value in defaults.items() if value is not None}
        self._extra = _check_extra(params.pop(_EXTRA, {}), f"{self._factory}() defaults")
        self._defaults = params
        # Resolved once: litellm is imported here, not at ``import fixedmodel``. The litellm
        # functions are untyped (Any) for checkers; the bound classes type the results.
        litellm = litellm_module()
        # Each call holds a ticket while it may use a cached client: see _resources.
        function = getattr(litellm, self._function_name)
        self._function: Callable[..., Any] = track_calls(
            function, is_async=isinstance(self, _AsyncBound)
        )
        if type(self)._known is None:
            typed, named = _KEYWORDS[self._fixedmodel_kind]
            type(self)._known = _known_keywords(litellm, function, typed) | named
        self._check_names(params)
        # Below every bound default (extra_params included): the caller's choice wins.
        self._hint = _provider_hint(litellm, model, {**self._extra, **params})
        # What a call without extra_params on either side starts from.
        self._sent: dict[str, object] = {**self._hint, **params}

    def _check_names(self, kwargs: Mapping[str, object]) -> None:
        """Warn once per name about top-level keywords nobody knows (see the warning class)."""
        known = type(self)._known
        if known is not None and not known.issuperset(kwargs):
            typed = _KEYWORDS[self._fixedmodel_kind][0]
            _warn_unknown([name for name in kwargs if name not in known], known, typed)

    def _aliased(self) -> bool:
        """Whether litellm's global ``model_alias_map`` renames this model (read per call)."""
        aliases: object = getattr(litellm_module(), "model_alias_map", None)
        return isinstance(aliases, dict) and self._model in aliases

    @property
    def model(self) -> str:
        """The model this object calls, as given to the factory."""
        return self._model

    @property
    def default_names(self) -> tuple[str, ...]:
        """Names of the bound defaults (their values are not exposed: some are secrets)."""
        return tuple(self._defaults) + tuple(f"{_EXTRA}.{key}" for key in self._extra)

    def _fixedmodel_request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """What litellm will receive for ``kwargs``, without ``model`` or provider hint.

        Read by the middleware layers (``middleware._call.request_reader``), never sent.
        """
        request = self._arguments(kwargs, hint=False)
        del request["model"]
        return request

    def _arguments(self, kwargs: dict[str, object], *, hint: bool = True) -> dict[str, Any]:
        """The keywords litellm receives for a call with ``kwargs``, ``model`` included.

        A keyword given as ``None`` counts as not given: a bound default for it applies, and
        without one litellm receives no such keyword (its own default applies, which for
        every optional litellm parameter is what ``None`` means). ``extra_params`` items
        follow the same rule.

        ``hint=False`` leaves out the provider hint: what the caller asked for, for keys
        and for the layers reading the request (then unknown names are not warned about: the
        call that sends them warns).
        """
        for value in kwargs.values():  # A loop, not any(): no generator on every call.
            if value is None:
                kwargs = {name: value for name, value in kwargs.items() if value is not None}
                break
        if "model" in kwargs:
            msg = (
                f"this callable is bound to model {self._model!r}; do not pass model= "
                f"(bind another model with {self._factory}() instead)"
            )
            raise TypeError(msg)
        if hint:  # A call that sends (not a layer reading the request): warn once per name.
            self._check_names(kwargs)
        # A global model alias renames the model before litellm resolves its provider,
        # so the hint would no longer match: leave it out then.
        hint = hint and bool(self._hint) and not self._aliased()
        call_extra = kwargs.get(_EXTRA)
        if not self._extra and call_extra is None:
            arguments: dict[str, Any] = {**(self._sent if hint else self._defaults), **kwargs}
        else:
            # Later wins: the provider hint, bound extra_params, bound keywords, call
            # extra_params, call keywords.
            arguments = {**(self._hint if hint else {}), **self._extra, **self._defaults}
            if call_extra is not None:
                arguments.update(_check_extra(call_extra, "call"))
            arguments.update(kwargs)
        arguments.pop(_EXTRA, None)
        arguments["model"] = self._model
        return arguments

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt in the other process by the same factory call: the model and the defaults
        # (credentials included: the worker needs them to call the model).
        defaults: dict[str, object] = dict(self._defaults)
        if self._extra:
            defaults[_EXTRA] = dict(self._extra)
        return (_rebind, (type(self), self._model, defaults))

    def _call(self, kwargs: dict[str, object]) -> Any:
        """Call litellm for ``kwargs`` once the test switch that blocks real requests had its say.

        Any: litellm's untyped result (a coroutine for the async kinds), typed by the caller.

        Raises ``RuntimeError`` for a completion while litellm's global ``model_fallbacks`` is
        set: see :func:`_refuse_global_fallbacks`.
        """
        # One attribute read per call; the refusal's function only runs when it refuses.
        if self._fixedmodel_kind == "completion" and getattr(litellm_module(), _GLOBAL, None):
            _refuse_global_fallbacks()
        arguments = self._arguments(kwargs)
        if is_blocking():
            check_request(self._model, arguments)
        return self._function(**arguments)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self._model!r}, defaults={list(self.default_names)!r})"
        )


_GLOBAL = "model_fallbacks"


def _refuse_global_fallbacks() -> NoReturn:
    """Refuse a completion while ``litellm.model_fallbacks`` is set (litellm's deprecated
    global fallbacks): litellm would send the call's failures to other models unseen, and no
    value of the ``fallbacks`` keyword turns the global off (an empty list reads as unset).
    In litellm 1.110 its fallback runner also calls ``acompletion`` again, which reads the
    global again: a failing call recursed for minutes and ended in a plain ``Exception`` that
    no fallback layer recognises. ``with_fallbacks`` is fixedmodel's way to fall back.
    """
    msg = (
        f"litellm.{_GLOBAL} is set: litellm would send this call's failures to other "
        "models unseen by fixedmodel's layers (and no call keyword turns it off). "
        f"Set litellm.{_GLOBAL} = None and use fixedmodel.with_fallbacks instead."
    )
    raise RuntimeError(msg)


class _SyncBound(Closing, _Bound):
    __slots__ = ()

    def close(self) -> None:
        """Close the HTTP clients litellm cached for synchronous calls.

        The object stays usable: the next call opens new connections.
        """
        release_sync_clients()


class _AsyncBound(AsyncClosing, _Bound):
    __slots__ = ()

    async def aclose(self) -> None:
        """Close the HTTP clients litellm cached on the running event loop.

        The object stays usable: the next call opens new connections.
        """
        await release_async_clients()


class BoundACompletion(_AsyncBound, ACompletionOverloads):
    """``litellm.acompletion`` with its model fixed; conforms to ``AFixedModelCompletion``."""

    __slots__ = ()
    _factory = "bind_acompletion"
    _function_name = "acompletion"

    def _complete(self, kwargs: dict[str, Any]) -> Awaitable[ModelResponse | CustomStreamWrapper]:
        response: Awaitable[ModelResponse | CustomStreamWrapper] = self._call(kwargs)
        return response


class BoundCompletion(_SyncBound, CompletionOverloads):
    """``litellm.completion`` with its model fixed; conforms to ``FixedModelCompletion``."""

    __slots__ = ()
    _factory = "bind_completion"
    _function_name = "completion"

    def _complete(self, kwargs: dict[str, Any]) -> ModelResponse | CustomStreamWrapper:
        response: ModelResponse | CustomStreamWrapper = self._call(kwargs)
        return response


class BoundAEmbedding(_AsyncBound):
    """``litellm.aembedding`` with its model fixed; conforms to ``AFixedModelEmbedding``."""

    __slots__ = ()
    _factory = "bind_aembedding"
    _function_name = "aembedding"
    _fixedmodel_kind = "embedding"

    async def __call__(
        self, *, input: EmbeddingInput, **kwargs: Unpack[EmbeddingParams]
    ) -> EmbeddingResponse:
        response: EmbeddingResponse = await self._call({"input": input, **kwargs})
        return response


class BoundEmbedding(_SyncBound):
    """``litellm.embedding`` with its model fixed; conforms to ``FixedModelEmbedding``."""

    __slots__ = ()
    _factory = "bind_embedding"
    _function_name = "embedding"
    _fixedmodel_kind = "embedding"

    def __call__(
        self, *, input: EmbeddingInput, **kwargs: Unpack[EmbeddingParams]
    ) -> EmbeddingResponse:
        response: EmbeddingResponse = self._call({"input": input, **kwargs})
        return response


def _rebind(kind: type[_Bound], model: str, defaults: dict[str, object]) -> _Bound:
    """Unpickle a bound object: bind its model and defaults again."""
    return kind(model, defaults)


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
