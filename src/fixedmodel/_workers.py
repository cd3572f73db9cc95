"""Running one batch over the worker processes of an executor (a pool, Dask's or Ray's workers).

:func:`batch_on` cuts the requests into chunks and hands each chunk to
``executor.submit``: a ``concurrent.futures.ProcessPoolExecutor``, the executor of a Dask
cluster (``distributed.Client.get_executor()``), or an adapter over Ray tasks or actors
(docs/workers.md), whose scheduler places the chunks. fixedmodel schedules nothing itself.
Each worker process rebuilds the stack once (it travels pickled; see ``_pickling.py``) and
keeps it for its lifetime (:class:`_Worker`), running its chunks with
:func:`~fixedmodel.abatch` or :func:`~fixedmodel.batch`, so a Redis limiter,
cache or budget in the stack is shared by every worker. What a worker sends back is checked
to survive pickling both ways (:func:`_sendable`): no item can break a chunk or the pool.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import inspect
import logging
import multiprocessing.util
import os
import pickle
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from fixedmodel import _pickling
from fixedmodel._batch import CompletionRequest, EmbeddingRequest, abatch, batch, check_requests
from fixedmodel._batch_result import BatchResult, batch_result
from fixedmodel._batch_run import checked_item
from fixedmodel.errors import WorkerError

if TYPE_CHECKING:
    from litellm.types.utils import EmbeddingResponse, ModelResponse

    from fixedmodel._protocols import (
        AFixedModelCompletion,
        AFixedModelEmbedding,
        FixedModelCompletion,
        FixedModelEmbedding,
    )

__all__ = ["batch_on"]

LOGGER = logging.getLogger("fixedmodel")

_T = TypeVar("_T")

_Chunk = list[tuple[int, str, dict[str, Any]]]

# Longest wait, in seconds, for a worker's stacks to close when its process exits.
_EXIT_TIMEOUT = 10.0


class _Worker:
    """What a worker process keeps for its lifetime: the stacks it rebuilt, one event loop.

    A stack is rebuilt once per process (keyed by the digest of its pickle) and kept, with
    its connections and clients, until the process exits; chunks never close it, so no
    chunk waits for litellm's logging worker to flush. Async stacks run on one event loop
    in a daemon thread, shared by every chunk of the process (Dask runs several chunks at
    once in threads; a Ray async actor calls from inside its own running loop), so their
    HTTP clients stay on the loop they were made for.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stacks: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def stack(self, payload: bytes, digest: str) -> Any:
        with self.lock:
            stack = self.stacks.get(digest)
            if stack is None:
                stack = self.stacks[digest] = pickle.loads(payload)
            return stack

    def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        """Run ``work`` on the worker's loop and wait for it in the calling thread."""
        with self.lock:
            loop = self.loop
            if loop is None:
                loop = self.loop = asyncio.new_event_loop()
                self.thread = threading.Thread(
                    target=loop.run_forever, name="fixedmodel-worker-loop", daemon=True
                )
                self.thread.start()
        return asyncio.run_coroutine_threadsafe(work, loop).result()

    def close(self) -> None:
        """Close every stack (async ones on the worker's loop), then the loop; bounded."""
        with self.lock:
            stacks, self.stacks = list(self.stacks.values()), {}
            loop, thread, self.loop, self.thread = self.loop, self.thread, None, None
        # An async stack (one with aclose) is closed on the loop its clients belong to.
        closers = [getattr(stack, "aclose", None) for stack in stacks]
        for stack, async_closer in zip(stacks, closers, strict=True):
            closer = getattr(stack, "close", None)
            if async_closer is None and callable(closer):
                _quietly(closer)
        if loop is None or thread is None:
            return

        async def close_async() -> None:
            for closer in closers:
                if callable(closer):
                    with contextlib.suppress(Exception):
                        await cast("Callable[[], Awaitable[object]]", closer)()
            await loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_async(), loop).result(_EXIT_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_EXIT_TIMEOUT)
        if not thread.is_alive():
            loop.close()


def _quietly(closer: Callable[[], object]) -> None:
    try:
        closer()
    except Exception:
        LOGGER.debug("fixedmodel: closing a worker's stack failed", exc_info=True)


