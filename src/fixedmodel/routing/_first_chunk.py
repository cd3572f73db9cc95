"""Reading a stream's first chunk before the caller does, and handing it back intact.

A routing layer that may still send a request elsewhere reads the first chunk of a stream
itself: a provider that accepted the request (HTTP 200) and then failed before any chunk
(an error event, a dropped connection, a stall past the timeout) has failed before the caller
saw anything, so the next callable may serve the request. Once the first chunk is in, the
stream is handed back as litellm's own object, its class switched to a subclass that returns
that chunk first and behaves as litellm's otherwise (as ``watch_stream`` does).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, cast

from fixedmodel._litellm import litellm_module

__all__ = ["afirst_chunk", "first_chunk", "is_stream"]

_classes: dict[type[Any], type[Any]] = {}
_classes_lock = threading.Lock()
_EMPTY = object()


def is_stream(result: object) -> bool:
    """Whether ``result`` is litellm's stream object."""
    return isinstance(result, litellm_module().CustomStreamWrapper)


def _primed_class(base: type[Any]) -> type[Any]:
    """The subclass of ``base`` that returns a held first chunk first (made once per base)."""
    with _classes_lock:
        made = _classes.get(base)
        if made is not None:
            return made

        class PrimedStream(base):  # type: ignore[misc]  # subclassing litellm's class, Any here
            # No __slots__: the instance keeps the base's layout, so __class__ can be switched.
            _fixedmodel_first: object

            def __next__(self) -> Any:
                held = self.__dict__.pop("_fixedmodel_first", _EMPTY)
                if held is not _EMPTY:
                    return held
                return super().__next__()  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]

            async def __anext__(self) -> Any:
                held = self.__dict__.pop("_fixedmodel_first", _EMPTY)
                if held is not _EMPTY:
                    return held
                return await super().__anext__()  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]

        PrimedStream.__name__ = base.__name__
        PrimedStream.__qualname__ = base.__qualname__
        PrimedStream.__module__ = base.__module__
        _classes[base] = PrimedStream
        return PrimedStream


def _hold(stream: Any, chunk: object) -> None:
    base: type[Any] = stream.__class__
    stream._fixedmodel_first = chunk
    stream.__class__ = _primed_class(base)


def _primed(stream: Any) -> bool:
    """Whether the first chunk is already held, or cannot be (no instance ``__dict__``)."""
    held: object = getattr(stream, "__dict__", None)
    return not isinstance(held, dict) or "_fixedmodel_first" in held


async def afirst_chunk(stream: Any) -> None:
    """Read the first chunk of an async stream now, and keep it for the caller.

    Raises:
        Exception: What reading the first chunk raised; the stream is closed first.
    """
    if _primed(stream):  # A routing layer inside read it already, or it cannot be held.
        return
    try:
        chunk = cast("object", await stream.__anext__())
    except StopAsyncIteration:
        return  # An empty stream: the caller's iteration ends at once, as it would have.
    except Exception:
        closer = getattr(stream, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):  # The read's failure is the one to report.
                await closer()
        raise
    _hold(stream, chunk)


def first_chunk(stream: Any) -> None:
    """Read the first chunk of a sync stream now, and keep it for the caller.

    Raises:
        Exception: What reading the first chunk raised; the stream is closed first.
    """
    if _primed(stream):
        return
    try:
        chunk = cast("object", next(stream))
    except StopIteration:
        return
    except Exception:
        closer = getattr(stream, "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):  # The read's failure is the one to report.
                closer()
        raise
    _hold(stream, chunk)
