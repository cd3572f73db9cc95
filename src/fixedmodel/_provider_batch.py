"""The same batch through the provider's Batch API: about half the price, up to a day's wait.

:func:`provider_batch` takes the callable the application already calls (a stack over
``bind_acompletion`` or ``bind_aembedding``) and requests like :func:`~fixedmodel.abatch`'s,
writes each as the line litellm would send live, uploads the lines (split at the provider's
limits), starts one batch per file, polls until they end, and returns one
:class:`~fixedmodel.BatchResult` per request in input order: the answer a live call would
have returned, priced at the provider's batch rate, or the exception it would have raised.

A ``state`` file makes the job survive a crash: called again with the same state, it finds
the files and batches it had made (at the provider, by name and metadata, for a step that a
kill interrupted) and collects them, uploading and paying nothing twice. Lines that an
expired or cancelled batch left unanswered go into a new batch (``max_rounds``).

Layers of the stack: ``with_cache`` applies (answered requests are not sent; every answer is
stored as a live one would be), and so does ``with_budget`` (each line reserves its worst
case at the batch price and is settled from its usage; see ``_batch_budget.py``). Routing
that picks another model per request (``with_fallbacks``, ``with_load_balancing``) cannot
apply to one batch and is refused, naming the layer. Per-request layers (``with_retries``,
``with_rate_limit``, logging, metrics, tracing) are passed over: a batch makes no live
requests for them to govern or record.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, overload

from fixedmodel._batch import CompletionRequest, EmbeddingRequest
from fixedmodel._batch_api import BatchAPI
from fixedmodel._batch_budget import BatchBudget
from fixedmodel._batch_lines import LineFormat, LineOutcome, ProviderBatchLineError, read_line
from fixedmodel._batch_result import BatchFailure, BatchResult, BatchSuccess
from fixedmodel._batch_run import aitems
from fixedmodel._batch_state import JobState, Part, parts_folder
from fixedmodel._progress import Progress, ProgressCallback
from fixedmodel.middleware._call import RequestKind, Wrapper

if TYPE_CHECKING:
    import os

    from litellm.types.utils import EmbeddingResponse, ModelResponse

    from fixedmodel._protocols import AFixedModelCompletion, AFixedModelEmbedding
    from fixedmodel.middleware.cache import AsyncCache

__all__ = ["provider_batch"]

_log = logging.getLogger("fixedmodel.provider_batch")

MAX_LINES_PER_FILE = 50_000
"""OpenAI's limit of requests in one batch input file (Batch API guide, "Rate limits")."""
MAX_BYTES_PER_FILE = 200 * 1024 * 1024
"""OpenAI's limit of a batch input file's size: 200 MB (Batch API guide)."""
_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
_REFUSED = {
    "_Fallbacks": "with_fallbacks (a batch goes to one model)",
    "_Balanced": "with_load_balancing (a batch goes to one deployment)",
}


class _Stack:
    """What ``provider_batch`` needs of a stack: its bound object, kind and cache layer."""

    def __init__(self, fn: object) -> None:
        from fixedmodel._bind import BoundACompletion, BoundAEmbedding
        from fixedmodel.middleware.cache import AsyncCache
        from fixedmodel.routing.budget import _AsyncBudgeted  # pyright: ignore[reportPrivateUsage]

        self.cache: AsyncCache | None = None
        self.budget: _AsyncBudgeted | None = None
        layer = fn
        while isinstance(layer, Wrapper):
            for base in type(layer).__mro__:
                if base.__name__ in _REFUSED and base.__module__.startswith("fixedmodel."):
                    msg = f"provider_batch() cannot run through {_REFUSED[base.__name__]}"
                    raise ValueError(msg)
            if isinstance(layer, AsyncCache) and self.cache is None:
                self.cache = layer
            if isinstance(layer, _AsyncBudgeted) and self.budget is None:
                self.budget = layer
            layer = layer._inner  # pyright: ignore[reportPrivateUsage]
        if isinstance(layer, BoundACompletion):
            self.kind: RequestKind = "completion"
        elif isinstance(layer, BoundAEmbedding):
            self.kind = "embedding"
        else:
            msg = (
                "provider_batch() needs a stack over bind_acompletion() or bind_aembedding(), "
                f"got {fn!r}"
            )
            raise TypeError(msg)
        self.bound: object = layer


