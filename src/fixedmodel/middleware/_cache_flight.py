"""Single flight: the outcome of one upstream call, shared with identical calls that wait.

While a cache miss is being answered, identical requests do not call the model again: they
find the leader's flight, wait for it, and take a copy of its answer or its exception.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

__all__ = ["AsyncFlight", "Flight", "SyncFlight"]


class Flight:
    """What the leader of a flight leaves for its followers.

    Attributes:
        entry: The answer as a cache entry, for each follower to take a copy of (decoded
            once, through the cache's memo); ``None`` when the leader ended without one
            (cancelled, or an answer that cannot be cached): the followers then start over.
        error: The exception the leader's call raised, raised again by each follower.
    """

    __slots__ = ("entry", "error", "traceback")

    def __init__(self) -> None:
        self.entry: bytes | None = None
        self.error: Exception | None = None
        self.traceback: TracebackType | None = None

    def fail(self, error: Exception) -> None:
        """Record the leader's exception for the followers."""
        self.error, self.traceback = error, error.__traceback__

    def reraise(self) -> None:
        """Raise the leader's exception, if it failed."""
        # With the leader's traceback each time, as asyncio.Future.result() does, instead of
        # piling every follower's frames onto the one shared exception.
        if self.error is not None:
            raise self.error.with_traceback(self.traceback)


class AsyncFlight(Flight):
    """A flight whose followers are tasks of the event loop ``loop``.

    Most flights have no follower, so the event they would wait on is made by the first.
    """

    __slots__ = ("_event", "_landed", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self._landed = False
        self._event: asyncio.Event | None = None

    async def wait(self) -> None:
        """Wait until the leader has landed (answered, failed or been cancelled)."""
        if not self._landed:
            if self._event is None:
                self._event = asyncio.Event()
            await self._event.wait()

    def land(self) -> None:
        """Let the followers go; the flight's outcome must be set first."""
        self._landed = True
        if self._event is not None:
            self._event.set()


class SyncFlight(Flight):
    """A flight whose followers are threads."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        super().__init__()
        self._event = threading.Event()

    def wait(self) -> None:
        """Wait until the leader has landed (answered, failed or been interrupted)."""
        self._event.wait()

    def land(self) -> None:
        """Let the followers go; the flight's outcome must be set first."""
        self._event.set()
