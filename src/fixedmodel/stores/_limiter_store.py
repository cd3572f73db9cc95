"""The interface of rate limiter stores, and the window rule every store applies.

A store keeps the shared state of one or more limiters (what was admitted recently, and any
pause) and decides, atomically and in O(1), whether one more request fits. It never waits:
when a request does not fit it says how long until it could, and the limiter
(:class:`fixedmodel.middleware.rate_limit.RateLimiter`) does the waiting, in order.

The window rule (segmented sliding window)
------------------------------------------
Let ``P`` be the period and ``g = P / SEGMENTS_PER_PERIOD``. Admissions are grouped into
*segments*. A segment opens at the time of an admission that finds no open segment and takes
every admission in ``[start, start + g)``; it counts against the budget until
``start + g + P`` and is then dropped. Per key a store keeps the live segments (at most
``SEGMENTS_PER_PERIOD + 2``: starts are at least ``g`` apart and live ones are younger than
``g + P``), each with its request and token totals, plus the running sums ``R`` and ``T``
over them, and the time until which the key is paused. ``acquire(cost)`` at time ``now``:

1. drops the segments with ``start + g + P <= now`` (subtracting them from ``R`` and ``T``);
2. refuses while ``now < paused_until``, with ``retry_in = paused_until - now``;
3. admits when ``R + 1 <= requests`` (if a request budget is set) and ``T + cost <= tokens``
   (if a token budget is set), or, for a single request larger than the whole token budget,
   when ``T == 0``; it adds the request to the open segment (opening one if needed) and
   returns that segment's id;
4. otherwise refuses with ``retry_in`` = the time until enough of the oldest segments have
   expired for the request to fit (a scan of at most ``SEGMENTS_PER_PERIOD + 2`` entries).

Why no window of length ``P`` ever holds more than the budget. Take any window
``(u, u + P]`` and the last admission in it, at time ``t``. Every earlier admission ``x`` in
the window joined a segment ``S`` with ``start_S <= x < start_S + g``. As ``x > u >= t - P``,
``S`` expires at ``start_S + g + P > x + P > t``: it was live when ``t`` was admitted, and its
totals included ``x``. So the check at ``t`` counted every admission of the window, and it
passed only if their sum, ``t`` included, was within the budget. (A request larger than the
token budget passes only when ``T == 0``, and while it is live ``T`` exceeds the budget, so
it is alone in every window that holds it.) Tokens are counted as charged: the estimate at
admission, corrected by :meth:`LimiterStore.adjust` once the real usage is known.

Why throughput stays near the limit. A unit admitted at ``x`` is released at
``start_S + g + P <= x + g + P``, so a saturated limiter admits at least a full budget every
``P + g``: ``SEGMENTS_PER_PERIOD / (SEGMENTS_PER_PERIOD + 1)`` of the limit (98 %). Every
operation touches a bounded number of segments, whatever the token counts or the number of
callers, so a Redis store can run it as one Lua script over one hash, with the server's
``TIME`` as the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from fixedmodel._limits import RateLimit

__all__ = ["SEGMENTS_PER_PERIOD", "Acquisition", "LimiterStore"]

SEGMENTS_PER_PERIOD = 50
"""Segments per period: the resolution of the window (throughput is 50/51 of the limit)."""


@dataclass(frozen=True)
class Acquisition:
    """What a store decided about one request.

    Attributes:
        granted: The request was admitted and charged.
        segment: Id of the segment charged, for :meth:`LimiterStore.adjust` (when granted).
        retry_in: Seconds until the request could fit, by the store's clock (when refused).
    """

    granted: bool
    segment: int = -1
    retry_in: float = 0.0

    @classmethod
    def admit(cls, segment: int) -> Acquisition:
        """Build the decision that admits a request into ``segment``."""
        return cls(granted=True, segment=segment)

    @classmethod
    def refuse(cls, retry_in: float) -> Acquisition:
        """Build the decision that refuses a request for ``retry_in`` seconds."""
        return cls(granted=False, retry_in=retry_in)


@runtime_checkable
class LimiterStore(Protocol):
    """Shared state of rate limiters, keyed by quota name; see the module for the rule.

    Every method is atomic per key and costs O(1) in the token counts and in the number of
    callers. Times are the store's own (a Redis store uses the server's ``TIME``); only
    durations cross the interface. The async methods do the same as the sync ones; an
    implementation without I/O may simply call them. An async call cancelled while waiting
    for a remote store may or may not have taken effect; the limiter does not retry it.
    """

    def acquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        """Admit one request of ``tokens`` tokens under ``limit`` now, or say when to retry."""
        ...

    async def aacquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        """Async :meth:`acquire`."""
        ...

    def adjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        """Add ``tokens`` (negative: refund) to a segment, if it is still live.

        A refund never takes a segment below zero tokens.
        """
        ...

    async def aadjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        """Async :meth:`adjust`."""
        ...

    def pause(self, key: str, seconds: float) -> None:
        """Refuse every request for ``key`` during the next ``seconds`` (never shortens)."""
        ...

    async def apause(self, key: str, seconds: float) -> None:
        """Async :meth:`pause`."""
        ...
