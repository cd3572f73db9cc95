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
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from typing_extensions import Required

from fixedmodel._params import CompletionParams, EmbeddingInput, EmbeddingParams, Messages
from fixedmodel._progress import BatchProgress, Progress, ProgressCallback
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
    "BatchProgress",
    "BatchResult",
    "CompletionRequest",
    "EmbeddingRequest",
    "abatch",
    "aiter_batch",
    "batch",
]

ResponseT = TypeVar("ResponseT")


class CompletionRequest(CompletionParams, total=False):
    """One chat completion request of a batch: ``messages`` and any typed keyword.

    ``stream`` is not a key: a batch collects whole answers.
    """

    messages: Required[Messages]


class EmbeddingRequest(EmbeddingParams, total=False):
    """One embedding request of a batch: ``input`` and any typed keyword."""

    input: Required[EmbeddingInput]


@dataclass(frozen=True)
class BatchResult(Generic[ResponseT]):
    """What one request of a batch came to.

    Attributes:
        index: The request's position in the input, from 0.
        id: The request's id: the one given with it, else ``str(index)``.
        response: The answer, or None when the request failed.
        error: The exception the request raised (a litellm exception for a provider
            failure), or None.
    """

    index: int
    id: str
    response: ResponseT | None
    error: BaseException | None

    @property
    def ok(self) -> bool:
        """Whether the request was answered."""
        return self.error is None


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
) -> AsyncIterator[_Item]:
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


async def _run_one(fn: Callable[..., Any], item: _Item, progress: Progress) -> BatchResult[Any]:
    index, identifier, kwargs = item
    try:
        response = await fn(**kwargs)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        progress.failed()
        return BatchResult(index, identifier, None, error)
    progress.answered(response)
    return BatchResult(index, identifier, response, None)


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
) -> AsyncIterator[BatchResult[ModelResponse]]: ...
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
) -> AsyncIterator[BatchResult[EmbeddingResponse]]: ...
def aiter_batch(
    fn: AFixedModelCompletion | AFixedModelEmbedding,
    requests: Iterable[Any] | AsyncIterable[Any],
    *,
    concurrency: int = 16,
    ordered: bool = True,
    ids: Iterable[str] | None = None,
    total: int | None = None,
    progress: bool | ProgressCallback | None = None,
) -> AsyncIterator[BatchResult[Any]]:
    """Run ``requests`` through ``fn`` and yield each :class:`BatchResult`.

    Args:
        fn: An async completion or embedding callable (a bound object or a stack).
        requests: Request dicts (:class:`CompletionRequest` or :class:`EmbeddingRequest`),
            read lazily, one at a time, as room for them frees up.
        concurrency: Requests in flight at most (>= 1).
        ordered: Yield in input order (True) or as requests complete (False).
        ids: An id per request, in order (e.g. OpenAI Batch ``custom_id`` values), at
            least as many as requests; the position as text when None.
        total: The number of requests, for the progress bar's percentage (``len(requests)``
            is used when it has one).
        progress: True for a progress bar on stderr (tqdm), False for none, None for one
            only when stderr is a terminal; or a callable that gets a
            :class:`BatchProgress` after every finished request.

    Yields:
        One result per request. Stopping the iteration (``break``, cancellation, Ctrl-C)
        cancels the requests in flight and reads no further input.

    Raises:
        TypeError: ``fn`` is not an async callable, a request is not a dict, or
            ``concurrency`` is not an int.
        ValueError: A request asks for a stream, ``ids`` ran out before the requests, or
            ``concurrency`` < 1.
    """
    _check_concurrency(concurrency)  # now, not at the first iteration
    _check_kind(fn, "aiter_batch", asynchronous=True)
    return _results(
        cast("Callable[..., Any]", fn),
        requests,
        concurrency=concurrency,
        ordered=ordered,
        ids=ids,
        total=total,
        progress=progress,
    )


