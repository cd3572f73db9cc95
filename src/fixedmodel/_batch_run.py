"""The engine of the async batch runners: a window of tasks over lazily read input.

A :class:`BatchRun` is what ``async for`` reads. The loop iterates a cursor that only the
loop holds; when the loop is left (``break``, ``return``, an exception) the cursor is
dropped and its finalizer cancels the requests in flight, even when the ``BatchRun`` is
still held in a variable. An async generator would keep its tasks running until it is
garbage collected or ``aclose()``-d.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from fixedmodel._batch_result import BatchCancelledError, BatchFailure, BatchResult, BatchSuccess
from fixedmodel._closing import AsyncClosing
from fixedmodel._progress import Progress, ProgressCallback

__all__ = ["BatchRun", "Item", "Options", "Run", "aitems", "checked_item", "length", "stopped"]

ResponseT = TypeVar("ResponseT")
logger = logging.getLogger("fixedmodel.batch")

Item = tuple[int, str, dict[str, Any]]


def checked_item(index: int, request: object, ids: Iterator[str] | None) -> Item:
    if not isinstance(request, dict):
        msg = f"batch request #{index} must be a dict of keywords, got {type(request).__name__}"
        raise TypeError(msg)
    kwargs = cast("dict[str, Any]", request)
    if kwargs.get("stream"):
        msg = f"batch request #{index} asks for a stream; a batch collects whole answers"
        raise ValueError(msg)
    if ids is None:
        return index, str(index), kwargs
    identifier = next(ids, None)
    if identifier is None:
        msg = f"ids= ran out at batch request #{index}: give one id per request"
        raise ValueError(msg)
    return index, identifier, kwargs


async def aitems(
    requests: Iterable[Any] | AsyncIterable[Any], ids: Iterable[str] | None
) -> AsyncGenerator[Item, None]:
    """Each request, checked, with its index and id (see :func:`checked_item`), as read."""
    given = iter(ids) if ids is not None else None
    index = 0
    if isinstance(requests, AsyncIterable):
        async for request in cast("AsyncIterable[object]", requests):
            yield checked_item(index, request, given)
            index += 1
    else:
        for request in cast("Iterable[object]", requests):
            yield checked_item(index, request, given)
            index += 1


async def _run_one(fn: Callable[..., Any], item: Item, progress: Progress) -> BatchResult[Any]:
    index, identifier, kwargs = item
    try:
        response = await fn(**kwargs)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        progress.failed()
        return BatchFailure(index, identifier, error)
    progress.answered(response)
    return BatchSuccess(index, identifier, response)


def stopped(index: int) -> BatchCancelledError:
    return BatchCancelledError(f"batch request #{index} was stopped: an earlier request failed")


_closing: set[asyncio.Task[None]] = set()  # close tasks of abandoned runs, kept from the GC


class Run:
    """One batch run: its input, its requests in flight, and its results not yet given."""

    def __init__(
        self,
        call: Callable[..., Any],
        requests: Iterable[Any] | AsyncIterable[Any],
        options: Options,
    ) -> None:
        self._call = call
        self._limit = options.concurrency
        self._ordered = options.ordered
        self._window = 4 * self._limit if options.ordered else self._limit
        self._fail_fast = options.fail_fast
        self._known = options.total if options.total is not None else length(requests)
        self._options = options
        self._meter: Progress | None = None
        self._items = aitems(requests, options.ids)
        self._running: dict[asyncio.Task[BatchResult[Any]], tuple[int, str]] = {}
        self._finished: dict[int, BatchResult[Any]] = {}  # in input order: by index
        self._ready: deque[BatchResult[Any]] = deque()  # as they complete
        self._next_out = 0
        self._exhausted = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.cursors = 0  # async for loops reading this run

    async def next(self) -> BatchResult[Any]:
        """The next result; ``StopAsyncIteration`` once every request has one."""
        if self._closed:
            raise StopAsyncIteration
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._meter = Progress(self._options.progress, self._known, self._options.on_progress)
        try:
            while True:
                result = self._pop_ready()
                if result is not None:
                    return result
                await self._fill()
                if not self._running:
                    break
                await self._collect()
        except BaseException:
            await self.aclose()
            raise
        await self.aclose()
        raise StopAsyncIteration

    def _pop_ready(self) -> BatchResult[Any] | None:
        if self._ready:
            return self._ready.popleft()
        result = self._finished.pop(self._next_out, None)
        if result is not None:
            self._next_out += 1
        return result

    async def _fill(self) -> None:
        meter = cast("Progress", self._meter)
        while (
            not self._exhausted
            and len(self._running) < self._limit
            and len(self._running) + len(self._finished) < self._window
        ):
            try:
                item = await self._items.__anext__()
            except StopAsyncIteration:
                self._exhausted = True
                break
            task = asyncio.ensure_future(_run_one(self._call, item, meter))
            self._running[task] = (item[0], item[1])

    async def _collect(self) -> None:
        done, _ = await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
        failed = False
        for task in sorted(done, key=self._running.__getitem__):
            index, identifier = self._running.pop(task)
            if task.cancelled():  # stopped by fail_fast
                cast("Progress", self._meter).failed()
                result: BatchResult[Any] = BatchFailure(index, identifier, stopped(index))
            else:
                result = task.result()
                failed = failed or not result.ok
            if self._ordered:
                self._finished[index] = result
            else:
                self._ready.append(result)
        if failed and self._fail_fast:
            self._exhausted = True  # read no further input
            for task in self._running:
                task.cancel()

    async def aclose(self) -> None:
        """Cancel the requests in flight, close the input, close the progress bar."""
        if self._closed:
            return
        self._closed = True
        running = list(self._running)
        self._running.clear()
        try:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._items.aclose()
        finally:
            if self._meter is not None:
                self._meter.close()

    def left_loop(self) -> None:
        """An ``async for`` loop dropped its cursor: it ended or was left, so stop."""
        self.cursors -= 1
        self._abandon_from_finalizer()

    def dropped(self) -> None:
        """The BatchRun was collected: stop, unless an ``async for`` loop still reads."""
        if self.cursors == 0:
            self._abandon_from_finalizer()

    def _abandon_from_finalizer(self) -> None:
        # A finalizer has no caller to raise to: what goes wrong is logged.
        try:
            self.abandon()
        except Exception:
            logger.warning("stopping an abandoned batch run failed", exc_info=True)

    def abandon(self) -> None:
        """Stop the run from a finalizer: cancel now, finish closing on the run's loop."""
        if self._closed:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            self._closed = True
            if self._meter is not None:
                self._meter.close()
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            for task in self._running:
                task.cancel()  # at once: the requests stop at the loop's next step
            self._spawn_close()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._spawn_close)

    def _spawn_close(self) -> None:
        loop = cast("asyncio.AbstractEventLoop", self._loop)  # set: the run was read
        if loop.is_closed():
            return
        task = loop.create_task(self.aclose())
        _closing.add(task)
        task.add_done_callback(_closing.discard)


