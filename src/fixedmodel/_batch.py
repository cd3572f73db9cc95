"""Running many requests through one callable: bounded concurrency, every result kept.

:func:`abatch` (async) and :func:`batch` (sync) take a completion or embedding callable (any
stack of middleware over a bound object) and an iterable of typed request dicts, consumed
lazily, and return one :class:`BatchResult` per request in input order: the answer, or the
exception that item raised. One failing item never stops the others. :func:`aiter_batch`
gives the results as an async iterator instead (in input order, or as they complete), for
inputs too large to hold, e.g. to append each result to a file.

The runner holds at most ``concurrency`` requests in flight and, in input order, at most
``4 * concurrency`` finished results waiting for a slower earlier one, so its memory does not
grow with the input. Quotas, retries and caching are the stack's business: wrap the callable
in ``with_rate_limit``, ``with_retries`` and ``with_cache`` (a persistent cache makes an
interrupted batch resumable: a rerun answers the finished items from the cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    NoReturn,
    TypeAlias,
    TypeVar,
    cast,
    overload,
)

from typing_extensions import Required, Self

from fixedmodel._params import CompletionParams, EmbeddingInput, EmbeddingParams, Messages
from fixedmodel._progress import BatchProgress, Progress, ProgressCallback, callbacks
from fixedmodel.middleware._call import is_async_callable

if TYPE_CHECKING:
    from litellm.types.utils import EmbeddingResponse, ModelResponse

    from fixedmodel._protocols import (
        AFixedModelCompletion,
        AFixedModelEmbedding,
        FixedModelCompletion,
        FixedModelEmbedding,
    )

__all__ = [
    "BatchCancelledError",
    "BatchFailure",
    "BatchProgress",
    "BatchResult",
    "BatchRun",
    "BatchSuccess",
    "CompletionRequest",
    "EmbeddingRequest",
    "abatch",
    "aiter_batch",
    "batch",
]

ResponseT = TypeVar("ResponseT")
CallableT = TypeVar("CallableT")


class CompletionRequest(CompletionParams, total=False):
    """One chat completion request of a batch: ``messages`` and any typed keyword.

    ``stream`` is not a key: a batch collects whole answers.
    """

    messages: Required[Messages]


class EmbeddingRequest(EmbeddingParams, total=False):
    """One embedding request of a batch: ``input`` and any typed keyword."""

    input: Required[EmbeddingInput]


class BatchCancelledError(Exception):
    """A request of a batch that was stopped before its answer came (``fail_fast``).

    The request may still have reached the provider: it was in flight when an earlier
    failure stopped the batch.
    """


@dataclass(frozen=True)
class BatchSuccess(Generic[ResponseT]):
    """An answered request of a batch.

    Attributes:
        index: The request's position in the input, from 0.
        id: The request's id: the one given with it, else ``str(index)``.
        response: The answer.
        error: Always None.
    """

    index: int
    id: str
    response: ResponseT
    error: None = None

    @property
    def ok(self) -> Literal[True]:
        """True: the request was answered."""
        return True

    def unwrap(self) -> ResponseT:
        """Return the answer."""
        return self.response


@dataclass(frozen=True)
class BatchFailure:
    """A request of a batch that failed.

    Attributes:
        index: The request's position in the input, from 0.
        id: The request's id: the one given with it, else ``str(index)``.
        response: Always None.
        error: The exception the request raised (a litellm exception for a provider
            failure; :class:`BatchCancelledError` for a request stopped by ``fail_fast``).
    """

    index: int
    id: str
    error: BaseException
    response: None = None

    @property
    def ok(self) -> Literal[False]:
        """False: the request failed."""
        return False

    def unwrap(self) -> NoReturn:
        """Raise the request's error.

        Raises:
            BaseException: :attr:`error`, unchanged.
        """
        raise self.error


BatchResult: TypeAlias = BatchSuccess[ResponseT] | BatchFailure
"""What one request of a batch came to: a :class:`BatchSuccess` or a :class:`BatchFailure`.

