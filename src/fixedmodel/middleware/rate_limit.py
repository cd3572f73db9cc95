"""Rate limiting: requests and tokens per period, shared by every callable of one quota.

``with_rate_limit(chat, RateLimit(requests=500, tokens=200_000))`` admits each request
through a :class:`RateLimiter`. One limiter can serve several callables (sync and async,
completion and embedding) that draw on one provider quota.

How a call goes through:

1. Its tokens are estimated, without I/O (:mod:`fixedmodel.middleware._tokens`): the text
   of the request litellm will receive, a fixed count per image or other media part, plus
   ``n`` times the completion tokens it allows.
2. It waits its turn (:class:`RateLimiter`): first come, first served, across threads and
   event loops, without polling.
3. Every request on the wire holds a permit of its own. The openai SDK would retry a failed
   request twice under one permit (``max_retries=2`` by default), so the request is sent
   with the SDK's and litellm's retries switched off and this layer makes the retries the
   request asked for (``max_retries``, else ``num_retries``, else the SDK's 2), on the
   same errors and with the SDK's backoff, each retry waiting for a permit of its own.
   Under ``with_retries`` (which passes ``max_retries=0``) it makes none.
4. After the call, the charge is corrected with the real ``usage``; for a stream, when the
   stream ends, from the usage its last chunk reports (a refund wakes the line). A 429 with
   ``Retry-After`` pauses the whole limiter for that long.

The window rule and the argument that no window of length ``period`` ever admits more than
the budget, while a saturated limiter still reaches 98 % of it, are in
:mod:`fixedmodel.stores._limiter_store`: a segmented sliding window, O(1) per admission.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from fixedmodel._limits import RateLimit
from fixedmodel._protocols import ModelFn
from fixedmodel._streams import StreamEnd, watch_stream
from fixedmodel.middleware._call import (
    CallInfo,
    ModelCallable,
    Wrapper,
    check_callable,
    current_call,
    is_async_callable,
    is_stream_request,
    request_reader,
)
from fixedmodel.middleware._errors import is_rate_limit, is_retryable, retry_after
from fixedmodel.middleware._limiter import Permit, RateLimiter
from fixedmodel.middleware._tokens import estimate_tokens, used_tokens, warm_tokenizer
from fixedmodel.middleware.retries import (
    _Retries,  # pyright: ignore[reportPrivateUsage]
    _without_inner_retries,  # pyright: ignore[reportPrivateUsage]
)
from fixedmodel.stores.redis_limiter import RedisLimiterStore

__all__ = ["Permit", "RateLimit", "RateLimiter", "with_rate_limit"]

_LOGGER = logging.getLogger("fixedmodel.rate_limit")

# A provider's Retry-After pauses every caller of the limiter, so a runaway value is capped at
# the longer of this and one period; the retry layer decides whether to wait longer.
_MAX_PAUSE = 60.0

# The retries this layer makes in place of the openai SDK's, with the SDK's numbers
# (openai-python ``_constants.py``: DEFAULT_MAX_RETRIES, INITIAL_RETRY_DELAY, MAX_RETRY_DELAY;
# ``_base_client.py``: ``_calculate_retry_timeout`` honours a Retry-After of up to 60 s).
_SDK_RETRIES = 2
_SDK_INITIAL_DELAY = 0.5
_SDK_MAX_DELAY = 8.0
_SDK_MAX_RETRY_AFTER = 60.0

# How this layer sleeps between its retries. Looked up on every retry, so that tests can put
# a recording fake clock in their place.
_async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
_sync_sleep: Callable[[float], None] = time.sleep


def _retries_asked(request: dict[str, Any]) -> int:
    """The retries the SDK (or litellm) would have made for ``request``."""
    for name in ("max_retries", "num_retries"):
        value = request.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return int(value)
    return _SDK_RETRIES


def _one_request(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords that make litellm send exactly one request (this layer retries)."""
    # The caller's own max_retries/num_retries were read by _retries_asked: replaced here.
    given = {k: v for k, v in kwargs.items() if k not in ("max_retries", "num_retries")}
    return _without_inner_retries(given)


def _retry_wait(retry: int, exc: BaseException) -> float:
    """Seconds the openai SDK would sleep before its ``retry``-th retry (from 1)."""
    advice = retry_after(exc)
    if advice is not None and 0 < advice <= _SDK_MAX_RETRY_AFTER:
        return advice
    backoff = min(_SDK_INITIAL_DELAY * 2.0 ** (retry - 1), _SDK_MAX_DELAY)
    return backoff * (1.0 - 0.25 * random.random())


