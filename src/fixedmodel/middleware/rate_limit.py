"""Rate limiting: requests and tokens per period, shared by every callable of one quota.

``with_rate_limit(chat, RateLimit(requests=500, tokens=200_000))`` admits each call through a
:class:`RateLimiter`. One limiter can serve several callables (sync and async, completion and
embedding) that draw on one provider quota.

How a call goes through:

1. Its tokens are estimated: ``litellm.token_counter`` over the messages (or the embedding
   input) plus ``n`` times the requested ``max_completion_tokens``/``max_tokens``, or
   :attr:`RateLimit.assumed_completion_tokens` when the call sets neither.
2. It waits its turn. Callers are served first come, first served, across threads and event
   loops. Only the first in line asks the store; when the store refuses it sleeps exactly
   until the time the store named (one timer, or ``Event.wait(timeout)`` in a thread) and
   asks again; the others sleep on a future or an Event until the one before them is served
   or gives up (cancelled waiters leave the line and give their place to the next).
3. After the call, the charge is corrected with the real ``usage`` (a refund wakes the line).
   A 429 with ``Retry-After`` pauses the whole limiter for that long, then is re-raised.

The window rule and the argument that no window of length ``period`` ever admits more than
the budget, while a saturated limiter still reaches 98 % of it, are in
:mod:`fixedmodel.stores._limiter_store`: a segmented sliding window, O(1) per admission.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard, overload

from fixedmodel._bind import BOUND_KINDS
from fixedmodel._protocols import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    ClosableAFixedModelCompletion,
    ClosableAFixedModelEmbedding,
    ClosableFixedModelCompletion,
    ClosableFixedModelEmbedding,
    FixedModelCompletion,
    FixedModelEmbedding,
)
from fixedmodel.middleware._call import (
    ModelCallable,
    Wrapper,
    check_callable,
    current_call,
    innermost,
    is_async_callable,
)
from fixedmodel.middleware._errors import is_rate_limit, retry_after
from fixedmodel.middleware._tokens import estimate_tokens, used_tokens, warm_tokenizer
from fixedmodel.middleware._waiting import Line, TaskWaiter, ThreadWaiter
from fixedmodel.stores._limiter_store import Acquisition, LimiterStore
from fixedmodel.stores.limiter_memory import MemoryLimiterStore

__all__ = ["Permit", "RateLimit", "RateLimiter", "with_rate_limit"]

# A provider's Retry-After pauses every caller of the limiter, so a runaway value is capped at
# the longer of this and one period; the retry layer decides whether to wait longer.
_MAX_PAUSE = 60.0


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_count(name: str, value: object, *, minimum: int, optional: bool) -> None:
    if value is None and optional:
        return
    if not _is_int(value):
        kind = "an int or None" if optional else "an int"
        msg = f"RateLimit.{name} must be {kind}, got {type(value).__name__}"
        raise TypeError(msg)
    if value < minimum:
        unset = f" (or None for no {name} budget)" if optional else ""
        msg = f"RateLimit.{name} must be >= {minimum}{unset}, got {value}"
        raise ValueError(msg)


def _check_seconds(name: str, value: object, *, zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{name} must be a number of seconds, got {type(value).__name__}"
        raise TypeError(msg)
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
        msg = f"{name} must be a finite number of seconds {'>=' if zero else '>'} 0, got {value}"
        raise ValueError(msg)
    return float(value)


@dataclass(frozen=True)
class RateLimit:
    """A budget of requests and/or tokens per period.

    Attributes:
        requests: Requests allowed in any window of ``period`` seconds; ``None`` for no limit.
        tokens: Tokens (prompt and completion) allowed in any window of ``period`` seconds;
            ``None`` for no limit.
        period: Length of the window in seconds.
        assumed_completion_tokens: Completion tokens charged up front for a call that sets
            neither ``max_completion_tokens`` nor ``max_tokens``; corrected after the call.

    Raises:
        ValueError: Neither budget is set, or a value is out of range.
        TypeError: A value has the wrong type.
    """

    requests: int | None = None
    tokens: int | None = None
    period: float = 60.0
    assumed_completion_tokens: int = 1024

    def __post_init__(self) -> None:
        _check_count("requests", self.requests, minimum=1, optional=True)
        _check_count("tokens", self.tokens, minimum=1, optional=True)
        if self.requests is None and self.tokens is None:
            msg = "RateLimit needs requests=, tokens= or both, e.g. RateLimit(requests=500)"
            raise ValueError(msg)
        _check_seconds("RateLimit.period", self.period, zero=False)
        _check_count(
            "assumed_completion_tokens", self.assumed_completion_tokens, minimum=0, optional=False
        )


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
    if not _is_int(tokens):
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
        self._line.join(waiter)
        if self._line.nudges != nudges:  # Capacity came back before this caller was in line.
            refused = None
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
        self._line.join(waiter)
        if self._line.nudges != nudges:  # Capacity came back before this caller was in line.
            refused = None
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
        self._store.pause(self._key, _check_seconds("seconds", seconds, zero=True))

    async def apause(self, seconds: float) -> None:
        """Async :meth:`pause`."""
        await self._store.apause(self._key, _check_seconds("seconds", seconds, zero=True))

    def __repr__(self) -> str:
        return f"RateLimiter({self._limit!r}, store={self._store!r}, key={self._key!r})"


def _as_given(kwargs: dict[str, Any]) -> Mapping[str, object]:
    return kwargs


def _requested_pause(exc: BaseException, limit: RateLimit) -> float | None:
    if not is_rate_limit(exc):
        return None
    seconds = retry_after(exc)
    return None if seconds is None else min(seconds, max(_MAX_PAUSE, limit.period))


def _note_wait(permit: Permit) -> None:
    info = current_call()
    if info is not None:
        info.rate_limit_wait += permit.waited


class _RateLimited(Wrapper):
    """What the sync and async rate-limited callables share."""

    __slots__ = ("_call", "_limiter", "_request")

    def __init__(self, inner: ModelCallable, limiter: RateLimiter) -> None:
        super().__init__(inner)
        # litellm boundary: the four kinds return litellm objects; typed by the overloads.
        self._call: Callable[..., Any] = inner
        self._limiter = limiter
        # The request litellm will receive: over a bound object, its defaults merged in (a
        # bound max_tokens counts like one passed on the call).
        bottom = innermost(inner)
        self._request: Callable[[dict[str, Any]], Mapping[str, object]] = (
            bottom._arguments  # pyright: ignore[reportPrivateUsage]
            if isinstance(bottom, BOUND_KINDS)
            else _as_given
        )

    @property
    def limiter(self) -> RateLimiter:
        """The limiter this callable is admitted by."""
        return self._limiter

    def _estimate(self, kwargs: dict[str, Any]) -> int:
        limit = self._limiter.limit
        return estimate_tokens(self._request(kwargs), self.model, limit.assumed_completion_tokens)

    def __repr__(self) -> str:
        return f"with_rate_limit({self._inner!r}, {self._limiter!r})"


class _AsyncRateLimited(_RateLimited):
    __slots__ = ()

    async def __call__(self, **kwargs: Any) -> Any:
        limiter = self._limiter
        counted = limiter.limit.tokens is not None
        permit = await limiter.aacquire(self._estimate(kwargs) if counted else 0)
        _note_wait(permit)
        try:
            result = await self._call(**kwargs)
        except Exception as exc:
            pause = _requested_pause(exc, limiter.limit)
            if pause is not None:
                await limiter.apause(pause)
            raise
        if counted:  # Without a token budget there is no charge to correct.
            used = used_tokens(kwargs, result)
            if used is not None:
                await limiter.asettle(permit, used)
        return result


class _SyncRateLimited(_RateLimited):
    __slots__ = ()

    def __call__(self, **kwargs: Any) -> Any:
        limiter = self._limiter
        counted = limiter.limit.tokens is not None
        permit = limiter.acquire(self._estimate(kwargs) if counted else 0)
        _note_wait(permit)
        try:
            result = self._call(**kwargs)
        except Exception as exc:
            pause = _requested_pause(exc, limiter.limit)
            if pause is not None:
                limiter.pause(pause)
            raise
        if counted:  # Without a token budget there is no charge to correct.
            used = used_tokens(kwargs, result)
            if used is not None:
                limiter.settle(permit, used)
        return result


def _as_limiter(limit: object) -> RateLimiter:
    if isinstance(limit, RateLimit):
        return RateLimiter(limit)
    if isinstance(limit, RateLimiter):
        return limit
    msg = (
        "with_rate_limit() needs a RateLimiter or a RateLimit as its limit, "
        f"e.g. RateLimit(requests=500), got {type(limit).__name__}"
    )
    raise TypeError(msg)


@overload
def with_rate_limit(
    function: ClosableAFixedModelCompletion, limit: RateLimiter | RateLimit
) -> ClosableAFixedModelCompletion: ...
@overload
def with_rate_limit(
    function: ClosableFixedModelCompletion, limit: RateLimiter | RateLimit
) -> ClosableFixedModelCompletion: ...
@overload
def with_rate_limit(
    function: ClosableAFixedModelEmbedding, limit: RateLimiter | RateLimit
) -> ClosableAFixedModelEmbedding: ...
@overload
def with_rate_limit(
    function: ClosableFixedModelEmbedding, limit: RateLimiter | RateLimit
) -> ClosableFixedModelEmbedding: ...
@overload
def with_rate_limit(
    function: AFixedModelCompletion, limit: RateLimiter | RateLimit
) -> AFixedModelCompletion: ...
@overload
def with_rate_limit(
    function: FixedModelCompletion, limit: RateLimiter | RateLimit
) -> FixedModelCompletion: ...
@overload
def with_rate_limit(
    function: AFixedModelEmbedding, limit: RateLimiter | RateLimit
) -> AFixedModelEmbedding: ...
@overload
def with_rate_limit(
    function: FixedModelEmbedding, limit: RateLimiter | RateLimit
) -> FixedModelEmbedding: ...
def with_rate_limit(function: ModelCallable, limit: RateLimiter | RateLimit) -> ModelCallable:
    """Admit every call of ``function`` through a rate limiter.

    Args:
        function: Any of the four callable kinds; the result is of the same kind.
        limit: A :class:`RateLimiter` to share with other callables, or a :class:`RateLimit`
            for a limiter of this callable alone.

    Returns:
        A callable of the same kind that waits its turn, then calls ``function``.

    Raises:
        TypeError: ``function`` is not callable, or ``limit`` is neither a RateLimiter nor a
            RateLimit.
    """
    check_callable(function, "with_rate_limit")
    limiter = _as_limiter(limit)
    kind = _AsyncRateLimited if is_async_callable(function) else _SyncRateLimited
    wrapped = kind(function, limiter)
    if limiter.limit.tokens is not None:
        warm_tokenizer(wrapped.model)
    return wrapped
