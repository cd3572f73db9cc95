"""The in-process budget store: the rule of ``_budget_store`` over a dict.

Shared by the threads and event loops of one process; for a budget shared by several
processes or hosts use :class:`~fixedmodel.stores.redis_budget.RedisBudgetStore`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from fixedmodel._pickling import refuse_pickling
from fixedmodel.stores._budget_store import Caps, Committed, Reservation

__all__ = ["MemoryBudgetStore"]


@dataclass
class _Window:
    index: int = 0
    cost: int = 0
    tokens: int = 0
    requests: int = 0


def _fits(caps: Caps, window: _Window, cost: int, tokens: int) -> bool:
    return (
        (caps.cost is None or window.cost + cost <= caps.cost)
        and (caps.tokens is None or window.tokens + tokens <= caps.tokens)
        and (caps.requests is None or window.requests + 1 <= caps.requests)
    )


class MemoryBudgetStore:
    """Budget state in this process; conforms to ``BudgetStore``.

    Args:
        clock: Wall clock in seconds (windows are aligned to it); tests pass their own.
    """

    def __reduce__(self) -> NoReturn:
        refuse_pickling(
            "A Budget on the in-process store (MemoryBudgetStore)",
            "Budget(..., store=RedisBudgetStore(url))",
        )

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def _current(self, key: str, caps: Caps) -> tuple[_Window, float | None]:
        """The current window of ``key`` (a new one when the period rolled over); lock held."""
        index, resets_in = 0, None
        if caps.period is not None:
            now = self._clock()
            index = math.floor(now / caps.period)
            resets_in = (index + 1) * caps.period - now
        window = self._windows.get(key)
        if window is None or window.index != index:
            window = self._windows[key] = _Window(index)
        return window, resets_in

    def reserve(self, key: str, caps: Caps, cost: int, tokens: int) -> Reservation:
        """Add one request of ``cost`` nano-USD and ``tokens`` tokens, if every cap allows."""
        with self._lock:
            window, resets_in = self._current(key, caps)
            granted = _fits(caps, window, cost, tokens)
            if granted:
                window.cost += cost
                window.tokens += tokens
                window.requests += 1
            committed = Committed(window.cost, window.tokens, window.requests, resets_in)
            return Reservation(granted, window.index, committed)

    async def areserve(self, key: str, caps: Caps, cost: int, tokens: int) -> Reservation:
        """Async :meth:`reserve` (no I/O: it does not yield to the event loop)."""
        return self.reserve(key, caps, cost, tokens)

    def settle(self, key: str, caps: Caps, window: int, cost: int, tokens: int) -> None:
        """Add ``cost`` and ``tokens`` (negative: refund) to ``window``, never below zero."""
        with self._lock:
            current = self._windows.get(key)
            if current is None or current.index != window:
                return
            current.cost = max(current.cost + cost, 0)
            current.tokens = max(current.tokens + tokens, 0)

    async def asettle(self, key: str, caps: Caps, window: int, cost: int, tokens: int) -> None:
        """Async :meth:`settle`."""
        self.settle(key, caps, window, cost, tokens)

    def committed(self, key: str, caps: Caps) -> Committed:
        """The totals of the current window."""
        with self._lock:
            window, resets_in = self._current(key, caps)
            return Committed(window.cost, window.tokens, window.requests, resets_in)

    async def acommitted(self, key: str, caps: Caps) -> Committed:
        """Async :meth:`committed`."""
        return self.committed(key, caps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
