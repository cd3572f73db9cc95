"""An asyncio event loop on a virtual clock, for timing tests that take no real time.

Whenever no callback is ready, the clock jumps straight to the next timer instead of
sleeping, so ``asyncio.sleep(30)`` returns at once with ``loop.time()`` 30 s later. Timers
fire exactly when due, so the tests see exact times. If nothing is scheduled at all (a task
waits for another thread), the loop blocks on real I/O as usual.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return super().select(None)
        self._loop.advance(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual and jumps to the next due timer."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(selector=_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self._now += max(0.0, seconds)


def run_virtual(main: Callable[[VirtualClockLoop], Awaitable[T]]) -> T:
    """Run ``main(loop)`` on a fresh virtual-clock loop, then cancel what is left and close it.

    Like ``asyncio.run``: tasks still pending at the end (litellm's logging worker, say) are
    cancelled and awaited before the loop closes.
    """
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
