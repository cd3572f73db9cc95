"""The interface of budget stores, and the rule every store applies.

A budget store keeps what one or more :class:`~fixedmodel.routing.budget.Budget` objects
have committed: cost (in nano-USD, integers so that sums are exact), tokens and requests,
per period window. ``reserve`` adds a call's worst case if the result stays within every
cap, atomically; ``settle`` later corrects it to the real usage. Nothing ever waits.

Windows: without a period, one window for ever (``0``); with a period of ``P`` seconds,
window ``floor(now / P)`` of the store's wall clock (a Redis store uses the server's
``TIME``), so a daily budget resets at 00:00 UTC. A settlement for a window that has ended
is dropped: that money was spent in a window that is over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["BudgetStore", "Caps", "Committed", "Reservation"]

NANOS_PER_USD = 1_000_000_000
"""Cost unit of the stores: one nano-USD."""


@dataclass(frozen=True)
class Caps:
    """The limits a store enforces, in store units (``None``: no cap).

    Attributes:
        cost: Nano-USD per window.
        tokens: Tokens per window.
        requests: Requests per window.
        period: Window length in seconds, or ``None`` for one window for ever.
    """

    cost: int | None
    tokens: int | None
    requests: int | None
    period: float | None


@dataclass(frozen=True)
class Committed:
    """What a window holds: spent plus still reserved.

    Attributes:
        cost: Nano-USD.
        tokens: Tokens.
        requests: Requests.
        resets_in: Seconds until the window ends, or ``None`` without a period.
    """

    cost: int
    tokens: int
    requests: int
    resets_in: float | None


@dataclass(frozen=True)
class Reservation:
    """What a store decided about one call's worst case.

    Attributes:
        granted: The worst case was added to the window.
        window: The window charged, for :meth:`BudgetStore.settle`.
        committed: The window's totals after the reservation (or at the refusal).
    """

    granted: bool
    window: int
    committed: Committed


@runtime_checkable
class BudgetStore(Protocol):
    """Committed spending of budgets, keyed by budget name; see the module for the rule."""

    def reserve(self, key: str, caps: Caps, cost: int, tokens: int) -> Reservation:
        """Add one request of ``cost`` nano-USD and ``tokens`` tokens, if every cap allows."""
        ...

    async def areserve(self, key: str, caps: Caps, cost: int, tokens: int) -> Reservation:
        """Async :meth:`reserve`."""
        ...

    def settle(self, key: str, caps: Caps, window: int, cost: int, tokens: int) -> None:
        """Add ``cost`` and ``tokens`` (negative: refund) to ``window``, never below zero."""
        ...

    async def asettle(self, key: str, caps: Caps, window: int, cost: int, tokens: int) -> None:
        """Async :meth:`settle`."""
        ...

    def committed(self, key: str, caps: Caps) -> Committed:
        """The totals of the current window."""
        ...

    async def acommitted(self, key: str, caps: Caps) -> Committed:
        """Async :meth:`committed`."""
        ...