class _Cursor:
    """What ``async for`` iterates: when the loop drops it, the run stops."""

    def __init__(self, run: Run) -> None:
        self._run = run
        run.cursors += 1
        weakref.finalize(self, run.left_loop)

    def __aiter__(self) -> _Cursor:
        return self

    async def __anext__(self) -> BatchResult[Any]:
        return await self._run.next()


class BatchRun(AsyncClosing, Generic[ResponseT]):
    """The results of :func:`aiter_batch`, read once with ``async for``.

    Leaving the ``async for`` loop, by ``break``, ``return`` or an exception, cancels the
    requests still in flight and reads no further input, even when the ``BatchRun`` itself
    is kept in a variable: the loop iterates a cursor that only the loop holds, and
    dropping the cursor stops the run (at once on CPython; at the next garbage collection
    elsewhere). A second ``async for`` over a stopped run yields nothing. To read results one
    at a time across several places, use ``await anext(run)`` and :meth:`aclose`, or
    ``async with``.
    """

    def __init__(self, run: Run) -> None:
        self._run = run
        weakref.finalize(self, run.dropped)

    def __aiter__(self) -> AsyncIterator[BatchResult[ResponseT]]:
        return _Cursor(self._run)

    async def __anext__(self) -> BatchResult[ResponseT]:
        """The next result.

        Raises:
            StopAsyncIteration: Every request has its result, or the run was stopped.
        """
        return await self._run.next()

    async def aclose(self) -> None:
        """Cancel the requests in flight and stop reading input (idempotent)."""
        await self._run.aclose()


@dataclass(frozen=True)
class Options:
    concurrency: int
    ordered: bool
    ids: Iterable[str] | None
    total: int | None
    progress: bool | ProgressCallback | None
    on_progress: tuple[ProgressCallback, ...]
    fail_fast: bool


def length(requests: object) -> int | None:
    try:
        return len(cast("Any", requests))
    except TypeError:
        return None
