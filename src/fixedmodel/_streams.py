"""Learning how a stream ended, without re-wrapping litellm's ``CustomStreamWrapper``.

A layer that must settle something when a stream ends (the limiter's token charge, the
metrics' token counts, a budget) calls :func:`watch_stream` on the stream litellm returned.
The stream stays litellm's own object: its class is switched to a subclass of
``CustomStreamWrapper`` that reports the end to the watchers and behaves the same otherwise
(``isinstance`` checks, attributes and methods are litellm's).

A stream "ends" once, at the first of: iteration finished (``completed``), iteration raised
(``error``), the caller closed it early, or the object was garbage-collected unfinished
(abandoned). Usage is taken from the last chunk that carried one (OpenAI sends it in the last
chunk when ``stream_options={"include_usage": True}``); it is ``None`` when the stream ended
without reporting usage, and watchers then fall back to their estimate (the text the caller
received is in :attr:`StreamEnd.text` for that).

A watcher may also give an async variant (``awatcher``): when the end is seen by the
caller's ``__anext__`` or ``aclose``, the async variant is awaited there, before the end (the
``StopAsyncIteration``, the error, the return of ``aclose``) reaches the caller, so work
that must await (a budget settling in Redis) is done before the caller moves on, and
before ``asyncio.run`` can close the loop. Ends seen elsewhere (sync iteration, ``close()``,
garbage collection) call the sync watcher.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from fixedmodel._faults import observer_fault
from fixedmodel._litellm import litellm_module

if TYPE_CHECKING:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

__all__ = ["StreamEnd", "StreamUsage", "carries_content", "stream_subclass", "watch_stream"]

LOGGER = logging.getLogger("fixedmodel")


@dataclass(frozen=True)
class StreamUsage:
    """Token usage a stream reported.

    Attributes:
        prompt_tokens: Input tokens.
        completion_tokens: Output tokens.
    """

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Input and output tokens together."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class StreamEnd:
    """How one stream ended, as told to its watchers.

    Attributes:
        usage: The usage the stream reported, or None when it reported none.
        completed: The caller read the stream to its end.
        error: The exception iteration raised, or None.
        chunks: Chunks handed to the caller.
        first_chunk_at: ``time.perf_counter()`` when the first chunk reached the caller, or None.
        text: The text the caller received: content, reasoning, and tool calls' names and
            arguments, in order (for an estimate when no usage was reported).
        delivered: A chunk the caller received carried content (see
            :func:`carries_content`); the role-only chunk OpenAI-compatible streams open
            with does not.
    """

    usage: StreamUsage | None
    completed: bool
    error: BaseException | None
    chunks: int
    first_chunk_at: float | None
    text: str = ""
    delivered: bool = False


_NO_CHOICES = object()
# Delta fields whose non-empty value the caller can use (litellm's Delta; OpenAI's
# ChatCompletionChunk delta has content, tool_calls, function_call, refusal).
_CONTENT_FIELDS = (
    "content",
    "tool_calls",
    "function_call",
    "audio",
    "reasoning_content",
    "thinking_blocks",
    "images",
    "refusal",
)


def carries_content(chunk: object) -> bool:
    """Whether a stream chunk carries something the caller can use (not only a role).

    A chunk of an unknown shape (no ``choices``) counts as content; one with no choices (a
    usage-only chunk) or whose deltas are all empty does not.
    """
    choices: object = getattr(chunk, "choices", _NO_CHOICES)
    if choices is _NO_CHOICES:
        return True
    if not isinstance(choices, list | tuple):
        return True
    for choice in cast("list[object]", choices):
        delta: object = getattr(choice, "delta", None)
        if delta is None:
            continue
        for field in _CONTENT_FIELDS:
            if getattr(delta, field, None):
                return True
    return False


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage_of(chunk: object) -> StreamUsage | None:
    usage: object = getattr(chunk, "usage", None)
    if usage is None:
        return None
    prompt: object = getattr(usage, "prompt_tokens", None)
    completion: object = getattr(usage, "completion_tokens", None)
    if isinstance(usage, Mapping):
        counts = cast("Mapping[str, object]", usage)
        prompt = counts.get("prompt_tokens")
        completion = counts.get("completion_tokens")
    if prompt is None and completion is None:
        return None
    return StreamUsage(_int(prompt), _int(completion))


def _text_of(chunk: object) -> list[str]:
    """The text pieces of one chunk's deltas (content, reasoning, tool calls)."""
    pieces: list[str] = []
    choices: object = getattr(chunk, "choices", None)
    if not isinstance(choices, list):
        return pieces
    for choice in cast("list[object]", choices):
        delta: object = getattr(choice, "delta", None)
        for name in ("reasoning_content", "content"):
            value: object = getattr(delta, name, None)
            if isinstance(value, str):
                pieces.append(value)
        calls: object = getattr(delta, "tool_calls", None)
        if isinstance(calls, list):
            for call in cast("list[object]", calls):
                function: object = getattr(call, "function", None)
                for name in ("name", "arguments"):
                    value = getattr(function, name, None)
                    if isinstance(value, str):
                        pieces.append(value)
    return pieces


