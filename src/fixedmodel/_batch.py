"""Running many requests through one callable: bounded concurrency, every result kept.

:func:`abatch` (async) and :func:`batch` (sync) take a completion or embedding callable (any
stack of middleware over a bound object) and an iterable of typed request dicts, consumed
lazily, and return one :class:`BatchResult` per request in input order: the answer, or the
exception that item raised. One failing item never stops the others, unless ``fail_fast``
asks the first failure to stop the batch. :func:`aiter_batch` gives the results through a
:class:`BatchRun` to read with ``async for`` (in input order, or as they complete), for
inputs too large to hold, e.g. to append each result to a file; leaving that loop stops the
requests in flight.

The runner holds at most ``concurrency`` requests in flight and, in input order, at most
``4 * concurrency`` finished results waiting for a slower earlier one, so its memory does not
grow with the input. Quotas, retries and caching are the stack's business: wrap the callable
in ``with_rate_limit``, ``with_retries`` and ``with_cache`` (a persistent cache makes an
interrupted batch resumable: a rerun answers the finished items from the cache).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, cast, overload

from typing_extensions import Required

from fixedmodel._batch_result import BatchFailure, BatchResult, BatchSuccess
from fixedmodel._batch_run import BatchRun, Item, Options, Run, checked_item, length, stopped
from fixedmodel._params import CompletionParams, EmbeddingInput, EmbeddingParams, Messages
from fixedmodel._progress import Progress, ProgressCallback, callbacks, not_async
from fixedmodel.middleware._call import is_async_callable

if TYPE_CHECKING:
    from litellm.types.utils import EmbeddingResponse, ModelResponse

    from fixedmodel._protocols import (
        AFixedModelCompletion,
        AFixedModelEmbedding,
        FixedModelCompletion,
        FixedModelEmbedding,
    )

__all__ = ["CompletionRequest", "EmbeddingRequest", "abatch", "aiter_batch", "batch"]


class CompletionRequest(CompletionParams, total=False):
    """One chat completion request of a batch: ``messages`` and any typed keyword.

    ``stream`` is not a key: a batch collects whole answers.
    """

    messages: Required[Messages]


class EmbeddingRequest(EmbeddingParams, total=False):
    """One embedding request of a batch: ``input`` and any typed keyword."""

    input: Required[EmbeddingInput]


def _check_concurrency(concurrency: object) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        msg = f"concurrency must be an int >= 1, got {type(concurrency).__name__}"
        raise TypeError(msg)
    if concurrency < 1:
        msg = f"concurrency must be an int >= 1, got {concurrency}"
        raise ValueError(msg)
    return concurrency


BUDGET_WAIT = 60.0
"""Seconds a batch's call may wait for a budget taken by calls in flight (see below)."""


def _paced(fn: object, runner: str, *, asynchronous: bool) -> Callable[..., Any]:
    """``fn``, of the runner's kind, with every call paced by the budgets in its stack.

    A callable of the wrong kind is refused now, before any request (untyped callers).

    A budget reserves each call's worst case before sending it; at a batch's concurrency
    those reservations alone can fill the cap while real spending is far below it, and a
    budget that refuses then fails items that would fit once the calls in flight settle.
    In a batch a ``Budget`` made without ``max_wait`` waits (bounded, :data:`BUDGET_WAIT`)
    for those settlements instead; a ``Budget(max_wait=...)`` of its own keeps its setting,
    and one whose settled spending alone reaches the cap still refuses at once.
    """
    if is_async_callable(fn) != asynchronous:
        wanted = (
            "an async callable (bind_acompletion, bind_aembedding)"
            if asynchronous
            else ("a synchronous callable (bind_completion, bind_embedding)")
        )
        other = "batch()" if asynchronous else "abatch() or aiter_batch()"
        msg = f"{runner}() needs {wanted}, got {fn!r}; use {other} for it"
        raise TypeError(msg)
    from fixedmodel.routing._pacing import budget_pacing

    call = cast("Callable[..., Any]", fn)
    if asynchronous:

        async def paced(**kwargs: Any) -> Any:
            with budget_pacing(BUDGET_WAIT):
                return await call(**kwargs)

        return paced

    def paced_sync(**kwargs: Any) -> Any:
        with budget_pacing(BUDGET_WAIT):
            return call(**kwargs)

    return paced_sync


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
        TypeError: ``fn`` is not an async callable, a progress callback is an ``async def``,
            a request is not a dict (when it is read), or ``concurrency`` is not an int.
        ValueError: A request asks for a stream or ``ids`` ran out before the requests
            (when read), or ``concurrency`` < 1.
    """
    options = _options(concurrency, ordered, ids, total, progress, on_progress, fail_fast)
    return BatchRun(Run(_paced(fn, "aiter_batch", asynchronous=True), requests, options))


def _options(
    concurrency: int,
    ordered: bool,
    ids: Iterable[str] | None,
    total: int | None,
    progress: bool | ProgressCallback | None,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None,
    fail_fast: bool,
) -> Options:
    return Options(
        _check_concurrency(concurrency),
        ordered,
        ids,
        total,
        not_async(progress, "progress=") if callable(progress) else progress,
        callbacks(on_progress),
        fail_fast,
    )


def check_requests(requests: object, ids: Iterable[str] | None) -> None:
    """Check a list or tuple of requests whole, before the first one is sent.

    A request that is not a dict, asks for a stream, or has no id would otherwise be found
    when read, after the requests before it were sent and paid for, and lose their results
    with the error. Lazily read input (iterators, generators) is checked as it is read.

    Raises:
        TypeError: A request is not a dict.
        ValueError: A request asks for a stream, or a list of ``ids`` is too short.
    """
    if not isinstance(requests, Sequence) or isinstance(requests, (str, bytes)):
        return
    given = iter(ids) if isinstance(ids, Sequence) else None
    for index, request in enumerate(cast("Sequence[object]", requests)):
        checked_item(index, request, given)


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
        TypeError: ``fn`` is not an async callable, a progress callback is an ``async def``,
            a request is not a dict, or ``concurrency`` is not an int. A list or tuple of
            requests is checked whole before the first is sent; other input as it is read.
        ValueError: A request asks for a stream, ``ids`` ran out before the requests, or
            ``concurrency`` < 1.
    """
    call = _paced(fn, "abatch", asynchronous=True)
    options = _options(concurrency, True, ids, total, progress, on_progress, fail_fast)
    check_requests(requests, ids)
    run = Run(call, requests, options)
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
    call = _paced(fn, "batch", asynchronous=False)
    check_requests(requests, ids)
    meter = Progress(progress, total if total is not None else length(requests), on_progress)
    given = iter(ids) if ids is not None else None
    interrupted = threading.Event()
    failed = threading.Event()

    def run(item: Item) -> BatchResult[Any]:
        index, identifier, kwargs = item
        if interrupted.is_set():
            return BatchFailure(index, identifier, KeyboardInterrupt())
        if failed.is_set():
            meter.failed()
            return BatchFailure(index, identifier, stopped(index))
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
            results.append(run(checked_item(index, request, given)))
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
                pending.add(pool.submit(run, checked_item(index, request, given)))
            done, pending = wait(pending)
            results.extend(future.result() for future in done)
    except BaseException:
        interrupted.set()
        raise
    finally:
        meter.close()
    results.sort(key=lambda result: result.index)
    return results