Both have ``index``, ``id``, ``response``, ``error``, ``ok`` and ``unwrap()``. The checkers
narrow the union with ``isinstance``, ``match``, ``if r.ok is True:`` or
``if r.error is None:`` (mypy also with ``if r.ok:``).
"""


def batch_result(
    index: int, identifier: str, response: ResponseT | None, error: BaseException | None
) -> BatchResult[ResponseT]:
    """Build the result of request ``index``: a failure when ``error`` is set."""
    if error is not None:
        return BatchFailure(index, identifier, error)
    return BatchSuccess(index, identifier, cast("ResponseT", response))


_Item = tuple[int, str, dict[str, Any]]


def _check_concurrency(concurrency: object) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        msg = f"concurrency must be an int >= 1, got {type(concurrency).__name__}"
        raise TypeError(msg)
    if concurrency < 1:
        msg = f"concurrency must be an int >= 1, got {concurrency}"
        raise ValueError(msg)
    return concurrency


def _item(index: int, request: object, ids: Iterator[str] | None) -> _Item:
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


def _check_kind(fn: object, runner: str, *, asynchronous: bool) -> None:
    """Refuse a callable of the wrong kind now, before any request (untyped callers)."""
    if is_async_callable(fn) != asynchronous:
        wanted = (
            "an async callable (bind_acompletion, bind_aembedding)"
            if asynchronous
            else ("a synchronous callable (bind_completion, bind_embedding)")
        )
        other = "batch()" if asynchronous else "abatch() or aiter_batch()"
        msg = f"{runner}() needs {wanted}, got {fn!r}; use {other} for it"
        raise TypeError(msg)


async def _aitems(
    requests: Iterable[Any] | AsyncIterable[Any], ids: Iterable[str] | None
) -> AsyncGenerator[_Item, None]:
    given = iter(ids) if ids is not None else None
    index = 0
    if isinstance(requests, AsyncIterable):
        async for request in cast("AsyncIterable[object]", requests):
            yield _item(index, request, given)
            index += 1
    else:
        for request in cast("Iterable[object]", requests):
            yield _item(index, request, given)
            index += 1


def _paced_by_budget(fn: CallableT) -> CallableT:
    """Where a batch will turn on the budget's pacing: a placeholder, returns ``fn``.

    A budget that refuses a call when in-flight reservations would cross its cap fails many
    items of a batch that would fit once those reservations settle. ``with_budget`` is
    getting an option to wait (bounded) for them instead, and batches are to use it by
    default; it is to be switched on here for every runner (abatch, aiter_batch, batch).
    """
    return fn


async def _run_one(fn: Callable[..., Any], item: _Item, progress: Progress) -> BatchResult[Any]:
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


def _stopped(index: int) -> BatchCancelledError:
    return BatchCancelledError(f"batch request #{index} was stopped: an earlier request failed")


_closing: set[asyncio.Task[None]] = set()  # close tasks of abandoned runs, kept from the GC


class _Run:
    """One batch run: its input, its requests in flight, and its results not yet given."""

    def __init__(
        self,
        call: Callable[..., Any],
        requests: Iterable[Any] | AsyncIterable[Any],
        options: _Options,
    ) -> None:
        self._call = call
        self._limit = options.concurrency
        self._ordered = options.ordered
        self._window = 4 * self._limit if options.ordered else self._limit
        self._fail_fast = options.fail_fast
        self._known = options.total if options.total is not None else _length(requests)
        self._options = options
        self._meter: Progress | None = None
        self._items = _aitems(requests, options.ids)
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
                result: BatchResult[Any] = BatchFailure(index, identifier, _stopped(index))
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
        self.abandon()

    def dropped(self) -> None:
        """The BatchRun was collected: stop, unless an ``async for`` loop still reads."""
        if self.cursors == 0:
            self.abandon()

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
        task = asyncio.ensure_future(self.aclose())
        _closing.add(task)
        task.add_done_callback(_closing.discard)


class _Cursor:
    """What ``async for`` iterates: when the loop drops it, the run stops."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        run.cursors += 1
        weakref.finalize(self, run.left_loop)

    def __aiter__(self) -> _Cursor:
        return self

    async def __anext__(self) -> BatchResult[Any]:
        return await self._run.next()


class BatchRun(Generic[ResponseT]):
    """The results of :func:`aiter_batch`, read once with ``async for``.

    Leaving the ``async for`` loop, by ``break``, ``return`` or an exception, cancels the
    requests still in flight and reads no further input, even when the ``BatchRun`` itself
    is kept in a variable: the loop iterates a cursor that only the loop holds, and
    dropping the cursor stops the run (at once on CPython; at the next garbage collection
    elsewhere). A second ``async for`` over a stopped run yields nothing. To read results one
    at a time across several places, use ``await anext(run)`` and :meth:`aclose`, or
    ``async with``.
    """

    def __init__(self, run: _Run) -> None:
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@dataclass(frozen=True)
class _Options:
    concurrency: int
    ordered: bool
    ids: Iterable[str] | None
    total: int | None
    progress: bool | ProgressCallback | None
    on_progress: tuple[ProgressCallback, ...]
    fail_fast: bool


