"""The line of callers waiting for a rate limiter: first come, first served, no polling.

Waiters come from threads (they sleep on a ``threading.Event``) and from any number of event
loops (they await a future of their own loop). Only the first in line works: it asks the
store and, when refused, sleeps until the time the store named, or until it is nudged
because capacity came back early. Everyone else sleeps until the waiter before them leaves
the line, served or cancelled. A wake-up from another thread reaches an event loop through
``call_soon_threadsafe``.

Joining and leaving cost O(1): a waiter that leaves from the middle of the line is only
marked, and dropped when it reaches the front.

After ``os.fork()`` the child has only the thread that forked: the waiters of the parent's
other threads would stay at the front of a copied line for ever, and a lock one of them held
would never be released. So in the child every line gets a new lock and an empty queue (a new
*generation*). A task of the forking thread's event loop that was waiting is woken and joins
the new line at its next look; nothing else of the parent's waits.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import TypeAlias

from fixedmodel.stores._cache_store import after_fork_in_child

__all__ = ["Line", "TaskWaiter", "ThreadWaiter"]


class ThreadWaiter:
    """A caller waiting in a thread."""

    __slots__ = ("_event", "active", "generation")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.active = True
        self.generation = 0

    def notify(self) -> bool:
        """Wake the waiter (from any thread); always succeeds."""
        self._event.set()
        return True

    def clear(self) -> None:
        """Forget earlier wake-ups, before asking the store again."""
        self._event.clear()

    def wait(self, timeout: float | None) -> None:
        """Sleep until notified, or for at most ``timeout`` seconds."""
        self._event.wait(timeout)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class TaskWaiter:
    """A caller waiting in a task of the running event loop."""

    __slots__ = ("_future", "_loop", "active", "generation")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[None] = self._loop.create_future()
        self.active = True
        self.generation = 0

    def notify(self) -> bool:
        """Wake the waiter (from any thread); ``False`` if its event loop is closed."""
        if _running_loop() is self._loop:
            self._wake()
            return True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:
            return False
        return True

    def _wake(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    def clear(self) -> None:
        """Forget earlier wake-ups, before asking the store again."""
        if self._future.done():
            self._future = self._loop.create_future()

    async def wait(self, timeout: float | None) -> None:
        """Sleep until notified, or for at most ``timeout`` seconds: one timer, no polling."""
        timer = None if timeout is None else self._loop.call_later(timeout, self._wake)
        try:
            await self._future
        finally:
            if timer is not None:
                timer.cancel()


Waiter: TypeAlias = ThreadWaiter | TaskWaiter


class Line:
    """The waiters of one limiter, in arrival order; safe from any thread."""

    __slots__ = ("__weakref__", "_generation", "_lock", "_waiters", "nudges")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: deque[Waiter] = deque()
        self._generation = 0  # Counts the forks this line was copied through.
        # Counts nudges, so that a caller refused before joining can tell that capacity came
        # back in between (a nudge then found nobody to wake).
        self.nudges = 0
        after_fork_in_child(self)

    def join(self, waiter: Waiter) -> None:
        """Put ``waiter`` at the end of the line."""
        with self._lock:
            waiter.generation = self._generation
            self._waiters.append(waiter)

    def is_empty(self) -> bool:
        """Tell whether nobody waits (a hint: the line can change right after)."""
        return not self._waiters

    def is_first(self, waiter: Waiter) -> bool:
        """Tell whether it is ``waiter``'s turn to ask the store."""
        with self._lock:
            if waiter.generation != self._generation:  # Joined in the parent of a fork.
                waiter.generation = self._generation
                self._waiters.append(waiter)
            return bool(self._waiters) and self._waiters[0] is waiter

    def leave(self, waiter: Waiter) -> None:
        """Take ``waiter`` out of the line (served, failed or cancelled); wake the next."""
        with self._lock:
            waiter.active = False
            if waiter.generation != self._generation:
                return  # Not in this line: it was joined in the parent of a fork.
            if self._waiters and self._waiters[0] is waiter:
                self._waiters.popleft()
                self._wake_first()

    def nudge(self) -> None:
        """Wake the first waiter: capacity came back before the time it sleeps until."""
        with self._lock:
            self.nudges += 1
            if self._waiters:
                self._wake_first()

    def _wake_first(self) -> None:
        waiters = self._waiters
        while waiters and not (waiters[0].active and waiters[0].notify()):
            waiters.popleft().active = False

    def _after_fork(self) -> None:
        """Start a new generation in a forked child (see the module docstring)."""
        copied = self._waiters
        self._lock = threading.Lock()
        self._waiters = deque()
        self._generation += 1
        for waiter in copied:
            # Only the forking thread lives on; a task of its event loop may be waiting.
            if isinstance(waiter, TaskWaiter) and waiter.active:
                waiter.notify()
