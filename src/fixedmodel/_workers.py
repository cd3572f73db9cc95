"""Running one batch over the worker processes of an executor (a pool, or Dask's workers).

:func:`batch_on` cuts the requests into chunks and hands each chunk to
``executor.submit``: a ``concurrent.futures.ProcessPoolExecutor``, or the executor of a Dask
cluster (``distributed.Client.get_executor()``), whose scheduler places the chunks. fixedmodel
schedules nothing itself. Each worker rebuilds the stack once (it travels pickled; see
``_pickling.py``) and runs its chunks with :func:`~fixedmodel.abatch` or
:func:`~fixedmodel.batch`, so a Redis limiter, cache or budget in the stack is shared
by every worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import pickle
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, cast, overload

from fixedmodel._batch import (
    BatchResult,
    CompletionRequest,
    EmbeddingRequest,
    abatch,
    batch,
    batch_result,
)

if TYPE_CHECKING:
    from litellm.types.utils import EmbeddingResponse, ModelResponse

    from fixedmodel._protocols import (
        AFixedModelCompletion,
        AFixedModelEmbedding,
        FixedModelCompletion,
        FixedModelEmbedding,
    )

__all__ = ["batch_on"]

# In a worker process: the stacks rebuilt so far, by the digest of their pickle, so that a
# worker builds each stack (its connections, its clients) once, not once per chunk.
_stacks: dict[str, Any] = {}

_Chunk = list[tuple[int, str, dict[str, Any]]]


def _stack(payload: bytes, digest: str) -> Any:
    stack = _stacks.get(digest)
    if stack is None:
        stack = _stacks[digest] = pickle.loads(payload)
    return stack


class _SentError:
    """An exception on its way back from a worker: its class, args and attributes.

    litellm's exception classes take required keyword arguments that pickle does not give
    back, so they cannot be unpickled as they are; this rebuilds the same class without
    calling its ``__init__``.
    """

    def __init__(self, error: BaseException) -> None:
        self.kind = type(error)
        self.args = error.args
        self.state = {name: value for name, value in vars(error).items() if _picklable(value)}
        self.text = str(error)

    def revive(self) -> BaseException:
        try:
            error: BaseException = self.kind.__new__(self.kind, *self.args)
            error.args = self.args
            vars(error).update(self.state)
        except Exception:
            return RuntimeError(f"{self.kind.__qualname__}: {self.text}")
        return error


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def _sendable(result: BatchResult[Any], index: int, identifier: str) -> tuple[Any, ...]:
    error = None if result.error is None else _SentError(result.error)
    return (index, identifier, result.response, error)


def _run_chunk(payload: bytes, digest: str, chunk: _Chunk, concurrency: int) -> list[Any]:
    """In a worker: answer one chunk with the rebuilt stack; results in chunk order."""
    # Typed as a completion stack: the requests arrived as plain dicts, and the runner
    # treats both kinds alike.
    stack = _stack(payload, digest)
    requests = [cast("CompletionRequest", request) for _, _, request in chunk]
    if inspect.iscoroutinefunction(type(stack).__call__) or inspect.iscoroutinefunction(stack):

        async def run() -> list[BatchResult[ModelResponse]]:
            try:
                return await abatch(
                    cast("AFixedModelCompletion", stack),
                    requests,
                    concurrency=concurrency,
                    progress=False,
                )
            finally:
                closer = getattr(stack, "aclose", None)
                if closer is not None:
                    await closer()  # the loop ends with the chunk: release its clients

        results = asyncio.run(run())
    else:
        results = batch(
            cast("FixedModelCompletion", stack), requests, concurrency=concurrency, progress=False
        )
    return [
        _sendable(result, index, identifier)
        for result, (index, identifier, _) in zip(results, chunk, strict=True)
    ]


def _chunks(requests: Iterable[Any], ids: Iterable[str] | None, size: int) -> Iterator[_Chunk]:
    given = iter(ids) if ids is not None else None
    chunk: _Chunk = []
    for index, given_request in enumerate(cast("Iterable[object]", requests)):
        if not isinstance(given_request, dict):
            kind = type(given_request).__name__
            msg = f"batch request #{index} must be a dict of keywords, got {kind}"
            raise TypeError(msg)
        request = cast("dict[str, Any]", given_request)
        identifier = next(given, None) if given is not None else None
        chunk.append((index, str(index) if identifier is None else identifier, request))
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
        executor: Where chunks run: a ``concurrent.futures.ProcessPoolExecutor``, or a Dask
            cluster's ``client.get_executor()`` (``pip install 'fixedmodel[dask]'``).
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
        litellm exception of a failed request rebuilt in this process.

    Raises:
        TypeError: ``fn`` cannot be pickled (the message names what holds in-process state),
            or a request is not a dict.
        ValueError: A size is not an int >= 1.
    """
    size = _positive("chunk_size", chunk_size)
    per_worker = _positive("concurrency", concurrency)
    ahead = _positive("pending_chunks", pending_chunks)
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
    pending: deque[Future[list[Any]]] = deque()
    try:
        for chunk in chunks:
            pending.append(executor.submit(_run_chunk, payload, digest, chunk, concurrency))
            if len(pending) >= ahead:
                yield from _received(pending.popleft())
        while pending:
            yield from _received(pending.popleft())
    finally:
        for future in pending:
            future.cancel()


def _received(future: Future[list[Any]]) -> Iterator[BatchResult[Any]]:
    for index, identifier, response, sent in future.result():
        error = None if sent is None else cast("_SentError", sent).revive()
        yield batch_result(index, identifier, response, error)
