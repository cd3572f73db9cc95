"""Attempts: how the routing and retry layers show each attempt to an observing layer.

``with_fallbacks`` (each callable of the chain), ``with_load_balancing`` (each deployment)
and ``with_retries`` (each pass) wrap every attempt in :func:`attempt`. While a traced call
runs, ``with_tracing`` sets an :class:`AttemptObserver` for it (see :func:`observing`), which
makes a child span per attempt; otherwise :func:`attempt` costs one context-variable read
and hands back a shared context manager that does nothing.

An attempt never changes the call: a fault of the observer is logged (once per kind, see
``_faults``) and the attempt goes on untraced.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Literal, Protocol, TypeAlias

from fixedmodel._faults import observer_fault

__all__ = ["AttemptKind", "AttemptObserver", "attempt", "observing", "stop_observing"]

AttemptKind: TypeAlias = Literal["fallback", "deployment", "retry"]


class AttemptObserver(Protocol):
    """What observes the attempts of one call (``with_tracing``'s per-call observer)."""

    def begin(
        self, kind: AttemptKind, target: object, name: str | None, number: int | None
    ) -> object:
        """Start observing one attempt of ``target``; return what :meth:`end` is given."""
        ...

    def end(self, handle: object, error: BaseException | None) -> None:
        """The attempt ``handle`` ended: answered (``error`` None) or raised ``error``."""
        ...


_observer: ContextVar[AttemptObserver | None] = ContextVar(
    "fixedmodel_attempt_observer", default=None
)


def observing(observer: AttemptObserver) -> Token[AttemptObserver | None]:
    """Report the attempts made in this context to ``observer`` until :func:`stop_observing`."""
    return _observer.set(observer)


def stop_observing(token: Token[AttemptObserver | None]) -> None:
    """Undo :func:`observing`."""
    _observer.reset(token)


_NOTHING: AbstractContextManager[None] = nullcontext()  # An unobserved attempt.


class _Observed:
    """The context manager of an observed attempt: ends it with the error it raised, if any."""

    __slots__ = ("_handle", "_observer")

    def __init__(self, observer: AttemptObserver, handle: object) -> None:
        self._observer = observer
        self._handle = handle

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        try:
            self._observer.end(self._handle, error)
        except Exception as fault:
            observer_fault("attempt: ending an attempt", fault)
        return False  # The attempt's own error, if any, goes on unchanged.


def attempt(
    kind: AttemptKind, target: object, name: str | None = None, number: int | None = None
) -> AbstractContextManager[None]:
    """A context manager around one attempt of ``target`` (the callable tried).

    Args:
        kind: ``"fallback"``, ``"deployment"`` or ``"retry"``: the layer that made it.
        target: The callable the attempt calls (its ``model`` names the attempt).
        name: The routed name (``gpt-4o#1``, a deployment's name), if any.
        number: The attempt's number, counted from 1 (retries).
    """
    observer = _observer.get()
    if observer is None:
        return _NOTHING
    try:
        handle = observer.begin(kind, target, name, number)
    except Exception as fault:
        observer_fault("attempt: starting an attempt", fault)
        return _NOTHING
    return _Observed(observer, handle)
