"""The interface of budget stores, and the rule every store applies.

A budget store keeps what one or more :class:`~fixedmodel.routing.budget.Budget` objects
have committed: cost (in nano-USD, integers so that sums are exact), tokens and requests,
per period window. ``reserve`` adds a call's worst case if the result stays within every
cap, atomically, and holds it under the reservation's id; ``settle`` later replaces what that
id holds by the call's real cost (zero: a refund). Nothing in a store ever waits.

Exactly once. The caller picks each reservation's id before asking (a fresh one per attempt),
so that it can settle an id whose reserve may or may not have been applied (a reply that
timed out, a caller cancelled while waiting): a settlement of an id the store does not hold
is remembered, and a reserve of that id arriving later charges nothing. Settling an id twice
changes nothing the second time.

Held and spent. A window's totals include what calls in flight hold (their worst case);
``Committed.held_cost``/``held_tokens`` say how much of it, so a caller can tell a cap taken
by calls in flight (which their settlements will free) from one taken by spending.

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
        cost: Nano-USD, settled and held.
        tokens: Tokens, settled and held.
        requests: Requests.
        resets_in: Seconds until the window ends, or ``None`` without a period.
        held_cost: The part of ``cost`` held by reservations not settled yet (nano-USD).
        held_tokens: The part of ``tokens`` held by reservations not settled yet.
    """

    cost: int
    tokens: int
    requests: int
    resets_in: float | None
    held_cost: int = 0
    held_tokens: int = 0


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

    def reserve(
        self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int
    ) -> Reservation:
        """Hold one request of ``cost`` nano-USD and ``tokens`` tokens under
        ``reservation_id``, if every cap allows and the id was not settled already.

        Whatever stops it (an error, a timeout, a cancellation) leaves the id settled to
        nothing, now or as soon as the store can.
        """
        ...

    async def areserve(
        self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int
    ) -> Reservation:
        """Async :meth:`reserve`."""
        ...

    def settle(self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int) -> None:
        """Replace what ``reservation_id`` holds by ``cost`` and ``tokens`` (0, 0: refund).

        Once per id: later settlements of the id change nothing, and a settlement of an id
        not held (yet) makes its reserve, if it ever arrives, charge nothing. Never raises
        for an unreachable store: the settlement is retried.
        """
        ...

    async def asettle(
        self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int
    ) -> None:
        """Async :meth:`settle`."""
        ...

    def committed(self, key: str, caps: Caps) -> Committed:
        """The totals of the current window."""
        ...

    async def acommitted(self, key: str, caps: Caps) -> Committed:
        """Async :meth:`committed`."""
        ...
