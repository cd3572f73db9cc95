"""What every middleware layer shares: the callable kinds, the per-call record, the wrapper.

Layers learn about each other's work through one :class:`CallInfo` per call, held in a
context variable: retries count attempts into it, the cache marks hits, the limiter adds its
wait, and the logging/metrics layers (outermost) read it when the call ends.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar, cast

from typing_extensions import Self

from fixedmodel._closing import AsyncClosing, Closing
from fixedmodel._protocols import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    FixedModelCompletion,
    FixedModelEmbedding,
)

ModelCallable: TypeAlias = (
    AFixedModelCompletion | FixedModelCompletion | AFixedModelEmbedding | FixedModelEmbedding
)
"""Any of the four callable kinds."""

RequestKind: TypeAlias = Literal["completion", "embedding"]
_T = TypeVar("_T")


@dataclass
class CallInfo:
    """What the layers of one call found out, read by logging and metrics.

    Attributes:
        attempts: Passes through the layers below ``with_retries``, counted by it (0 without
            it). A pass the cache answered is counted too; see ``unsent``.
        cache_hit: The answer came from a cache (a stored answer, or another call's).
        rate_limit_wait: Seconds spent waiting for the rate limiter.
        unsent: Passes a cache answered without a request (a hit, or sharing another
            call's answer or error).
        served_by: Name of the routed callable that answered (set by the innermost routing
            layer: a deployment of ``with_load_balancing`` or a callable of
            ``with_fallbacks``), or None.
        fallbacks_tried: Fallback callables tried after the primary failed.
        deployments_tried: Deployments a load balancer sent the call to.
        route_failures: ``(callable name, error class name)`` of every routed attempt that
            failed, in order.
        route_skips: ``(callable name, reason)`` of every routed callable passed over
            without a request: ``"retry_after"`` (its provider asked not to be called
            yet) or ``"context_window"`` (the request does not fit its model).
    """

    attempts: int = 0
    cache_hit: bool = False
    rate_limit_wait: float = 0.0
    served_by: str | None = None
    fallbacks_tried: int = 0
    deployments_tried: int = 0
    route_failures: tuple[tuple[str, str], ...] = ()
    unsent: int = 0
    route_skips: tuple[tuple[str, str], ...] = ()


def requests_made(info: CallInfo) -> int:
    """Requests this call put on the wire, as far as the layers know.

    With ``with_retries`` in the stack, its passes less those a cache answered; without
    it, one request unless a cache answered. Summed over concurrent identical calls that
    share one flight, this is the number of requests the provider saw.
    """
    if info.attempts:
        return max(0, info.attempts - info.unsent)
    return 0 if info.cache_hit else 1


_current: ContextVar[CallInfo | None] = ContextVar("fixedmodel_call_info", default=None)


def current_call() -> CallInfo | None:
    """Return the record of the call in progress, if an observing layer opened one."""
    return _current.get()


def join_call() -> tuple[CallInfo, Token[CallInfo | None] | None]:
    """Join the record of the call in progress, or open one: :func:`call_scope` unrolled.

    Returns the record and, when this opened it, the token to hand to :func:`leave_call`
    when the call ends. For the hot path of the layers, where a generator-based context
    manager costs more than the rest of the bookkeeping.
    """
    existing = _current.get()
    if existing is not None:
        return existing, None
    info = CallInfo()
    return info, _current.set(info)


def leave_call(token: Token[CallInfo | None] | None) -> None:
    """Close the record :func:`join_call` opened (nothing if it joined an outer one)."""
    if token is not None:
        _current.reset(token)


@contextmanager
def call_scope() -> Generator[CallInfo, None, None]:
    """Open the record of one call, or join the one an outer layer opened."""
    info, opened = join_call()
    try:
        yield info
    finally:
        leave_call(opened)


def is_async_callable(function: object) -> bool:
    """Tell whether calling ``function`` returns an awaitable (an async kind)."""
    if inspect.iscoroutinefunction(function):
        return True
    # A class instance is async when its __call__ is a coroutine function.
    return inspect.iscoroutinefunction(type(function).__call__)


def request_kind(kwargs: dict[str, object]) -> RequestKind:
    """Tell a chat completion request from an embedding request by its arguments."""
    return "embedding" if "input" in kwargs and "messages" not in kwargs else "completion"


def check_callable(function: object, wrapper: str) -> None:
    """Refuse, at wrap time, something that is not one of the four callable kinds."""
    if not callable(function):
        msg = f"{wrapper}() needs a fixedmodel callable, got {type(function).__name__}"
        raise TypeError(msg)


def check_type(value: object, kind: type[_T], takes: str, example: str) -> _T:
    """Refuse, at wrap time, an option of the wrong type: "{takes} {kind}, got ...; e.g. ..."."""
    if not isinstance(value, kind):
        msg = f"{takes} {kind.__name__}, got {type(value).__name__}; e.g. {example}"
        raise TypeError(msg)
    return value


class Wrapper(Closing, AsyncClosing):
    """Base of the middleware wrappers: keeps the inner callable, forwards what a stack shares.

    A stack tells the model of its innermost bound object and closes like one: ``close()``,
    ``aclose()``, ``with`` and ``async with`` reach the layer below, and so down to the bound
    object (nothing happens over a callable that cannot close, such as a test fake).
    """

    __slots__ = ("_inner", "_made")

    def __init__(self, inner: object) -> None:
        self._inner = inner
        # The public call that made this layer, to make it again in another process.
        self._made: tuple[Callable[..., object], tuple[object, ...], dict[str, object]] | None
        self._made = None

    def made_by(self, factory: Callable[..., object], *args: object, **kwargs: object) -> Self:
        """Record the public call that made this layer (what pickling it sends); return it."""
        self._made = (factory, args, kwargs)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        if self._made is None:
            msg = f"{type(self).__name__} cannot be pickled (no record of how it was made)"
            raise TypeError(msg)
        return (_remake, self._made)

    @property
    def model(self) -> str | None:
        """The model of the innermost bound callable, when it has one."""
        model = getattr(self._inner, "model", None)
        return model if isinstance(model, str) else None

    def close(self) -> None:
        """Close the layer below: at the bottom, the bound object's synchronous clients."""
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()

    async def aclose(self) -> None:
        """Close the layer below: at the bottom, the bound object's clients on this loop."""
        aclose: Callable[[], Awaitable[object]] | None = getattr(self._inner, "aclose", None)
        if callable(aclose):
            await aclose()

    def __repr__(self) -> str:
        # Layers name themselves after their with_* function; the class name is the fallback,
        # shown without the underscore of a private class.
        return f"{type(self).__name__.lstrip('_')}({self._inner!r})"


def _remake(
    factory: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]
) -> object:
    """Unpickle a layer: make it again with the call that made it."""
    return factory(*args, **kwargs)


def innermost(function: object) -> object:
    """The callable at the bottom of a stack of middleware wrappers."""
    while isinstance(function, Wrapper):
        function = function._inner  # pyright: ignore[reportPrivateUsage]
    return function


def flatten_request(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords by the bound objects' rules: None is "not given", ``extra_params`` is
    flattened, and an explicit keyword wins over the same name inside it."""
    merged = {n: v for n, v in kwargs.items() if v is not None and n != "extra_params"}
    extra = kwargs.get("extra_params")
    if isinstance(extra, Mapping):
        for name, value in extra.items():  # pyright: ignore[reportUnknownVariableType]
            if value is not None:
                merged.setdefault(str(name), value)  # pyright: ignore[reportUnknownArgumentType]
    return merged


def request_reader(inner: object) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Return the function that tells what litellm will receive for a call's keywords.

    Every layer decides from the request litellm will receive, not from the call's own
    keywords: over a bound object that is its defaults and ``extra_params`` merged in, with
    ``None`` meaning "not given" (a bound ``stream=True`` makes every call a stream). The
    result has no ``model`` and no provider hint; it is read, never sent.
    """
    # Bound objects and the scripted fakes of fixedmodel.testing tell it themselves.
    merge: object = getattr(innermost(inner), "_fixedmodel_request", None)
    if callable(merge):
        return cast("Callable[[dict[str, Any]], dict[str, Any]]", merge)
    return flatten_request


def is_stream_request(request: Mapping[str, object]) -> bool:
    """Whether litellm will stream the answer of ``request`` (see :func:`request_reader`)."""
    return request.get("stream") is True
