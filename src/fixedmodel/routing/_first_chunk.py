"""Reading a stream up to its first chunk with content before the caller does, intact.

A routing layer that may still send a request elsewhere reads the start of a stream itself:
a provider that accepted the request (HTTP 200) and then failed before any content (an error
event, a dropped connection, a stall past the timeout) has failed before the caller saw
anything, so the next callable may serve the request. OpenAI-compatible servers open a
stream with a chunk that only says ``{"role": "assistant"}`` (empty content); such chunks
give the caller nothing, so the boundary is the first chunk that carries something the
caller can use: text, a tool or function call, audio, reasoning text or thinking blocks,
images. The chunks read up to and including it are handed back first, in order, with the
stream still litellm's own object, its class switched to a subclass that returns the held
chunks first and behaves as litellm's otherwise (``_streams.stream_subclass``, the one
mechanism ``watch_stream`` uses too).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from fixedmodel._litellm import litellm_module
from fixedmodel._streams import carries_content, stream_subclass

__all__ = ["afirst_chunk", "carries_content", "first_chunk", "is_stream"]

_HELD = "_fixedmodel_first"
# Chunks read in search of content before giving up and handing the stream back as it is.
_MAX_EMPTY = 64


def is_stream(result: object) -> bool:
    """Whether ``result`` is litellm's stream object."""
    return isinstance(result, litellm_module().CustomStreamWrapper)


def _holding(base: type[Any]) -> type[Any]:
    """Make the subclass of litellm's stream class that returns the held chunks first."""

    class PrimedStream(base):  # type: ignore[misc]  # subclassing litellm's class, Any here
        # No __slots__: the instance keeps the base's layout, so __class__ can be switched.
        _fixedmodel_first: list[object]

        def __next__(self) -> Any:
            held: list[object] | None = self.__dict__.get(_HELD)
            if held:
                return _take(self, held)
            return super().__next__()  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]

        async def __anext__(self) -> Any:
            held: list[object] | None = self.__dict__.get(_HELD)
            if held:
                return _take(self, held)
            return await super().__anext__()  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]

    return PrimedStream


def _take(stream: Any, held: list[object]) -> object:
    chunk = held.pop(0)
    if not held:
        del stream.__dict__[_HELD]
    return chunk


def _hold(stream: Any, chunks: list[object]) -> None:
    if not chunks:
        return
    base: type[Any] = stream.__class__
    setattr(stream, _HELD, chunks)
    stream.__class__ = stream_subclass(base, "primed", _holding)


def _primed(stream: Any) -> bool:
    """Whether chunks are already held, or cannot be (no instance ``__dict__``)."""
    held: object = getattr(stream, "__dict__", None)
    return not isinstance(held, dict) or _HELD in held


async def afirst_chunk(stream: Any) -> None:
    """Read an async stream up to its first chunk with content now; keep them for the caller.

    Raises:
        Exception: What reading raised before a chunk with content came; the stream is
            closed first, and the chunks read before are dropped (the caller saw none).
        asyncio.CancelledError: The call was cancelled while reading; the stream is closed.
    """
    if _primed(stream):  # A routing layer inside read it already, or it cannot be held.
        return
    chunks: list[object] = []
    try:
        while len(chunks) < _MAX_EMPTY:
            chunk = cast("object", await stream.__anext__())
            chunks.append(chunk)
            if carries_content(chunk):
                break
    except StopAsyncIteration:
        pass  # The stream ended: the caller gets what was read, then the end, as it would.
    except (Exception, asyncio.CancelledError):
        # Cancelled too (a timeout around the call): nobody will read this stream, so its
        # connection goes back now rather than whenever the collector finds it.
        closer = getattr(stream, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):  # The read's failure is the one to report.
                await closer()
        raise
    _hold(stream, chunks)


def first_chunk(stream: Any) -> None:
    """Read a sync stream up to its first chunk with content now; keep them for the caller.

    Raises:
        BaseException: What reading raised before a chunk with content came (an error, a
            ``KeyboardInterrupt``); the stream is closed first, and the chunks read before
            are dropped (the caller saw none).
    """
    if _primed(stream):
        return
    chunks: list[object] = []
    try:
        while len(chunks) < _MAX_EMPTY:
            chunk = cast("object", next(stream))
            chunks.append(chunk)
            if carries_content(chunk):
                break
    except StopIteration:
        pass
    except BaseException:  # KeyboardInterrupt too: nobody will read this stream.
        closer = getattr(stream, "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):  # The read's failure is the one to report.
                closer()
        raise
    _hold(stream, chunks)