def _requested_pause(exc: BaseException, limit: RateLimit) -> float | None:
    if not is_rate_limit(exc):
        return None
    seconds = retry_after(exc)
    return None if seconds is None else min(seconds, max(_MAX_PAUSE, limit.period))


def _note(info: CallInfo | None, permit: Permit, *, counts_attempts: bool) -> None:
    if info is not None:
        info.rate_limit_wait += permit.waited
        if counts_attempts:  # No with_retries above (it passes max_retries=0): we count.
            info.attempts += 1


class _Later:
    """Runs the settlements of abandoned streams on a thread of its own.

    A stream abandoned unfinished is reported from the garbage collector, which can run in
    the middle of any code, the limiter's own critical sections included: taking a lock there
    could deadlock. ``SimpleQueue.put`` is safe in that place (its documentation says so); the
    thread does the rest. After ``fork()`` the child starts afresh (the thread is not copied).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def ready(self) -> None:
        """Start the thread if it is not running (from ordinary code, before it is needed)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="fixedmodel-rate-limit-settle", daemon=True
                )
                self._thread.start()

    def put(self, work: Callable[[], None]) -> None:
        """Hand ``work`` to the thread; safe from a garbage collector callback."""
        self._queue.put(work)

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            try:
                work()
            except Exception as exc:  # Best effort: the call it concerns is over.
                _LOGGER.warning("with_rate_limit: a stream's charge was not settled: %r", exc)

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._queue = queue.SimpleQueue()
        self._thread = None


_later = _Later()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_later.after_fork)

_settling: set[asyncio.Task[None]] = set()  # Keeps scheduled settlements alive until done.


def _spawn(settle: Callable[[], Awaitable[None]]) -> None:
    async def run() -> None:
        try:
            await settle()
        except Exception as exc:  # Best effort, as in _Later.
            _LOGGER.warning("with_rate_limit: a stream's charge was not settled: %r", exc)

    task = asyncio.get_running_loop().create_task(run())
    _settling.add(task)
    task.add_done_callback(_settling.discard)


class _RateLimited(Wrapper):
    """What the sync and async rate-limited callables share."""

    __slots__ = ("_call", "_limiter", "_read")

    def __init__(self, inner: ModelCallable, limiter: RateLimiter) -> None:
        super().__init__(inner)
        # litellm boundary: the four kinds return litellm objects; typed by the overloads.
        self._call: Callable[..., Any] = inner
        self._limiter = limiter
        # The request litellm will receive (bound defaults and extra_params merged): a bound
        # max_tokens or stream=True counts like one passed on the call.
        self._read = request_reader(inner)

    @property
    def limiter(self) -> RateLimiter:
        """The limiter this callable is admitted by."""
        return self._limiter

    def _begin(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, Any], int]:
        """The request litellm will receive, the retries it asks for, the keywords of one
        request, and the tokens to charge each (nothing without a token budget)."""
        request = self._read(kwargs)
        limit = self._limiter.limit
        if limit.tokens is None:
            estimate = 0
        else:
            estimate = estimate_tokens(request, self.model, limit.assumed_completion_tokens)
        return request, _retries_asked(request), _one_request(kwargs), estimate

    def _used(self, request: dict[str, Any], result: object, permit: Permit) -> int | None:
        """Tokens to settle a finished call at now, or None to keep the estimate (a stream
        is watched and settled when it ends)."""
        if self._limiter.limit.tokens is None:
            return None
        if is_stream_request(request):
            self._watch(result, permit)
            return None
        return used_tokens(request, result)

    def _watch(self, stream: Any, permit: Permit) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"with_rate_limit({self._inner!r}, {self._limiter!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (with_rate_limit, (self._inner, self._limiter))