class _Item:
    __slots__ = ("cache_key", "custom_id", "line", "worst")

    def __init__(
        self, custom_id: str, line: bytes, cache_key: str | None, worst: tuple[int, int]
    ) -> None:
        self.custom_id = custom_id
        self.line = line
        self.cache_key = cache_key
        self.worst = worst  # (nano-USD, tokens) a budget reserves for it


@overload
async def provider_batch(
    fn: AFixedModelCompletion,
    requests: Iterable[CompletionRequest] | AsyncIterable[CompletionRequest],
    *,
    state: str | os.PathLike[str],
    poll_interval: float = ...,
    progress: bool | ProgressCallback | None = ...,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = ...,
    ids: Iterable[str] | None = ...,
    max_rounds: int = ...,
    max_lines_per_file: int = ...,
    max_bytes_per_file: int = ...,
) -> list[BatchResult[ModelResponse]]: ...
@overload
async def provider_batch(
    fn: AFixedModelEmbedding,
    requests: Iterable[EmbeddingRequest] | AsyncIterable[EmbeddingRequest],
    *,
    state: str | os.PathLike[str],
    poll_interval: float = ...,
    progress: bool | ProgressCallback | None = ...,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = ...,
    ids: Iterable[str] | None = ...,
    max_rounds: int = ...,
    max_lines_per_file: int = ...,
    max_bytes_per_file: int = ...,
) -> list[BatchResult[EmbeddingResponse]]: ...
async def provider_batch(
    fn: AFixedModelCompletion | AFixedModelEmbedding,
    requests: Iterable[Any] | AsyncIterable[Any],
    *,
    state: str | os.PathLike[str],
    poll_interval: float = 30.0,
    progress: bool | ProgressCallback | None = None,
    on_progress: ProgressCallback | Sequence[ProgressCallback] | None = None,
    ids: Iterable[str] | None = None,
    max_rounds: int = 3,
    max_lines_per_file: int = MAX_LINES_PER_FILE,
    max_bytes_per_file: int = MAX_BYTES_PER_FILE,
) -> list[BatchResult[Any]]:
    """Run ``requests`` as the provider's batch job; one result per request, in input order.

    Args:
        fn: A stack over ``bind_acompletion`` or ``bind_aembedding`` for OpenAI or Azure
            OpenAI (see the module docstring for the layers that apply).
        requests: Request dicts, as for :func:`~fixedmodel.abatch` (no ``stream``); read
            once, lazily.
        state: Path of the job's state file (created; a folder ``STATE.parts`` beside it
            keeps the uploaded lines). The same path resumes the job after a crash.
        poll_interval: Seconds between two looks at a running batch.
        progress: A progress bar (True; default: only on a terminal), a callback called
            with a :class:`~fixedmodel.BatchProgress` per finished request, or False. While
            the provider works, the bar shows its status and the callbacks get its request
            counts (``provider_status``, ``provider_completed``, ``provider_failed``).
        on_progress: Callbacks called like a ``progress`` callback, beside the bar.
        ids: One ``custom_id`` per request; default ``"0"``, ``"1"``, ...
        max_rounds: Batches in a row for the lines that an ``expired`` or ``cancelled``
            batch left unanswered; past them those lines fail with
            :class:`~fixedmodel.ProviderBatchLineError`.
        max_lines_per_file: Lines per uploaded file (OpenAI: at most 50,000).
        max_bytes_per_file: Bytes per uploaded file (OpenAI: at most 200 MB).

    Returns:
        One :class:`~fixedmodel.BatchResult` per request: ``response`` as a live call returns
        it (``_hidden_params["response_cost"]`` at the batch price, in USD), or ``error``, the
        litellm exception a live call raises for the line's status and error body (or
        :class:`~fixedmodel.ProviderBatchLineError` for a line the provider never ran).

    Raises:
        TypeError: ``fn`` is not a stack over an async bound object.
        ValueError: A layer of the stack cannot apply to a batch job, the provider has no
            Batch API fixedmodel drives, two requests share a ``custom_id``, a limit is
            below 1, or ``state`` was made for other requests or another model.
        asyncio.CancelledError: The job was interrupted while waiting; the batches keep
            running at the provider and the same call with the same ``state`` collects them.
    """
    _check_count("max_rounds", max_rounds)
    _check_count("max_lines_per_file", max_lines_per_file)
    _check_count("max_bytes_per_file", max_bytes_per_file)
    if not poll_interval >= 0:
        msg = f"provider_batch(): poll_interval must be >= 0 seconds, got {poll_interval!r}"
        raise ValueError(msg)
    stack = _Stack(fn)
    lines = LineFormat(stack.bound, stack.kind)
    api = BatchAPI(lines.provider, lines.connection)
    try:
        job = _Job(stack, lines, api, Path(state), poll_interval, max_rounds)
        items = await job.read(requests, ids)
        show = Progress(progress, len(items), on_progress)
        try:
            return await job.run(items, show, (max_lines_per_file, max_bytes_per_file))
        finally:
            show.close()
    finally:
        await api.aclose()