_worker: _Worker | None = None
_worker_lock = threading.Lock()
_exit_hooked = False


def _current_worker() -> _Worker:
    global _worker, _exit_hooked
    with _worker_lock:
        if _worker is None:
            _worker = _Worker()
        if not _exit_hooked:
            # atexit for spawned processes and the main one; multiprocessing's finalizers
            # for forked pool processes, which leave through os._exit without atexit.
            atexit.register(close_worker)
            multiprocessing.util.Finalize(None, close_worker, exitpriority=10)
            _exit_hooked = True
        return _worker


def close_worker() -> None:
    """Close this process's worker stacks and loop; idempotent. Called at process exit."""
    global _worker
    with _worker_lock:
        worker, _worker = _worker, None
    if worker is not None:
        worker.close()


def _forget_in_child() -> None:
    # A forked child has none of the parent's threads: its copy of the loop is dead.
    global _worker, _worker_lock
    _worker, _worker_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


def _sendable(result: BatchResult[Any], index: int, identifier: str) -> tuple[Any, ...]:
    """What a worker sends back for one item: checked to survive pickling, both ways.

    An error that does not come back as itself is replaced by a
    :class:`~fixedmodel.errors.WorkerError`; an answer that cannot (not seen with litellm's
    responses) by a ``WorkerError`` saying so. One item can thus never break the chunk,
    the worker or the pool.
    """
    response, error = result.response, result.error
    if error is not None and not _pickling.round_trips(error):
        _pickling.register_exception_pickling()  # classes litellm imported since
        if not _pickling.round_trips(error):
            error = _pickling.stand_in(error)
    if response is not None and not _pickling.round_trips(response):
        kind = type(response).__qualname__
        msg = f"the worker got an answer but could not send it back (a {kind})"
        response, error = None, WorkerError(msg, type_name="pickle.PicklingError")
    return (index, identifier, response, error)


def _run_chunk(payload: bytes, digest: str, chunk: _Chunk, concurrency: int) -> list[Any]:
    """In a worker: answer one chunk with the rebuilt stack; results in chunk order."""
    worker = _current_worker()
    # Typed as a completion stack: the requests arrived as plain dicts, and the runner
    # treats both kinds alike.
    stack = worker.stack(payload, digest)
    requests = [cast("CompletionRequest", request) for _, _, request in chunk]
    if inspect.iscoroutinefunction(type(stack).__call__) or inspect.iscoroutinefunction(stack):
        results = worker.run(
            abatch(
                cast("AFixedModelCompletion", stack),
                requests,
                concurrency=concurrency,
                progress=False,
            )
        )
    else:
        results = batch(
            cast("FixedModelCompletion", stack), requests, concurrency=concurrency, progress=False
        )
    return [
        _sendable(result, index, identifier)
        for result, (index, identifier, _) in zip(results, chunk, strict=True)
    ]


def _chunks(requests: Iterable[Any], ids: Iterable[str] | None, size: int) -> Iterator[_Chunk]:
    """The requests in chunks of ``size``, each checked here (as abatch checks them)."""
    given = iter(ids) if ids is not None else None
    chunk: _Chunk = []
    for index, request in enumerate(cast("Iterable[object]", requests)):
        chunk.append(checked_item(index, request, given))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"batch_on() {name} must be an int >= 1, got {value!r}"
        raise ValueError(msg)
    return value


