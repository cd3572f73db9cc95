"""Pacing for budgets: how long a refused call may wait, and what wakes it.

When a budget's cap is taken by reservations of calls in flight rather than by spending, a
call with a wait (``Budget(max_wait=...)``, or :func:`budget_pacing` for the context) waits
for settlements instead of failing. A settlement made in this process wakes the waiters of
its budget at once; settlements made by other processes sharing a Redis store are seen by
looking again every :data:`POLL` seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
from collections.abc import Generator
from contextlib import contextmanager
from contextvars import ContextVar

from fixedmodel.stores._cache_store import after_fork_in_child

__all__ = ["POLL", "Settlements", "budget_pacing", "check_wait", "default_wait"]

POLL = 0.25
"""Seconds between two looks at the store while a call waits (settlements made by other
processes wake no one here; this process's own settlements wake waiters at once)."""

_default_wait: ContextVar[float] = ContextVar("fixedmodel_budget_default_wait", default=0.0)


@contextmanager
def budget_pacing(max_wait: float) -> Generator[None, None, None]:
    """Let calls made in this context wait up to ``max_wait`` seconds for a budget taken by
    calls in flight, for every :class:`Budget` created without ``max_wait``.

    A batch runner uses it so that a budget paces its concurrent calls instead of refusing
    them. It sets a context variable: tasks created inside the block inherit it; threads
    do not (copy the context into them, ``contextvars.copy_context().run``).

    Raises:
        ValueError: ``max_wait`` is negative or not finite.
    """
    check_wait(max_wait)
    token = _default_wait.set(float(max_wait))
    try:
        yield
    finally:
        _default_wait.reset(token)


def check_wait(value: object) -> None:
    """Refuse a ``max_wait`` that is not a finite number of seconds >= 0 (``ValueError``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value >= 0)
    ):
        msg = f"Budget.max_wait must be a number of seconds >= 0 or None, got {value!r}"
        raise ValueError(msg)


class Settlements:
    """Wakes the calls of this process that wait for a budget, when one of its calls settles.

    A generation counter closes the gap between a refused reservation and the wait: a call
    notes the generation before it asks the store, and does not wait if it moved since.

    :meth:`notify` takes no lock when nobody waits, so the two sides pair up without it: the
    notifier sets a new generation, then looks for waiters; a waiter registers, then looks at
    the generation. Whatever the interleaving, one of them sees the other. Each generation is
    a new number (``itertools.count``, whose ``next`` is atomic), so two notifiers racing
    never leave it at a value a waiter has seen (``+= 1`` could: both read 5, both write 6).
    """

    __slots__ = ("__weakref__", "_changed", "_count", "_futures", "_threads", "generation")

    def __init__(self) -> None:
        self._count = itertools.count(1)
        self.generation = 0
        self._changed = threading.Condition(threading.Lock())
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._threads = 0  # Threads in wait_change.
        after_fork_in_child(self)

    def _after_fork(self) -> None:
        """A fresh lock, and no waiters: after a fork only the forking thread exists."""
        self._changed = threading.Condition(threading.Lock())
        self._futures = []
        self._threads = 0

    def notify(self) -> None:
        # Every settled call notifies; most often nobody waits, and then no lock is taken.
        # A waiter registers before it checks the generation, so it either sees this change
        # or is registered before the check below reads it (see the class docstring).
        self.generation = next(self._count)
        if not (self._threads or self._futures):
            return
        with self._changed:
            if self._threads:
                self._changed.notify_all()
            futures, self._futures = self._futures, []
        for loop, future in futures:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # That loop is closed: nobody waits there any more.
                continue

    def wait_change(self, seen: int, timeout: float) -> None:
        with self._changed:
            self._threads += 1  # Registered first, then the check (see the class docstring).
            try:
                if self.generation == seen:
                    self._changed.wait(timeout)
            finally:
                self._threads -= 1

    async def await_change(self, seen: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._changed:
            self._futures.append((loop, future))  # Registered first, then the check.
            if self.generation != seen:
                self._futures.remove((loop, future))
                return
        try:
            await asyncio.wait([future], timeout=timeout)
        finally:
            with self._changed:
                if (loop, future) in self._futures:
                    self._futures.remove((loop, future))


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def default_wait() -> float:
    """Seconds of waiting :func:`budget_pacing` set for this context (0 when none)."""
    return _default_wait.get()