def _check_count(name: str, value: object) -> None:
    """Refuse a limit that is not an int >= 1 (untyped callers pass anything)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"provider_batch(): {name} must be an int >= 1, got {value!r}"
        raise ValueError(msg)


class _Job:
    """One provider batch job: its lines, its state and its results."""

    def __init__(
        self,
        stack: _Stack,
        lines: LineFormat,
        api: BatchAPI,
        path: Path,
        poll_interval: float,
        max_rounds: int,
    ) -> None:
        self._stack = stack
        self._lines = lines
        self._api = api
        self._path = path
        self._poll = poll_interval
        self._max_rounds = max_rounds
        self._state: JobState | None = None
        self._results: dict[int, BatchResult[Any]] = {}
        self._index: dict[str, int] = {}
        # Files and failures of the batches that ended, by part name (read once per run).
        self._files: dict[str, tuple[str | None, str | None]] = {}
        self._failures: dict[str, tuple[str, str] | None] = {}
        self._seen: dict[str, Any] = {}  # The last look at each part's batch.
        self._budget: BatchBudget | None = None
        if stack.budget is not None:
            self._budget = BatchBudget(stack.budget, lines.provider_model, lines.provider)
        self._unsettled: list[str] = []  # Failed lines whose reservation is to be given back.
        self._progress: Progress | None = None

    async def read(
        self, requests: Iterable[Any] | AsyncIterable[Any], ids: Iterable[str] | None
    ) -> list[_Item]:
        """Build every request's line (and cache key), refusing repeated ids."""
        cache = self._stack.cache
        items: list[_Item] = []
        async for index, custom_id, kwargs in aitems(requests, ids):
            if custom_id in self._index:
                first = self._index[custom_id]
                msg = f"batch requests #{first} and #{index} share the custom_id {custom_id!r}"
                raise ValueError(msg)
            self._index[custom_id] = index
            key: str | None = None
            if cache is not None:
                found = cache._request(kwargs)  # pyright: ignore[reportPrivateUsage]
                key = found.key if found is not None else None
            worst = (0, 0) if self._budget is None else self._budget.worst_case(kwargs)
            items.append(_Item(custom_id, self._lines.line(custom_id, kwargs), key, worst))
        return items

    async def run(
        self, items: list[_Item], progress: Progress, limits: tuple[int, int]
    ) -> list[BatchResult[Any]]:
        """Answer every item from the cache or the provider; the results in input order."""
        self._progress = progress
        state = self._open(items)
        batched = {
            cid for parts in state.rounds for part in parts for cid in self._ids_of(state, part)
        }
        for index, item in enumerate(items):
            if item.custom_id not in batched:
                await self._from_cache(index, item, progress)
        missing = [i for i in items if self._index[i.custom_id] not in self._results]
        missing = [i for i in missing if i.custom_id not in batched]
        try:
            return await self._run(state, items, missing, progress, limits)
        finally:
            if self._budget is not None:
                await self._budget.release()

    async def _run(
        self,
        state: JobState,
        items: list[_Item],
        missing: list[_Item],
        progress: Progress,
        limits: tuple[int, int],
    ) -> list[BatchResult[Any]]:
        budget = self._budget
        if budget is not None:
            allowed: list[_Item] = []
            for item in missing:
                refusal = await budget.reserve(item.custom_id, *item.worst)
                if refusal is None:
                    allowed.append(item)
                else:  # Not uploaded: the budget refused it before anything was sent.
                    self._fail(item, refusal, progress)
            missing = allowed
        if missing:
            self._add_round(state, missing, limits)
        done_rounds = 0
        while done_rounds < len(state.rounds):
            parts = state.rounds[done_rounds]
            await asyncio.gather(*(self._start(state, part) for part in parts))
            await self._wait(state, parts)
            unanswered: list[_Item] = []
            for part in parts:
                unanswered.extend(await self._collect(state, part, items, progress))
            await self._release_failed()
            done_rounds += 1
            if unanswered and done_rounds == len(state.rounds):
                if len(state.rounds) < self._max_rounds:
                    self._add_round(state, unanswered, limits)
                else:
                    for item in unanswered:
                        self._fail(item, self._pending_error(item), progress)
        for index, item in enumerate(items):
            if index not in self._results:  # Absent from every file of its batch.
                error = ProviderBatchLineError(
                    item.custom_id, "missing", "the batch's files hold no line for this request"
                )
                self._fail(item, error, progress)
        await self._release_failed()
        return [self._results[i] for i in range(len(items))]

    async def _release_failed(self) -> None:
        """Give back the reservations of the lines that failed (providers bill no error)."""
        failed, self._unsettled = self._unsettled, []
        if self._budget is not None:
            for custom_id in failed:
                await self._budget.settle(custom_id, None)

    # -- state ---------------------------------------------------------------------------

    def _open(self, items: list[_Item]) -> JobState:
        digest = hashlib.sha256(self._lines.model.encode())
        for item in items:
            digest.update(item.line)
        lines = self._lines
        found = JobState.load(self._path)
        if found is None:
            state = JobState.new(
                lines.model, lines.provider, lines.endpoint, digest.hexdigest(), len(items)
            )
        else:
            if found.model != lines.model or found.provider != lines.provider:
                msg = (
                    f"{self._path} is the state of a job for {found.provider}/{found.model}, "
                    f"not {lines.provider}/{lines.model}; use another state path"
                )
                raise ValueError(msg)
            if found.digest != digest.hexdigest() or found.count != len(items):
                msg = (
                    f"{self._path} is the state of a job over other requests ({found.count} "
                    f"then, {len(items)} now, or other contents); use another state path"
                )
                raise ValueError(msg)
            state = found
            _log.info("provider batch job %s: resuming from %s", state.job, self._path)
        self._state = state
        return state

    def _save(self, state: JobState) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        state.save(self._path)

    def _ids_of(self, state: JobState, part: Part) -> list[str]:
        path = state.part_path(self._path, part)
        return [read_line(raw).custom_id for raw in path.read_bytes().splitlines() if raw.strip()]

    def _add_round(self, state: JobState, items: list[_Item], limits: tuple[int, int]) -> None:
        """Split ``items`` into part files of at most ``limits`` (lines, bytes); record them."""
        max_lines, max_bytes = limits
        number = len(state.rounds)
        folder = parts_folder(self._path)
        folder.mkdir(parents=True, exist_ok=True)
        parts: list[Part] = []
        chunk: list[bytes] = []
        size = 0

        def flush() -> None:
            part = Part(f"fixedmodel-{state.job}-r{number}-p{len(parts)}.jsonl", len(chunk))
            state.part_path(self._path, part).write_bytes(b"".join(chunk))
            parts.append(part)

        for item in items:
            if len(item.line) > max_bytes:
                msg = (
                    f"batch request {item.custom_id!r} is {len(item.line)} bytes as a line, "
                    f"over max_bytes_per_file={max_bytes}"
                )
                raise ValueError(msg)
            if chunk and (len(chunk) >= max_lines or size + len(item.line) > max_bytes):
                flush()
                chunk, size = [], 0
            chunk.append(item.line)
            size += len(item.line)
        if chunk:
            flush()
        state.rounds.append(parts)
        self._save(state)

    # -- provider ------------------------------------------------------------------------

    def _metadata(self, state: JobState, part: Part) -> dict[str, str]:
        return {"fixedmodel_job": state.job, "fixedmodel_part": part.name}

    async def _start(self, state: JobState, part: Part) -> None:
        """Upload the part and create its batch, unless the provider has them already."""
        if part.file_id is None:
            part.file_id = await self._api.find_file(part.name)
            if part.file_id is None:
                part.file_id = await self._api.upload(part.name, state.part_path(self._path, part))
            self._save(state)
        if part.batch_id is None:
            metadata = self._metadata(state, part)
            part.batch_id = await self._api.find_batch(part.file_id, metadata)
            if part.batch_id is None:
                part.batch_id = await self._api.create(part.file_id, state.endpoint, metadata)
            self._save(state)
            _log.info(
                "provider batch job %s: batch %s over %d lines",
                state.job,
                part.batch_id,
                part.lines,
            )

    async def _wait(self, state: JobState, parts: list[Part]) -> None:
        """Poll the parts' batches until each has ended."""
        try:
            while True:
                running = [p for p in parts if p.ended is None]
                if not running:
                    return
                for part in running:
                    batch = await self._api.retrieve(cast("str", part.batch_id))
                    self._seen[part.name] = batch
                    if batch.status in _ENDED:
                        part.ended = batch.status
                        self._files[part.name] = (batch.output_file_id, batch.error_file_id)
                        self._failures[part.name] = _batch_errors(batch)
                        self._save(state)
                self._report(parts)
                if any(p.ended is None for p in parts):
                    await asyncio.sleep(self._poll)
        except asyncio.CancelledError:
            waiting = [p.batch_id for p in parts if p.ended is None]
            _log.warning(
                "provider batch job %s interrupted: batches %s keep running at %s. Call "
                "provider_batch() again with state=%r to collect them (nothing is sent twice), "
                "or cancel them at the provider (batches.cancel).",
                state.job,
                ", ".join(str(b) for b in waiting),
                self._api.provider,
                str(self._path),
            )
            raise

    def _report(self, parts: list[Part]) -> None:
        """Hand the provider's status and request counts of ``parts`` to the progress."""
        seen = [self._seen[p.name] for p in parts if p.name in self._seen]
        if not seen or self._progress is None:
            return
        order = ("validating", "in_progress", "finalizing", "cancelling")
        statuses = [b.status for b in seen]
        status = min(statuses, key=lambda s: order.index(s) if s in order else len(order))
        counts = [b.request_counts for b in seen if b.request_counts is not None]
        completed = sum(c.completed for c in counts)
        failed = sum(c.failed for c in counts)
        self._progress.provider(status, completed, failed)

    async def _collect(
        self, state: JobState, part: Part, items: list[_Item], progress: Progress
    ) -> list[_Item]:
        """Read the part's output and error files into results; the items left unanswered."""
        if part.name not in self._files:  # Ended in an earlier run: look again for its files.
            batch = await self._api.retrieve(cast("str", part.batch_id))
            self._files[part.name] = (batch.output_file_id, batch.error_file_id)
            self._failures[part.name] = _batch_errors(batch)
        output, errors = self._files[part.name]
        seen: set[str] = set()
        unanswered: list[_Item] = []
        for file_id in (output, errors):
            if file_id is None:
                continue
            async for raw in self._api.lines(file_id):
                outcome = read_line(raw)
                index = self._index.get(outcome.custom_id)
                if index is None or outcome.custom_id in seen:
                    continue  # Not ours, or a repeat: the first line of an id counts.
                seen.add(outcome.custom_id)
                item = items[index]
                if outcome.unanswered and _retryable(outcome):
                    unanswered.append(item)
                else:
                    await self._settle(index, item, outcome, progress)
        mine = self._ids_of(state, part)
        failure = self._failures.get(part.name)
        for custom_id in mine:
            if custom_id in seen:
                continue
            item = items[self._index[custom_id]]
            if failure is not None:  # The whole batch failed validation at the provider.
                self._fail(item, ProviderBatchLineError(custom_id, *failure), progress)
            else:  # Cancelled or expired before its turn, without an error line.
                unanswered.append(item)
        return unanswered

    # -- results -------------------------------------------------------------------------

    async def _from_cache(self, index: int, item: _Item, progress: Progress) -> None:
        cache = self._stack.cache
        if cache is None or item.cache_key is None:
            return
        kind = self._stack.kind
        template = await cache._lookup(item.cache_key, kind)  # pyright: ignore[reportPrivateUsage]
        if template is None:
            return
        response = cache._hit(template, None)  # pyright: ignore[reportPrivateUsage]
        self._results[index] = BatchSuccess(index, item.custom_id, response)
        progress.answered(response)

    async def _settle(
        self, index: int, item: _Item, outcome: LineOutcome, progress: Progress
    ) -> None:
        if not outcome.ok or outcome.body is None:
            self._fail(item, self._lines.error(outcome), progress)
            return
        try:
            response = self._lines.answer(outcome.body)
        except Exception as exc:  # A body litellm cannot rebuild: that line failed.
            self._fail(item, exc, progress)
            return
        self._results[index] = BatchSuccess(index, item.custom_id, response)
        progress.answered(response)
        if self._budget is not None:
            await self._budget.settle(item.custom_id, response)
        await self._store(item, response)

    async def _store(self, item: _Item, response: object) -> None:
        cache = self._stack.cache
        if cache is None or item.cache_key is None:
            return
        entry, _ = cache._prepare(self._stack.kind, response)  # pyright: ignore[reportPrivateUsage]
        if entry is None:
            return
        try:
            await cache.store.aset(item.cache_key, entry, cache._ttl)  # pyright: ignore[reportPrivateUsage]
        except Exception as exc:  # A store failure must never cost the answer.
            cache._store_failed("aset", exc)  # pyright: ignore[reportPrivateUsage]

    def _fail(self, item: _Item, error: BaseException, progress: Progress) -> None:
        index = self._index[item.custom_id]
        if index in self._results:
            return
        self._results[index] = BatchFailure(index, item.custom_id, error)
        self._unsettled.append(item.custom_id)
        progress.failed()

    def _pending_error(self, item: _Item) -> BaseException:
        rounds = self._max_rounds
        return ProviderBatchLineError(
            item.custom_id,
            "batch_expired",
            f"not answered in {rounds} batch round(s) (max_rounds={rounds})",
        )


def _batch_errors(batch: Any) -> tuple[str, str] | None:
    """A failed batch's first error (code, message), or None for a batch that ran."""
    if batch.status != "failed":
        return None
    errors: Any = getattr(batch, "errors", None)
    data: Any = getattr(errors, "data", None) or []
    if data:
        first = data[0]
        return str(first.code or "batch_failed"), str(first.message or "the batch failed")
    return "batch_failed", "the provider failed the batch without saying why"


def _retryable(outcome: LineOutcome) -> bool:
    """A line that expired or was cancelled before it ran: worth another batch."""
    code = (outcome.error or {}).get("code")
    return code in ("batch_expired", "batch_cancelled", None)
