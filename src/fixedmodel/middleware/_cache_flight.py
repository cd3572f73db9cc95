"""Single flight: the outcome of one upstream call, shared with identical calls that wait.

While a cache miss is being answered, identical requests do not call the model again: they
find the leader's flight, wait for it, and take a copy of its answer or its exception.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litellm.types.utils import EmbeddingResponse, ModelResponse

__all__ = ["AsyncFlight", "Flight", "SyncFlight"]


class Flight:
    """What the leader of a flight leaves for its followers.

    Attributes:
        template: The answer, decoded from its cache entry, to be copied by each follower;
            ``None`` when the leader ended without one (cancelled, or an answer that cannot
            be cached): the followers then start over.
        error: The exception the leader's call raised, raised again by each follower.
    """

    __slots__ = ("error", "template", "traceback")

    def __init__(self) -> None:
        self.template: ModelResponse | EmbeddingResponse | None = None
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
    """A flight whose followers are tasks of the event loop ``loop``."""

    __slots__ = ("done", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.done = asyncio.Event()


class SyncFlight(Flight):
    """A flight whose followers are threads."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        super().__init__()
        self.done = threading.Event()