Watcher = Callable[["StreamEnd"], None]
AsyncWatcher = Callable[["StreamEnd"], Awaitable[None]]


class _Watch:
    """The state one watched stream shares with its finalizer (which must not hold the stream)."""

    __slots__ = (
        "__weakref__",
        "chunks",
        "delivered",
        "done",
        "first_chunk_at",
        "inside",
        "lock",
        "text",
        "usage",
        "watchers",
    )

    def __init__(self) -> None:
        self.watchers: list[tuple[Watcher, AsyncWatcher | None]] = []
        self.text: list[str] = []
        self.usage: StreamUsage | None = None
        self.chunks = 0
        self.delivered = False
        self.first_chunk_at: float | None = None
        self.done = False
        # True while litellm's own __next__/__anext__ runs: it closes the stream itself at
        # the end, which is not the caller closing it early.
        self.inside = False
        self.lock = threading.Lock()

    def seen(self, chunk: object) -> None:
        if self.chunks == 0:
            self.first_chunk_at = time.perf_counter()
        self.chunks += 1
        if not self.delivered:  # Until the first chunk with content, then one attribute read.
            self.delivered = carries_content(chunk)
        self.text.extend(_text_of(chunk))
        usage = _usage_of(chunk)
        if usage is not None:
            self.usage = usage

    def outcome(self, *, completed: bool, error: BaseException | None) -> StreamEnd:
        text = "".join(self.text)
        return StreamEnd(
            self.usage, completed, error, self.chunks, self.first_chunk_at, text, self.delivered
        )

    def _take(self) -> list[tuple[Watcher, AsyncWatcher | None]] | None:
        with self.lock:
            if self.done:
                return None
            self.done = True
            watchers = self.watchers
            self.watchers = []
            return watchers

    def end(self, *, completed: bool, error: BaseException | None) -> None:
        watchers = self._take()
        if watchers is None:
            return
        outcome = self.outcome(completed=completed, error=error)
        for watcher, _ in watchers:
            try:  # A watcher's fault must not break the caller's stream, nor other watchers.
                watcher(outcome)
            except Exception as fault:
                observer_fault("a stream watcher", fault)

    async def aend(self, *, completed: bool, error: BaseException | None) -> None:
        """:meth:`end` from the caller's async iteration: async variants are awaited."""
        watchers = self._take()
        if watchers is None:
            return
        outcome = self.outcome(completed=completed, error=error)
        for watcher, awatcher in watchers:
            try:  # A watcher's fault must not break the caller's stream, nor other watchers.
                if awatcher is None:
                    watcher(outcome)
                else:
                    await awatcher(outcome)
            except Exception as fault:
                observer_fault("a stream watcher", fault)


def _abandoned(watch: _Watch) -> None:
    watch.end(completed=False, error=None)


_subclasses: dict[tuple[str, type[Any]], type[Any]] = {}
_subclasses_lock = threading.Lock()