@overload
def aiter_batch(
    fn: AFixedModelCompletion,
    requests: Iterable[CompletionRequest] | AsyncIterable[CompletionRequest],
    *,
    concurrency: int = ...,
    ordered: bool = ...,
    ids: Iterable[str] | None = ...,
    total: int | None = ...,
    progress: bool | ProgressCallback | None = ...,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = ...,
    fail_fast: bool = ...,
) -> BatchRun[ModelResponse]: ...
@overload
def aiter_batch(
    fn: AFixedModelEmbedding,
    requests: Iterable[EmbeddingRequest] | AsyncIterable[EmbeddingRequest],
    *,
    concurrency: int = ...,
    ordered: bool = ...,
    ids: Iterable[str] | None = ...,
    total: int | None = ...,
    progress: bool | ProgressCallback | None = ...,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = ...,
    fail_fast: bool = ...,
) -> BatchRun[EmbeddingResponse]: ...
def aiter_batch(
    fn: AFixedModelCompletion | AFixedModelEmbedding,
    requests: Iterable[Any] | AsyncIterable[Any],
    *,
    concurrency: int = 16,
    ordered: bool = True,
    ids: Iterable[str] | None = None,
    total: int | None = None,
    progress: bool | ProgressCallback | None = None,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = None,
    fail_fast: bool = False,
) -> BatchRun[Any]:
    """Run ``requests`` through ``fn``; iterate the :class:`BatchRun` for the results.

    Takes the arguments of :func:`abatch`, and ``ordered``: yield in input order (True) or
    as requests complete (False).

    Returns:
        A :class:`BatchRun` yielding one :class:`BatchResult` per request. Leaving its
        ``async for`` loop (``break``, ``return``, an exception, cancellation, Ctrl-C)
        cancels the requests in flight and reads no further input; results already
        yielded are kept.

    Raises:
        TypeError: ``fn`` is not an async callable, a request is not a dict (when it is
            read), or ``concurrency`` is not an int.
        ValueError: A request asks for a stream or ``ids`` ran out before the requests
            (when read), or ``concurrency`` < 1.
    """
    options = _options(concurrency, ordered, ids, total, progress, on_progress, fail_fast)
    _check_kind(fn, "aiter_batch", asynchronous=True)
    call = _paced_by_budget(cast("Callable[..., Any]", fn))
    return BatchRun(_Run(call, requests, options))


def _options(
    concurrency: int,
    ordered: bool,
    ids: Iterable[str] | None,
    total: int | None,
    progress: bool | ProgressCallback | None,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None,
    fail_fast: bool,
) -> _Options:
    return _Options(
        _check_concurrency(concurrency),
        ordered,
        ids,
        total,
        progress,
        callbacks(on_progress),
        fail_fast,
    )


def _length(requests: object) -> int | None:
    try:
        return len(cast("Any", requests))
    except TypeError:
        return None


@overload
async def abatch(
    fn: AFixedModelCompletion,
    requests: Iterable[CompletionRequest] | AsyncIterable[CompletionRequest],
    *,
    concurrency: int = ...,
    ids: Iterable[str] | None = ...,
    total: int | None = ...,
    progress: bool | ProgressCallback | None = ...,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = ...,
    fail_fast: bool = ...,
) -> list[BatchResult[ModelResponse]]: ...
@overload
async def abatch(
    fn: AFixedModelEmbedding,
    requests: Iterable[EmbeddingRequest] | AsyncIterable[EmbeddingRequest],
    *,
    concurrency: int = ...,
    ids: Iterable[str] | None = ...,
    total: int | None = ...,
    progress: bool | ProgressCallback | None = ...,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = ...,
    fail_fast: bool = ...,
) -> list[BatchResult[EmbeddingResponse]]: ...
async def abatch(
    fn: AFixedModelCompletion | AFixedModelEmbedding,
    requests: Iterable[Any] | AsyncIterable[Any],
    *,
    concurrency: int = 16,
    ids: Iterable[str] | None = None,
    total: int | None = None,
    progress: bool | ProgressCallback | None = None,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = None,
    fail_fast: bool = False,
) -> list[BatchResult[Any]]:
    """Run ``requests`` through ``fn``; return every result, in input order.

    Use :func:`aiter_batch` for inputs whose results should not all be held at once.
    Args:
        fn: An async completion or embedding callable (a bound object or a stack).
        requests: Request dicts (:class:`CompletionRequest` or :class:`EmbeddingRequest`),
            read lazily, one at a time, as room for them frees up.
        concurrency: Requests in flight at most (>= 1).
        ids: An id per request, in order (e.g. OpenAI Batch ``custom_id`` values), at
            least as many as requests; the position as text when None.
        total: The number of requests, for the progress bar's percentage (``len(requests)``
            is used when it has one).
        progress: True for a progress bar on stderr (tqdm), False for none, None for one
            only when stderr is a terminal; or a callable that gets a
            :class:`BatchProgress` after every finished request (then no bar).
        on_progress: A callable, or a sequence of them, that gets a :class:`BatchProgress`
            after every finished request, whatever ``progress`` shows.
            A callback or bar that raises is logged (one warning per callback, on the
            ``fixedmodel.batch`` logger) and never costs a result.
        fail_fast: Stop at the first failed request: cancel the requests in flight and
            read no further input. The results then end early: every request read so far
            has one, in order, answered, failed, or failed with
            :class:`BatchCancelledError` (stopped in flight); the requests not read have
            none.
    Returns:
        One :class:`BatchResult` per request read, in input order.

    Raises:
        TypeError: ``fn`` is not an async callable, a request is not a dict, or
            ``concurrency`` is not an int.
        ValueError: A request asks for a stream, ``ids`` ran out before the requests, or
            ``concurrency`` < 1.
    """
    _check_kind(fn, "abatch", asynchronous=True)
    options = _options(concurrency, True, ids, total, progress, on_progress, fail_fast)
    run = _Run(_paced_by_budget(cast("Callable[..., Any]", fn)), requests, options)
    results: list[BatchResult[Any]] = []
    try:
        while True:
            try:
                results.append(await run.next())
            except StopAsyncIteration:
                return results
    finally:
        await run.aclose()


