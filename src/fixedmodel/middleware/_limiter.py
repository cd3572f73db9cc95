"""The rate limiter: admits requests within one :class:`RateLimit`, first come, first served.

A :class:`RateLimiter` asks its store (the window rule of
:mod:`fixedmodel.stores._limiter_store`) whether one more request fits, and waits in its
line (:mod:`fixedmodel.middleware._waiting`) when it does not. ``with_rate_limit``
(:mod:`fixedmodel.middleware.rate_limit`) admits each request of a model callable through
one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from fixedmodel._limits import RateLimit, check_seconds, is_int
from fixedmodel.middleware._waiting import Line, TaskWaiter, ThreadWaiter, Waiter
from fixedmodel.stores._limiter_store import Acquisition, LimiterStore
from fixedmodel.stores.limiter_memory import MemoryLimiterStore

__all__ = ["Permit", "RateLimiter"]


@dataclass(frozen=True)
class Permit:
    """One admission by a :class:`RateLimiter`; hand it back to ``settle`` after the call.

    Attributes:
        tokens: Tokens charged (the estimate).
        segment: Where the store recorded the charge.
        waited: Seconds spent waiting for the admission.
    """

    tokens: int
    segment: int
    waited: float


def _check_tokens(tokens: object) -> int:
    if not is_int(tokens):
        msg = f"tokens must be an int, got {type(tokens).__name__}"
        raise TypeError(msg)
    if tokens < 0:
        msg = f"tokens must be >= 0, got {tokens}"
        raise ValueError(msg)
    return tokens


def _limiter_parts(
    limit: object, store: object, key: object
) -> tuple[RateLimit, LimiterStore, str]:
    if not isinstance(limit, RateLimit):
        msg = f"RateLimiter() needs a RateLimit, got {type(limit).__name__}"
        raise TypeError(msg)
    if store is None:
        store = MemoryLimiterStore()
    elif not isinstance(store, LimiterStore):
        msg = (
            "store must implement LimiterStore (acquire/aacquire, adjust/aadjust, "
            f"pause/apause), got {type(store).__name__}"
        )
        raise TypeError(msg)
    if not isinstance(key, str) or not key:
        msg = f"key must be a non-empty str naming the quota, got {key!r}"
        raise TypeError(msg)
    return limit, store, key


class RateLimiter:
    """Admit calls within one :class:`RateLimit`, in arrival order; share it across callables.

    Args:
        limit: The budget.
        store: Where the window state lives; a private in-process store by default. A store
            shared by processes (Redis) enforces one quota across all of them.
        key: Name of the quota in the store; limiters with the same store and key share it.

    Raises:
        TypeError: ``limit`` is not a RateLimit, ``store`` is not a LimiterStore, or ``key``
            is not a non-empty str.
    """

    __slots__ = ("_direct", "_key", "_limit", "_line", "_store")

    def __init__(
        self, limit: RateLimit, *, store: LimiterStore | None = None, key: str = "default"
    ) -> None:
        self._limit, self._store, self._key = _limiter_parts(limit, store, key)
        self._line = Line()
        # A caller who finds the line empty may ask the store before joining it only when
        # the store answers in microseconds (in process). Over a network round trip a later
        # caller could overtake it, so with other stores everyone queues.
        self._direct = isinstance(self._store, MemoryLimiterStore)

    @property
    def limit(self) -> RateLimit:
        """The budget this limiter enforces."""
        return self._limit

    def __reduce__(self) -> tuple[Any, ...]:
        # A new waiting line in the other process, over the same (shared) store; the
        # in-process store refuses to be sent (its window would not be shared).
        return (_rebuild_limiter, (self._limit, self._store, self._key))

    @property
    def store(self) -> LimiterStore:
        """Where this limiter's window state lives."""
        return self._store

    @property
    def in_process(self) -> bool:
        """Whether the store answers without I/O (the in-process store)."""
        return self._direct

    def acquire(self, tokens: int = 0) -> Permit:
        """Wait, in this thread, until one request of ``tokens`` tokens fits, and charge it.

        Raises:
            ValueError: ``tokens`` is negative.
        """
        _check_tokens(tokens)
        started = time.monotonic()
        refused: Acquisition | None = None  # The store's last answer, not yet waited out.
        nudges = self._line.nudges
        if self._direct and self._line.is_empty():  # Nobody to let go first: try at once.
            refused = self._store.acquire(self._key, self._limit, tokens)
            if refused.granted:
                return Permit(tokens, refused.segment, time.monotonic() - started)
        waiter = ThreadWaiter()
        refused = self._join(waiter, nudges, refused)
        try:
            while True:
                if not self._line.is_first(waiter):
                    waiter.wait(None)
                    refused = None  # Out of date once others were served.
                    continue
                if refused is None:
                    waiter.clear()
                    decision = self._store.acquire(self._key, self._limit, tokens)
                    if decision.granted:
                        break
                    refused = decision
                waiter.wait(refused.retry_in)
                refused = None
        finally:
            self._line.leave(waiter)
        return Permit(tokens, decision.segment, time.monotonic() - started)

    async def aacquire(self, tokens: int = 0) -> Permit:
        """Wait, without blocking the event loop, until one request fits, and charge it.

        Cancelling the wait gives the caller's place in line to the next one.

        Raises:
            ValueError: ``tokens`` is negative.
        """
        _check_tokens(tokens)
        clock = asyncio.get_running_loop().time  # The waits are timed by the loop's clock.
        started = clock()
        refused: Acquisition | None = None  # The store's last answer, not yet waited out.
        nudges = self._line.nudges
        if self._direct and self._line.is_empty():  # Nobody to let go first: try at once.
            refused = await self._store.aacquire(self._key, self._limit, tokens)
            if refused.granted:
                return Permit(tokens, refused.segment, clock() - started)
        waiter = TaskWaiter()
        refused = self._join(waiter, nudges, refused)
        try:
            while True:
                if not self._line.is_first(waiter):
                    await waiter.wait(None)
                    refused = None  # Out of date once others were served.
                    continue
                if refused is None:
                    waiter.clear()
                    decision = await self._store.aacquire(self._key, self._limit, tokens)
                    if decision.granted:
                        break
                    refused = decision
                await waiter.wait(refused.retry_in)
                refused = None
        finally:
            self._line.leave(waiter)
        return Permit(tokens, decision.segment, clock() - started)

    def _join(self, waiter: Waiter, nudges: int, refused: Acquisition | None) -> Acquisition | None:
        """Put ``waiter`` in line; the store's refusal stands unless capacity came back since
        ``nudges`` was read (before this caller was in line)."""
        self._line.join(waiter)
        return refused if self._line.nudges == nudges else None

    def settle(self, permit: Permit, used_tokens: int) -> None:
        """Correct the charge of ``permit`` to the tokens the call really used."""
        change = self._correction(permit, used_tokens)
        if change:
            self._store.adjust(self._key, self._limit, permit.segment, change)
            if change < 0:
                self._line.nudge()

    async def asettle(self, permit: Permit, used_tokens: int) -> None:
        """Async :meth:`settle`."""
        change = self._correction(permit, used_tokens)
        if change:
            await self._store.aadjust(self._key, self._limit, permit.segment, change)
            if change < 0:
                self._line.nudge()

    def _correction(self, permit: Permit, used_tokens: int) -> int:
        _check_tokens(used_tokens)
        return 0 if self._limit.tokens is None else used_tokens - permit.tokens

    def pause(self, seconds: float) -> None:
        """Admit nobody through this limiter's quota for the next ``seconds``."""
        self._store.pause(self._key, check_seconds("seconds", seconds, zero=True))

    async def apause(self, seconds: float) -> None:
        """Async :meth:`pause`."""
        await self._store.apause(self._key, check_seconds("seconds", seconds, zero=True))

    def __repr__(self) -> str:
        return f"RateLimiter({self._limit!r}, store={self._store!r}, key={self._key!r})"


def _rebuild_limiter(limit: RateLimit, store: LimiterStore, key: str) -> RateLimiter:
    """Unpickle a limiter: the same limit, store and key."""
    return RateLimiter(limit, store=store, key=key)