def stream_subclass(
    base: type[Any], role: str, make: Callable[[type[Any]], type[Any]]
) -> type[Any]:
    """The subclass of ``base`` that ``make`` builds for ``role``, made once per base and role.

    The one way a layer changes what litellm's stream does: it switches the object's class
    (``stream.__class__ = stream_subclass(...)``) instead of wrapping it, so the caller keeps
    litellm's own object. The subclass bears the base's name, qualified name and module, so
    it reads as litellm's class; it must not add ``__slots__``, so that the instance keeps
    the base's layout. Subclasses stack: a stream watched and then primed has both.
    """
    with _subclasses_lock:
        made = _subclasses.get((role, base))
        if made is None:
            made = make(base)
            made.__name__ = base.__name__
            made.__qualname__ = base.__qualname__
            made.__module__ = base.__module__
            _subclasses[(role, base)] = made
        return made


def _reporting(base: type[Any]) -> type[Any]:
    """Make the subclass of litellm's stream class that reports its end to the watchers."""

    class WatchedStream(base):  # type: ignore[misc]  # subclassing litellm's class, Any here
        # No __slots__: the instance keeps the base's layout, so __class__ can be switched.
        _fixedmodel_watch: _Watch

        def __next__(self) -> Any:
            watch = self._fixedmodel_watch
            watch.inside = True
            try:
                chunk = cast("object", super().__next__())  # pyright: ignore[reportUnknownMemberType]
            except StopIteration:
                watch.end(completed=True, error=None)
                raise
            except BaseException as error:
                watch.end(completed=False, error=error)
                raise
            finally:
                watch.inside = False
            watch.seen(chunk)
            return chunk

        async def __anext__(self) -> Any:
            watch = self._fixedmodel_watch
            watch.inside = True
            try:
                chunk = cast("object", await super().__anext__())  # pyright: ignore[reportUnknownMemberType]
            except StopAsyncIteration:
                await watch.aend(completed=True, error=None)
                raise
            except BaseException as error:
                await watch.aend(completed=False, error=error)
                raise
            finally:
                watch.inside = False
            watch.seen(chunk)
            return chunk

        def close(self) -> Any:
            if not self._fixedmodel_watch.inside:
                self._fixedmodel_watch.end(completed=False, error=None)
            closer = getattr(super(), "close", None)
            return closer() if closer is not None else None

        async def aclose(self) -> Any:
            if not self._fixedmodel_watch.inside:
                await self._fixedmodel_watch.aend(completed=False, error=None)
            closer = getattr(super(), "aclose", None)
            return (await closer()) if closer is not None else None

    return WatchedStream


def watch_stream(
    stream: CustomStreamWrapper, watcher: Watcher, *, awatcher: AsyncWatcher | None = None
) -> None:
    """Call ``watcher`` once when ``stream`` ends (see the module docstring).

    Several layers may watch one stream; each is told once, in the order they started
    watching. ``watcher`` must not hold a reference to ``stream`` (not even through a
    closure): the watcher list is reachable from the stream's finalizer, so such a
    reference would keep an abandoned stream alive and its end would never be reported.
    ``watcher`` runs in the thread that ended the stream (or in the garbage
    collector, for an abandoned stream), so it must be quick, must not raise and must not
    block; an async layer that needs to await schedules that work itself.

    Args:
        stream: The stream litellm returned (or one a cache replays).
        watcher: Called with a :class:`StreamEnd`.
        awatcher: Awaited instead of ``watcher`` when the end is seen by the caller's
            ``__anext__`` or ``aclose`` (before that end reaches the caller). It must not
            raise either (an exception is logged) and holds no reference to ``stream``.
    """
    watch: _Watch | None = getattr(stream, "_fixedmodel_watch", None)
    if watch is None:
        base: type[Any] = type(stream)
        if not issubclass(base, litellm_module().CustomStreamWrapper):
            # Not litellm's stream (a hand-written fake): nothing to hook; tell the watcher
            # now that nothing is known, so a charge is settled from its estimate.
            watcher(StreamEnd(None, False, None, 0, None))
            return
        watch = _Watch()
        stream._fixedmodel_watch = watch  # type: ignore[attr-defined]  # ours, on litellm's object
        stream.__class__ = stream_subclass(base, "watched", _reporting)
        weakref.finalize(stream, _abandoned, watch)
    with watch.lock:
        if not watch.done:
            watch.watchers.append((watcher, awatcher))
            return
    # Already ended (a stream read before a layer watched it): tell at once.
    watcher(watch.outcome(completed=False, error=None))