@overload
def batch(
    fn: FixedModelCompletion,
    requests: Iterable[CompletionRequest],
    *,
    concurrency: int = ...,
    ids: Iterable[str] | None = ...,
    total: int | None = ...,
    progress: bool | ProgressCallback | None = ...,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = ...,
    fail_fast: bool = ...,
) -> list[BatchResult[ModelResponse]]: ...
@overload
def batch(
    fn: FixedModelEmbedding,
    requests: Iterable[EmbeddingRequest],
    *,
    concurrency: int = ...,
    ids: Iterable[str] | None = ...,
    total: int | None = ...,
    progress: bool | ProgressCallback | None = ...,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = ...,
    fail_fast: bool = ...,
) -> list[BatchResult[EmbeddingResponse]]: ...
def batch(
    fn: FixedModelCompletion | FixedModelEmbedding,
    requests: Iterable[Any],
    *,
    concurrency: int = 16,
    ids: Iterable[str] | None = None,
    total: int | None = None,
    progress: bool | ProgressCallback | None = None,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = None,
    fail_fast: bool = False,
) -> list[BatchResult[Any]]:
    """Run ``requests`` through the synchronous ``fn`` on ``concurrency`` threads.

    The synchronous counterpart of :func:`abatch`, with the same arguments and results.
    Ctrl-C stops reading input, lets the threads finish their current request and raises
    ``KeyboardInterrupt``. With ``fail_fast`` the requests already running on a thread
    finish (their answers are kept; a thread cannot be interrupted) and no other starts.
    """
    options = _options(concurrency, True, ids, total, progress, on_progress, fail_fast)
    _check_kind(fn, "batch", asynchronous=False)
    call = _paced_by_budget(cast("Callable[..., Any]", fn))
    meter = Progress(progress, total if total is not None else _length(requests), on_progress)
    given = iter(ids) if ids is not None else None
    interrupted = threading.Event()
    failed = threading.Event()

    def run(item: _Item) -> BatchResult[Any]:
        index, identifier, kwargs = item
        if interrupted.is_set():
            return BatchFailure(index, identifier, KeyboardInterrupt())
        if failed.is_set():
            meter.failed()
            return BatchFailure(index, identifier, _stopped(index))
        try:
            response = call(**kwargs)
        except Exception as error:
            if fail_fast:
                failed.set()
            meter.failed()
            return BatchFailure(index, identifier, error)
        meter.answered(response)
        return BatchSuccess(index, identifier, response)

    results: list[BatchResult[Any]] = []
    pending: set[Future[BatchResult[Any]]] = set()
    source = enumerate(requests)
    try:
        # The first request runs alone: litellm builds and caches its HTTP client on the
        # first call, and threads racing through that step each build one, of which all
        # but the cached one are never closed.
        for index, request in source:
            results.append(run(_item(index, request, given)))
            break
        with ThreadPoolExecutor(
            max_workers=options.concurrency, thread_name_prefix="fixedmodel-batch"
        ) as pool:
            while not failed.is_set():  # fail_fast: read no request after a failure
                if len(pending) >= options.concurrency:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    results.extend(future.result() for future in done)
                    continue
                following = next(source, None)
                if following is None:
                    break
                index, request = following
                pending.add(pool.submit(run, _item(index, request, given)))
            done, pending = wait(pending)
            results.extend(future.result() for future in done)
    except BaseException:
        interrupted.set()
        raise
    finally:
        meter.close()
    results.sort(key=lambda result: result.index)
    return results