async def _results(
    call: Callable[..., Any],
    requests: Iterable[Any] | AsyncIterable[Any],
    *,
    concurrency: int,
    ordered: bool,
    ids: Iterable[str] | None,
    total: int | None,
    progress: bool | ProgressCallback | None,
) -> AsyncIterator[BatchResult[Any]]:
    limit = _check_concurrency(concurrency)
    window = 4 * limit if ordered else limit
    known = total if total is not None else _length(requests)
    meter = Progress(progress, known)
    items = _aitems(requests, ids).__aiter__()
    running: dict[asyncio.Task[BatchResult[Any]], int] = {}
    finished: dict[int, BatchResult[Any]] = {}
    next_out = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < limit and len(running) + len(finished) < window:
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    exhausted = True
                    break
                task = asyncio.ensure_future(_run_one(call, item, meter))
                running[task] = item[0]
            if not running and (exhausted or not finished):
                break
            if running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    del running[task]
                    result = task.result()
                    if ordered:
                        finished[result.index] = result
                    else:
                        yield result
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        with contextlib.suppress(Exception):
            await cast("Any", items).aclose()
        meter.close()


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
) -> list[BatchResult[EmbeddingResponse]]: ...
async def abatch(
    fn: AFixedModelCompletion | AFixedModelEmbedding,
    requests: Iterable[Any] | AsyncIterable[Any],
    *,
    concurrency: int = 16,
    ids: Iterable[str] | None = None,
    total: int | None = None,
    progress: bool | ProgressCallback | None = None,
) -> list[BatchResult[Any]]:
    """Run ``requests`` through ``fn``; return every result, in input order.

    Takes the arguments of :func:`aiter_batch` (always in input order). Use
    :func:`aiter_batch` for inputs whose results should not all be held at once.
    """
    _check_kind(fn, "abatch", asynchronous=True)
    results: list[BatchResult[Any]] = []
    async for result in _results(
        cast("Callable[..., Any]", fn),
        requests,
        concurrency=concurrency,
        ordered=True,
        ids=ids,
        total=total,
        progress=progress,
    ):
        results.append(result)
    return results


@overload
def batch(
    fn: FixedModelCompletion,
    requests: Iterable[CompletionRequest],
    *,
    concurrency: int = ...,
    ids: Iterable[str] | None = ...,
    total: int | None = ...,
    progress: bool | ProgressCallback | None = ...,
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
) -> list[BatchResult[EmbeddingResponse]]: ...
def batch(
    fn: FixedModelCompletion | FixedModelEmbedding,
    requests: Iterable[Any],
    *,
    concurrency: int = 16,
    ids: Iterable[str] | None = None,
    total: int | None = None,
    progress: bool | ProgressCallback | None = None,
) -> list[BatchResult[Any]]:
    """Run ``requests`` through the synchronous ``fn`` on ``concurrency`` threads.

    The synchronous counterpart of :func:`abatch`, with the same arguments and results.
    Ctrl-C stops reading input, lets the threads finish their current request and raises
    ``KeyboardInterrupt``.
    """
    limit = _check_concurrency(concurrency)
    _check_kind(fn, "batch", asynchronous=False)
    call = cast("Callable[..., Any]", fn)
    meter = Progress(progress, total if total is not None else _length(requests))
    given = iter(ids) if ids is not None else None
    stop = threading.Event()

    def run(item: _Item) -> BatchResult[Any]:
        index, identifier, kwargs = item
        if stop.is_set():
            return BatchResult(index, identifier, None, KeyboardInterrupt())
        try:
            response = call(**kwargs)
        except Exception as error:
            meter.failed()
            return BatchResult(index, identifier, None, error)
        meter.answered(response)
        return BatchResult(index, identifier, response, None)

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
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="fixedmodel-batch") as pool:
            for index, request in source:
                if len(pending) >= limit:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    results.extend(future.result() for future in done)
                pending.add(pool.submit(run, _item(index, request, given)))
            done, pending = wait(pending)
            results.extend(future.result() for future in done)
    except BaseException:
        stop.set()
        raise
    finally:
        meter.close()
    results.sort(key=lambda result: result.index)
    return results
