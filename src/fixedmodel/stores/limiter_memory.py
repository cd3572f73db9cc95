"""The in-process rate limiter store: the window rule of ``_limiter_store`` over a deque.

Shared by the threads and event loops of one process; for a quota shared by several
processes or hosts use a Redis store. A child made by ``os.fork()`` keeps a copy of the
parent's window (what the parent admitted still counts in the child) under a new lock: a lock
some other thread of the parent held at the fork would never be released in the child.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from fixedmodel._pickling import refuse_pickling
from fixedmodel.stores._cache_store import after_fork_in_child
from fixedmodel.stores._limiter_store import SEGMENTS_PER_PERIOD, Acquisition

if TYPE_CHECKING:
    from fixedmodel._limits import RateLimit

__all__ = ["MemoryLimiterStore"]


@dataclass
class _Segment:
    id: int
    start: float
    requests: int = 0
    tokens: int = 0
    admission: Acquisition = field(init=False)  # The same decision for every admission here.

    def __post_init__(self) -> None:
        self.admission = Acquisition.admit(self.id)


@dataclass
class _Window:
    segments: deque[_Segment] = field(default_factory=lambda: deque[_Segment]())
    requests: int = 0
    tokens: int = 0
    paused_until: float = float("-inf")
    next_id: int = 0

    def expire(self, now: float, lifetime: float) -> None:
        segments = self.segments
        while segments and segments[0].start + lifetime <= now:
            gone = segments.popleft()
            self.requests -= gone.requests
            self.tokens -= gone.tokens

    def live(self, segment: int) -> _Segment | None:
        # Ids are consecutive from the oldest live segment: the lookup is an index.
        if not self.segments:
            return None
        index = segment - self.segments[0].id
        return self.segments[index] if 0 <= index < len(self.segments) else None


def _fits(limit: RateLimit, requests: int, tokens: int, cost: int) -> bool:
    if limit.requests is not None and requests + 1 > limit.requests:
        return False
    if limit.tokens is None:
        return True
    # A request larger than the whole budget goes alone, once the window holds no tokens.
    return tokens + cost <= limit.tokens or (cost > limit.tokens and tokens == 0)


class MemoryLimiterStore:
    """Rate limiter state in this process; conforms to ``LimiterStore``.

    Args:
        clock: Monotonic clock in seconds; tests pass a controllable one.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        after_fork_in_child(self)

    def __reduce__(self) -> NoReturn:
        refuse_pickling(
            "A rate limiter on the in-process store (MemoryLimiterStore)",
            "RateLimiter(limit, store=RedisLimiterStore(url))",
        )

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        """Admit one request of ``tokens`` tokens under ``limit`` now, or say when to retry."""
        segment_length = limit.period / SEGMENTS_PER_PERIOD
        lifetime = segment_length + limit.period
        with self._lock:
            now = self._clock()
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window()
            window.expire(now, lifetime)
            if now < window.paused_until:
                return Acquisition.refuse(window.paused_until - now)
            if not _fits(limit, window.requests, window.tokens, tokens):
                return Acquisition.refuse(self._time_to_fit(window, limit, tokens, now, lifetime))
            segments = window.segments
            if not segments or now >= segments[-1].start + segment_length:
                segments.append(_Segment(window.next_id, now))
                window.next_id += 1
            newest = segments[-1]
            newest.requests += 1
            newest.tokens += tokens
            window.requests += 1
            window.tokens += tokens
            return newest.admission

    @staticmethod
    def _time_to_fit(
        window: _Window, limit: RateLimit, tokens: int, now: float, lifetime: float
    ) -> float:
        requests, charged = window.requests, window.tokens
        for segment in window.segments:
            requests -= segment.requests
            charged -= segment.tokens
            if _fits(limit, requests, charged, tokens):
                return segment.start + lifetime - now
        # Unreachable: an empty window admits any request. Kept as a safe answer.
        return lifetime

    async def aacquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        """Async :meth:`acquire` (no I/O: it does not yield to the event loop)."""
        return self.acquire(key, limit, tokens)

    def adjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        """Add ``tokens`` (negative: refund) to a segment, if it is still live."""
        with self._lock:
            window = self._windows.get(key)
            live = window.live(segment) if window is not None else None
            if window is None or live is None:
                return
            change = max(tokens, -live.tokens)
            live.tokens += change
            window.tokens += change

    async def aadjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        """Async :meth:`adjust`."""
        self.adjust(key, limit, segment, tokens)

    def pause(self, key: str, seconds: float) -> None:
        """Refuse every request for ``key`` during the next ``seconds`` (never shortens)."""
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window()
            window.paused_until = max(window.paused_until, self._clock() + seconds)

    async def apause(self, key: str, seconds: float) -> None:
        """Async :meth:`pause`."""
        self.pause(key, seconds)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
