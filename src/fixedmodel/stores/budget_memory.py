"""The in-process budget store: the rule of ``_budget_store`` over a dict.

Shared by the threads and event loops of one process; for a budget shared by several
processes or hosts use :class:`~fixedmodel.stores.redis_budget.RedisBudgetStore`.

Clock steps: with a period, windows follow the wall clock corrected the way
:class:`~fixedmodel.stores.redis_budget.RedisBudgetStore` corrects the server's: a step back
carries on from the last time the store saw (a window never goes back, which would reset the
budget, and then reset it again when the clock caught up), and a step forward of the default
clock is measured against a clock of elapsed time that goes on during a system suspend
(``_elapsed``: ``CLOCK_BOOTTIME`` on Linux), so it does not end a window early, and after a
suspend the windows catch up with the wall clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from fixedmodel._pickling import refuse_pickling
from fixedmodel.stores import _elapsed
from fixedmodel.stores._budget_store import Caps, Committed, Reservation

__all__ = ["MemoryBudgetStore"]


_REMEMBERED = 4096  # Ids settled before their reserve, remembered so that it charges nothing.
_TOLERANCE = 1.0  # Seconds the wall clock may run ahead of the elapsed time between reads.


@dataclass
class _Window:
    index: int = 0
    cost: int = 0
    tokens: int = 0
    requests: int = 0
    held: dict[str, tuple[int, int]] = field(default_factory=dict[str, tuple[int, int]])
    held_cost: int = 0
    held_tokens: int = 0

    def committed(self, resets_in: float | None) -> Committed:
        return Committed(
            self.cost, self.tokens, self.requests, resets_in, self.held_cost, self.held_tokens
        )


def _fits(caps: Caps, window: _Window, cost: int, tokens: int) -> bool:
    return (
        (caps.cost is None or window.cost + cost <= caps.cost)
        and (caps.tokens is None or window.tokens + tokens <= caps.tokens)
        and (caps.requests is None or window.requests + 1 <= caps.requests)
    )


class MemoryBudgetStore:
    """Budget state in this process; conforms to ``BudgetStore``.

    Args:
        clock: Wall clock in seconds (windows are aligned to it); tests pass their own. A
            step back is never followed; a step forward of the default clock is measured
            against the elapsed time, a system suspend included (a clock you pass is
            followed forward as it goes).
    """

    def __reduce__(self) -> NoReturn:
        refuse_pickling(
            "A Budget on the in-process store (MemoryBudgetStore)",
            "Budget(..., store=RedisBudgetStore(url))",
        )

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # The clock of elapsed time a forward step is measured against (None: follow
        # ``clock``). Not time.monotonic(): it stops during a suspend (see _elapsed).
        ticks = _elapsed.elapsed if clock is time.time else None
        self._monotonic: Callable[[], float] | None = ticks
        self._offset = 0.0  # Added to ``clock``: the steps corrected so far.
        self._last: tuple[float, float] | None = None  # (corrected time, monotonic) last seen.
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._over: OrderedDict[str, None] = OrderedDict()

    def _now(self) -> float:
        """The wall clock, corrected for steps (see the module docstring); lock held."""
        now = self._clock() + self._offset
        ticks = self._monotonic() if self._monotonic is not None else 0.0
        if self._last is not None:
            last, last_ticks = self._last
            if now < last:  # Stepped back: carry on from the last time seen.
                self._offset += last - now
                now = last
            elif self._monotonic is not None:
                ceiling = last + max(ticks - last_ticks, 0.0) + _TOLERANCE
                if now > ceiling:  # Stepped forward: no further than the monotonic clock.
                    self._offset -= now - ceiling
                    now = ceiling
        self._last = (now, ticks)
        return now

    def _current(self, key: str, caps: Caps) -> tuple[_Window, float | None]:
        """The current window of ``key`` (a new one when the period rolled over); lock held."""
        index, resets_in = 0, None
        if caps.period is not None:
            now = self._now()
            index = math.floor(now / caps.period)
            resets_in = (index + 1) * caps.period - now
        window = self._windows.get(key)
        if window is None or window.index != index:
            window = self._windows[key] = _Window(index)
        return window, resets_in

    def reserve(
        self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int
    ) -> Reservation:
        """Hold one request of ``cost`` nano-USD and ``tokens`` tokens under
        ``reservation_id``, if every cap allows and the id was not settled already."""
        with self._lock:
            window, resets_in = self._current(key, caps)
            granted = (
                reservation_id not in self._over
                and reservation_id not in window.held
                and _fits(caps, window, cost, tokens)
            )
            if granted:
                window.cost += cost
                window.tokens += tokens
                window.requests += 1
                window.held[reservation_id] = (cost, tokens)
                window.held_cost += cost
                window.held_tokens += tokens
            return Reservation(granted, window.index, window.committed(resets_in))

    async def areserve(
        self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int
    ) -> Reservation:
        """Async :meth:`reserve` (no I/O: it does not yield to the event loop)."""
        return self.reserve(key, caps, reservation_id, cost, tokens)

    def settle(self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int) -> None:
        """Replace what ``reservation_id`` holds by ``cost`` and ``tokens`` (0, 0: refund).

        Once per id; an id held in a window that has ended is dropped with its window.
        """
        with self._lock:
            current = self._windows.get(key)
            held = None if current is None else current.held.pop(reservation_id, None)
            if current is None or held is None:
                self._over[reservation_id] = None
                if len(self._over) > _REMEMBERED:
                    self._over.popitem(last=False)
                return
            held_cost, held_tokens = held
            current.held_cost -= held_cost
            current.held_tokens -= held_tokens
            current.cost = max(current.cost - held_cost + cost, 0)
            current.tokens = max(current.tokens - held_tokens + tokens, 0)

    async def asettle(
        self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int
    ) -> None:
        """Async :meth:`settle`."""
        self.settle(key, caps, reservation_id, cost, tokens)

    def committed(self, key: str, caps: Caps) -> Committed:
        """The totals of the current window."""
        with self._lock:
            window, resets_in = self._current(key, caps)
            return window.committed(resets_in)

    async def acommitted(self, key: str, caps: Caps) -> Committed:
        """Async :meth:`committed`."""
        return self.committed(key, caps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