@overload
def batch_on(
    executor: Executor,
    fn: AFixedModelCompletion | FixedModelCompletion,
    requests: Iterable[CompletionRequest],
    *,
    chunk_size: int = ...,
    concurrency: int = ...,
    pending_chunks: int = ...,
    ids: Iterable[str] | None = ...,
) -> Iterator[BatchResult[ModelResponse]]: ...
@overload
def batch_on(
    executor: Executor,
    fn: AFixedModelEmbedding | FixedModelEmbedding,
    requests: Iterable[EmbeddingRequest],
    *,
    chunk_size: int = ...,
    concurrency: int = ...,
    pending_chunks: int = ...,
    ids: Iterable[str] | None = ...,
) -> Iterator[BatchResult[EmbeddingResponse]]: ...
def batch_on(
    executor: Executor,
    fn: Any,
    requests: Iterable[Any],
    *,
    chunk_size: int = 100,
    concurrency: int = 16,
    pending_chunks: int = 8,
    ids: Iterable[str] | None = None,
) -> Iterator[BatchResult[Any]]:
    """Run a batch over ``executor``'s workers; yield the results in input order.

    Args:
        executor: Where chunks run: a ``concurrent.futures.ProcessPoolExecutor``, a Dask
            cluster's ``client.get_executor()`` (``pip install 'fixedmodel[dask]'``), or an
            executor over Ray tasks or actors (``pip install 'fixedmodel[ray]'``; the
            adapters are on the Workers page).
        fn: A callable of any of the four kinds whose stack can be pickled: state shared
            across processes lives in Redis or on disk (an in-memory cache or limiter
            refuses, naming the shared store to use instead).
        requests: Request dicts, read lazily, ``chunk_size`` at a time.
        chunk_size: Requests per task sent to a worker.
        concurrency: Requests in flight at once in each worker.
        pending_chunks: Chunks submitted ahead of the one being yielded; with the workers'
            concurrency this bounds what is read from ``requests`` and held in memory.
        ids: An id per request, as for :func:`~fixedmodel.abatch`.

    Yields:
        One :class:`~fixedmodel.BatchResult` per request, in input order, with the
        exception of a failed request rebuilt in this process (its class, fields, notes
        and cause), or a :class:`~fixedmodel.errors.WorkerError` standing in for one that
        could not travel.

    Raises:
        TypeError: ``fn`` cannot be pickled (the message names what holds in-process state),
            or a request is not a dict.
        ValueError: A size is not an int >= 1, a request asks for a stream, or ``ids`` ran
            out before the requests. A list or tuple of requests is checked whole before
            the first chunk is sent; other input as it is read, in this process.
    """
    size = _positive("chunk_size", chunk_size)
    per_worker = _positive("concurrency", concurrency)
    ahead = _positive("pending_chunks", pending_chunks)
    check_requests(requests, ids)
    payload = pickle.dumps(fn)  # raises now, in the caller, if the stack cannot travel
    digest = hashlib.sha256(payload).hexdigest()
    return _results(executor, payload, digest, _chunks(requests, ids, size), per_worker, ahead)


def _results(
    executor: Executor,
    payload: bytes,
    digest: str,
    chunks: Iterator[_Chunk],
    concurrency: int,
    ahead: int,
) -> Iterator[BatchResult[Any]]:
    pending: deque[tuple[_Chunk, Future[list[Any]]]] = deque()
    try:
        for chunk in chunks:
            try:
                future = executor.submit(_run_chunk, payload, digest, chunk, concurrency)
            except Exception:
                # The executor is broken or shut down: what came back before still counts.
                while pending:
                    yield from _received(*pending.popleft())
                raise
            pending.append((chunk, future))
            if len(pending) >= ahead:
                yield from _received(*pending.popleft())
        while pending:
            yield from _received(*pending.popleft())
    finally:
        for _, future in pending:
            future.cancel()


def _received(chunk: _Chunk, future: Future[list[Any]]) -> Iterator[BatchResult[Any]]:
    """The results of one chunk; if the chunk itself failed, a failure for each of its items.

    A worker that died (killed for memory, a crash in native code) fails its chunk with
    ``BrokenProcessPool``, Dask's ``KilledWorker`` or Ray's ``WorkerCrashedError``. Raising
    that here threw away every chunk already answered behind it (paid for); each item of
    the failed chunk fails instead, with a :class:`~fixedmodel.errors.WorkerError` whose
    cause is the chunk's exception, and the other chunks' results still come.
    """
    try:
        results = future.result()
    except Exception as broken:
        for index, identifier, _ in chunk:
            failure = WorkerError(
                f"the chunk holding this item failed in the executor: {_pickling.text(broken)}",
                type_name=f"{type(broken).__module__}.{type(broken).__qualname__}",
            )
            failure.__cause__ = broken
            yield batch_result(index, identifier, None, failure)
        return
    for index, identifier, response, error in results:
        yield batch_result(index, identifier, response, error)