class _AsyncRateLimited(_RateLimited):
    __slots__ = ()

    async def __call__(self, **kwargs: Any) -> Any:
        limiter = self._limiter
        request, retries, arguments, estimate = self._begin(kwargs)
        info = current_call()
        retry = 0
        while True:
            permit = await limiter.aacquire(estimate)
            _note(info, permit, counts_attempts=retries > 0)
            try:
                result = await self._call(**arguments)
            except Exception as exc:
                pause = _requested_pause(exc, limiter.limit)
                if pause is not None:
                    await limiter.apause(pause)
                if retry >= retries or not is_retryable(exc):
                    raise
                retry += 1
                if pause is None:  # A pause already holds the next permit back.
                    await _async_sleep(_retry_wait(retry, exc))
                continue
            used = self._used(request, result, permit)
            if used is not None:
                await limiter.asettle(permit, used)
            return result

    def _watch(self, stream: Any, permit: Permit) -> None:
        limiter = self._limiter
        loop = asyncio.get_running_loop()
        _later.ready()

        def ended(end: StreamEnd) -> None:
            if end.usage is None:  # Ended without usage: the estimate stands.
                return
            used = end.usage.total_tokens
            if (end.completed or end.error is not None) and limiter.in_process:
                limiter.settle(permit, used)  # In the caller's iteration: no I/O, no wait.
                return
            try:
                loop.call_soon_threadsafe(_spawn, lambda: limiter.asettle(permit, used))
            except RuntimeError:  # The loop is closed: settle from the thread.
                _later.put(lambda: limiter.settle(permit, used))

        watch_stream(stream, ended)


class _SyncRateLimited(_RateLimited):
    __slots__ = ()

    def __call__(self, **kwargs: Any) -> Any:
        limiter = self._limiter
        request, retries, arguments, estimate = self._begin(kwargs)
        info = current_call()
        retry = 0
        while True:
            permit = limiter.acquire(estimate)
            _note(info, permit, counts_attempts=retries > 0)
            try:
                result = self._call(**arguments)
            except Exception as exc:
                pause = _requested_pause(exc, limiter.limit)
                if pause is not None:
                    limiter.pause(pause)
                if retry >= retries or not is_retryable(exc):
                    raise
                retry += 1
                if pause is None:
                    _sync_sleep(_retry_wait(retry, exc))
                continue
            used = self._used(request, result, permit)
            if used is not None:
                limiter.settle(permit, used)
            return result

    def _watch(self, stream: Any, permit: Permit) -> None:
        limiter = self._limiter
        _later.ready()

        def ended(end: StreamEnd) -> None:
            if end.usage is None:  # Ended without usage: the estimate stands.
                return
            used = end.usage.total_tokens
            if end.completed or end.error is not None:
                limiter.settle(permit, used)  # In the caller's own iteration.
            else:  # Closed early or collected: perhaps inside the garbage collector.
                _later.put(lambda: limiter.settle(permit, used))

        watch_stream(stream, ended)


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


def _check_stack(function: object, limiter: RateLimiter) -> None:
    """Refuse a stack in which requests would reach the wire without this limiter's permit."""
    layer, retrying = function, False
    while isinstance(layer, Wrapper):
        if isinstance(layer, _RateLimited) and layer.limiter is limiter:
            return  # Every request below holds a permit of this limiter already.
        retrying = retrying or isinstance(layer, _Retries)
        layer = layer._inner  # pyright: ignore[reportPrivateUsage]
    if retrying:
        msg = (
            "with_rate_limit() must be inside with_retries(), not over it: "
            "with_retries(with_rate_limit(chat, limit)); over it, every retry would reach "
            "the provider without a permit"
        )
        raise TypeError(msg)


def _check_store(limiter: RateLimiter, *, is_async: bool) -> None:
    """Refuse, at wrap time, a store that cannot serve this kind of callable."""
    store = limiter.store
    if not is_async and isinstance(store, RedisLimiterStore):
        store.require_sync_client("with_rate_limit() was given a sync callable")


def with_rate_limit(function: ModelFn, limit: RateLimiter | RateLimit) -> ModelFn:
    """Admit every call of ``function`` through a rate limiter.

    Args:
        function: Any of the four callable kinds; the result is of the same kind.
        limit: A :class:`RateLimiter` to share with other callables, or a :class:`RateLimit`
            for a limiter of this callable alone.

    Returns:
        A callable of the same kind that waits its turn, then calls ``function``.

    Raises:
        TypeError: ``function`` is not callable; ``limit`` is neither a RateLimiter nor a
            RateLimit; ``function`` has ``with_retries`` inside it (its retries would go out
            without a permit: put ``with_retries`` outside); or ``function`` is sync and the
            limiter's Redis store has no sync client (built with only ``async_client=``).
    """
    check_callable(function, "with_rate_limit")
    limiter = _as_limiter(limit)
    is_async = is_async_callable(function)
    _check_stack(function, limiter)
    _check_store(limiter, is_async=is_async)
    kind = _AsyncRateLimited if is_async else _SyncRateLimited
    wrapped = kind(function, limiter)
    if limiter.limit.tokens is not None:
        warm_tokenizer(wrapped.model)
    return cast("ModelFn", wrapped)
