"""Admissions of a rate limiter, recorded at its store, and the figures the limiter bars read.

A :class:`RecordingStore` stands between a :class:`fixedmodel.RateLimiter` and its real store
and notes, for every request the store admits, the monotonic time just before it was asked
and just after it answered: the store's decision lies between the two. For the in-process
store the two are microseconds apart; for Redis they bracket the round trip (the server
decides by its own clock, which the client cannot read). Every process of a host shares the
monotonic clock, so admissions recorded by several worker processes can be merged.

From the admissions:

- :func:`most_in_a_window`: the most admissions any window ``(u, u + period]`` holds, as a
  pair: the count that is certain whatever the decision times within their brackets, and
  the count that is possible for some of them.
- :func:`steady_rate`: admissions per second in steady state, over whole refill cycles.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fixedmodel import LimiterStore
from fixedmodel.stores import Acquisition

if TYPE_CHECKING:
    from fixedmodel import RateLimit


@dataclass(frozen=True)
class Admission:
    """When one request was admitted, by the monotonic clock.

    Attributes:
        asked: Just before the store was asked.
        answered: Just after the store answered; the decision lies in ``[asked, answered]``.
    """

    asked: float
    answered: float


class RecordingStore:
    """A ``LimiterStore`` that hands every call to another store and records the admissions."""

    def __init__(self, inner: LimiterStore) -> None:
        self.inner = inner
        self.admissions: list[Admission] = []

    def acquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        """Ask the inner store; record the admission (if granted)."""
        asked = time.monotonic()
        decision = self.inner.acquire(key, limit, tokens)
        if decision.granted:
            self.admissions.append(Admission(asked, time.monotonic()))
        return decision

    async def aacquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        """Async :meth:`acquire`."""
        asked = time.monotonic()
        decision = await self.inner.aacquire(key, limit, tokens)
        if decision.granted:
            self.admissions.append(Admission(asked, time.monotonic()))
        return decision

    def adjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        """Pass the correction on."""
        self.inner.adjust(key, limit, segment, tokens)

    async def aadjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        """Pass the correction on."""
        await self.inner.aadjust(key, limit, segment, tokens)

    def pause(self, key: str, seconds: float) -> None:
        """Pass the pause on."""
        self.inner.pause(key, seconds)

    async def apause(self, key: str, seconds: float) -> None:
        """Pass the pause on."""
        await self.inner.apause(key, seconds)

    def __repr__(self) -> str:
        return f"RecordingStore({self.inner!r})"


@dataclass(frozen=True)
class WindowCount:
    """The most admissions in any window of one period.

    Attributes:
        certain: Held by some window whatever the decision times within their brackets.
        possible: Held by some window for some decision times within their brackets.
    """

    certain: int
    possible: int


def most_in_a_window(admissions: Sequence[Admission], period: float) -> WindowCount:
    """The most admissions any window ``(u, u + period]`` holds (see :class:`WindowCount`).

    Certain: the admissions whose whole bracket lies in the window; the best ``u`` is just
    below some ``asked``. Possible: those whose bracket meets the window; the best ``u`` is
    just below some ``answered``. With exact times both are the same count.
    """
    by_asked = sorted(admissions, key=lambda a: a.asked)
    asked = [a.asked for a in by_asked]
    certain = 0
    for first, start in enumerate(asked):
        end = bisect.bisect_left(asked, start + period, lo=first)
        inside = sum(1 for a in by_asked[first:end] if a.answered < start + period)
        certain = max(certain, inside)
    by_answered = sorted(admissions, key=lambda a: a.answered)
    widest = max((a.answered - a.asked for a in admissions), default=0.0)
    answered = [a.answered for a in by_answered]
    possible = 0
    for first, start in enumerate(answered):
        end = bisect.bisect_left(answered, start + period + widest, lo=first)
        meeting = sum(1 for a in by_answered[first:end] if a.asked < start + period)
        possible = max(possible, meeting)
    return WindowCount(certain, possible)


@dataclass(frozen=True)
class Rate:
    """Admissions per second over a measured stretch.

    Attributes:
        admitted: Admissions counted.
        seconds: Length of the stretch.
    """

    admitted: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Admissions per second."""
        return self.admitted / self.seconds


def steady_rate(times: Sequence[float], *, after: float, span: float) -> Rate | None:
    """Admissions per second from the first admission at or after ``after`` to the first at
    or after that one plus ``span``, that one excluded; ``None`` if the run ended too early.

    A saturated limiter admits in bursts, each time the oldest admissions leave the window:
    measured from the start of one burst to the start of another, the stretch holds whole
    refill cycles only, so the figure is not biased by where the run happens to stop. With
    ``span`` a whole number of periods, the stretch ends at the burst that refills the first
    one's capacity that many times over.
    """
    ordered = sorted(times)
    first = bisect.bisect_left(ordered, after)
    if first == len(ordered):
        return None
    last = bisect.bisect_left(ordered, ordered[first] + span, lo=first)
    if last == len(ordered):
        return None
    return Rate(last - first, ordered[last] - ordered[first])


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank); raises on no values."""
    if not values:
        raise ValueError("percentile() needs at least one value")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
