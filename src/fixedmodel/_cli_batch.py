"""``fixedmodel batch``: run a checked OpenAI Batch input file through MODEL into OUTPUT.

Order of work: the paths, the whole input (nothing is sent while any line is wrong), the
model and its credentials, the lock on OUTPUT, then the requests. Each answer or error is
appended to OUTPUT the moment it arrives, inside the call, so whatever stops the job (the
cost cap, Ctrl-C, SIGTERM, a crash in between) every answer received is on disk. A first
Ctrl-C or SIGTERM stops starting lines and lets the calls in flight finish and be written;
a second one abandons them.

``--resume`` sends every line of INPUT without an answer in OUTPUT: lines never run and
lines whose last record is a failure. At the end OUTPUT is rewritten, when it needs to be,
to one record per ``custom_id`` (the last) with no line cut short by a kill. The exit code
and the closing ``request_counts`` summary count every line of the job, not only this run's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from fixedmodel import _cli_input
from fixedmodel._cli_common import (
    EXIT_INTERRUPTED,
    EXIT_NOTHING_SENT,
    EXIT_OK,
    EXIT_SOME_FAILED,
    UsageError,
    bound_defaults,
    redact_url,
)
from fixedmodel._cli_output import (
    OutputLock,
    OutputState,
    RecordWriter,
    answer_record,
    error_record,
    read_state,
    tidy,
)

if TYPE_CHECKING:
    from fixedmodel._bind import BoundACompletion, BoundAEmbedding
    from fixedmodel._protocols import AFixedModelCompletion

# The key that carries a line's custom_id from the request reader to the writing call;
# removed before the request reaches the model.
_CUSTOM_ID = "fixedmodel_custom_id"


def run(args: argparse.Namespace, check_model: Any) -> int:
    """Run ``fixedmodel batch``; ``check_model(model, api_base, mock)`` raises UsageError."""
    _check_paths(args.input, args.output, args.cache)
    with _terminate_as_interrupt(), contextlib.ExitStack() as cleanup:
        return _run_checked(args, check_model, cleanup)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Generator[None, None, None]:
    """SIGTERM raises ``KeyboardInterrupt``, as Ctrl-C does, for the whole run.

    Its default action ends the process where it stands: a run stopped while it copied a
    pipe INPUT, or rewrote OUTPUT at the end, left the temporary file behind. Raised, it
    unwinds through every clean-up. While the requests run, the job takes SIGTERM and
    SIGINT (the calls in flight finish and are written; see ``_listen``).
    Only the main thread can set a handler; elsewhere (``main()`` called from a thread)
    SIGTERM keeps its action.
    """
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except (ValueError, OSError):  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(number: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_checked(args: argparse.Namespace, check_model: Any, cleanup: contextlib.ExitStack) -> int:
    shown = args.input
    body_model = None if args.ignore_body_model else args.model
    max_bytes = args.max_input_mb * _cli_input.BYTES_PER_MB
    try:
        args.input = _regular_input(args.input, max_bytes, cleanup)
        plan, problems = _cli_input.check(
            args.input, body_model, max_requests=args.max_requests, max_bytes=max_bytes
        )
    except OSError as error:
        msg = f"INPUT: cannot read {shown}: {error.strerror}"
        raise UsageError(msg) from None
    if problems:
        for problem in problems[: _cli_input.SHOWN_PROBLEMS]:
            print(f"fixedmodel: {shown} {problem}", file=sys.stderr)
        more = "" if len(problems) <= _cli_input.SHOWN_PROBLEMS else " (more not shown)"
        print(f"fixedmodel: nothing was sent: the input has problems{more}", file=sys.stderr)
        return EXIT_NOTHING_SENT
    check_model(args.model, args.api_base, args.mock_response is not None)
    from fixedmodel import _cli_provider

    if args.provider_batch:
        _cli_provider.check(args)
    lock = OutputLock(args.output)
    try:
        locked = lock.acquire()
    except OSError as error:
        msg = f"OUTPUT: cannot create the lock file {lock.path}: {error.strerror}"
        raise UsageError(msg) from None
    if not locked:
        msg = (
            f"OUTPUT {args.output} is in use by another fixedmodel run "
            f"(it holds {lock.path}); wait for it to end"
        )
        raise UsageError(msg)
    try:
        _cli_provider.check_job(args)  # with the lock held: no job can start meanwhile
        _check_output(args.output, resume=args.resume)
        return asyncio.run(_run(args, plan, body_model))
    finally:
        lock.release()


def _regular_input(source: Path, max_bytes: float, cleanup: contextlib.ExitStack) -> Path:
    """INPUT as a file that can be read twice (checked whole, then sent).

    A pipe or FIFO (``/dev/stdin``, ``<(...)``) can be read once: it is copied to a
    temporary file, removed at the end, copying at most one byte more than ``max_bytes``
    so that the size check still refuses a larger input. Raises OSError.
    """
    if source.is_file():
        return source
    directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="fixedmodel-"))
    copy = Path(directory) / "input.jsonl"
    left = max_bytes + 1
    # Unbuffered: one read takes what the pipe holds, never waiting to fill a block.
    with source.open("rb", buffering=0) as reader, copy.open("wb") as writer:
        while left > 0:
            _wait_readable(reader)
            block = reader.read(int(min(left, _COPY_BLOCK)))
            if not block:
                break
            writer.write(block)
            left -= len(block)
    return copy


_COPY_BLOCK = 1 << 20
_WAKE_EVERY = 0.1  # seconds


def _wait_readable(reader: BinaryIO) -> None:
    """Return once ``reader`` (a pipe) has bytes or has ended, waking every ``_WAKE_EVERY``.

    Python runs a signal's handler between two steps of Python code, or when a blocking
    call is interrupted by it. A SIGTERM landing just before a read of a quiet pipe began
    was seen by neither: the read went on waiting, and the run with it, until the pipe spoke
    again. Waking now and then lets the handler raise (POSIX only: ``select`` takes no pipe
    on Windows, where the read blocks as before). ``select`` refuses a descriptor past its
    range (1024); ``poll`` waits for that one.
    """
    if os.name != "posix":
        return
    try:
        while not select.select([reader], [], [], _WAKE_EVERY)[0]:
            pass
    except ValueError:  # a descriptor of 1024 or more (main() in a process with many files)
        if not hasattr(select, "poll"):
            return  # the read blocks, as on Windows
        poller = select.poll()
        poller.register(reader, select.POLLIN)
        while not poller.poll(int(_WAKE_EVERY * 1000)):
            pass


def _check_paths(source: Path, target: Path, cache: Path | None) -> None:
    """Refuse paths that cannot work, naming the argument, before anything is read."""
    if not source.exists():
        msg = f"INPUT: cannot read {source}: No such file or directory"
        raise UsageError(msg)
    if source.is_dir():
        msg = f"INPUT: {source} is a directory: give the input JSONL file"
        raise UsageError(msg)
    if target.is_dir():
        msg = f"OUTPUT {target} is a directory: give a file path"
        raise UsageError(msg)
    if target.exists() and target.samefile(source):
        msg = f"OUTPUT {target} is the INPUT file: choose another file for the answers"
        raise UsageError(msg)
    if not target.parent.is_dir():
        msg = f"OUTPUT: the directory {target.parent} does not exist"
        raise UsageError(msg)
    if cache is not None and cache.exists() and not cache.is_dir():
        msg = f"--cache: {cache} is not a directory"
        raise UsageError(msg)


def _check_output(target: Path, *, resume: bool) -> None:
    """Refuse an OUTPUT that cannot take the answers; end a line a killed run cut short."""
    if not resume and target.exists() and target.stat().st_size > 0:
        msg = f"OUTPUT {target} is not empty: pass --resume to continue it, or choose another"
        raise UsageError(msg)
    try:
        with target.open("ab") as sink:
            if sink.tell() > 0:
                with target.open("rb") as previous:
                    previous.seek(-1, 2)
                    if previous.read(1) != b"\n":
                        sink.write(b"\n")
    except OSError as error:
        msg = f"OUTPUT: cannot write {target}: {error.strerror}"
        raise UsageError(msg) from None


def _stack(
    args: argparse.Namespace, kind: str
) -> tuple[BoundACompletion | BoundAEmbedding, AFixedModelCompletion]:
    """The bound callable, and it under retries, limits and cache, as the options ask.

    An embedding stack is typed as a completion one here: the lines are untyped JSON, and
    the runner treats both kinds alike.
    """
    from fixedmodel import (
        RateLimit,
        RateLimiter,
        RetryPolicy,
        bind_acompletion,
        bind_aembedding,
        with_cache,
        with_rate_limit,
        with_retries,
    )

    defaults = bound_defaults(args.api_base, args.mock_response)
    bound = (
        bind_acompletion(args.model, **defaults)
        if kind == "completion"
        else bind_aembedding(args.model, **defaults)
    )
    chat = cast("AFixedModelCompletion", bound)
    if args.rpm is not None or args.tpm is not None:
        store: Any = None
        if args.redis_url is not None:
            from fixedmodel import RedisLimiterStore

            store = RedisLimiterStore(args.redis_url)
        limit = RateLimit(requests=args.rpm, tokens=args.tpm, period=60.0)
        chat = with_rate_limit(chat, RateLimiter(limit, store=store, key=args.model))
    chat = with_retries(chat, RetryPolicy(max_attempts=args.max_attempts))
    if args.cache is not None:
        from fixedmodel import DiskCacheStore

        try:
            cache = DiskCacheStore(args.cache)
        except Exception as error:  # diskcache's own errors (a file in the way, no access)
            msg = f"--cache: cannot use {args.cache} as a cache directory: {error}"
            raise UsageError(msg) from None
        chat = with_cache(chat, cache)
    elif args.redis_url is not None:
        from fixedmodel import RedisCacheStore

        try:
            redis_cache = RedisCacheStore(args.redis_url)
        except Exception as error:  # redis-py's URL errors, a missing extra
            msg = f"--redis-url: cannot use {redact_url(args.redis_url)}: {type(error).__name__}"
            raise UsageError(msg) from None
        chat = with_cache(chat, redis_cache)
    return bound, chat


class _Job:
    """One run's moving parts: what stops it, what it spent, where records go."""

    def __init__(self, args: argparse.Namespace, writer: RecordWriter) -> None:
        self.args = args
        self.writer = writer
        self.spent = 0.0
        self.interrupted = False
        self.over_budget = False
        self.abandoned = False
        self.unwritable = False
        self.unpriced = False

    def stop_requested(self) -> bool:
        cap: float | None = self.args.max_cost
        if cap is not None and self.spent >= cap and not self.over_budget:
            self.over_budget = True
            print(
                f"fixedmodel: the cost cap is reached (spent ${self.spent:.6g}): no further "
                "line starts; the calls in flight finish and are written",
                file=sys.stderr,
            )
        return self.interrupted or self.over_budget or self.unwritable or self.unpriced

    def count_cost(self, custom_id: str, response: object) -> None:
        """Add ``response``'s cost to what the run spent; stop when it has none.

        litellm gives no cost for a model it has no price for. Counted as 0, such answers
        never reached ``--max-cost``, and every line was sent whatever the cap. (A name
        litellm does not know can still be priced from the model its provider answers
        with, as for Azure deployments: only an answer without a cost stops the run.)
        """
        from fixedmodel._progress import response_cost, response_priced

        self.spent += response_cost(response)
        capped = self.args.max_cost is not None
        if capped and not self.unpriced and not response_priced(response):
            self.unpriced = True
            print(
                f"fixedmodel: --max-cost: litellm has no price for the answer to line "
                f"{custom_id!r} ({self.args.model}), so the cap cannot count it: no "
                "further line starts; the calls in flight finish and are written",
                file=sys.stderr,
            )

    def record(self, record: dict[str, Any]) -> None:
        """Append ``record`` to OUTPUT; when OUTPUT cannot take it, stop starting lines."""
        try:
            self.writer.write(record)
        except OSError as error:
            if not self.unwritable:
                self.unwritable = True
                print(
                    f"fixedmodel: cannot write OUTPUT {self.args.output}: {error.strerror}: "
                    "no further line starts (answers that cannot be written are lost; "
                    "--resume sends their lines again once OUTPUT can be written)",
                    file=sys.stderr,
                )

    def on_signal(self, main: asyncio.Task[Any]) -> None:
        if not self.interrupted:
            self.interrupted = True
            print(
                "fixedmodel: stopping: the calls in flight finish and are written "
                "(Ctrl-C again abandons them)",
                file=sys.stderr,
            )
        elif not self.abandoned:
            self.abandoned = True
            main.cancel()

    def wrap(self, chat: AFixedModelCompletion) -> AFixedModelCompletion:
        """``chat`` that writes each answer or error to OUTPUT the moment it has it."""
        # The lines' keywords are untyped JSON: called as a plain callable.
        send = cast("Callable[..., Awaitable[object]]", chat)

        async def call(**kwargs: Any) -> object:
            custom_id = str(kwargs.pop(_CUSTOM_ID))
            try:
                response = await send(**kwargs)
            except Exception as error:
                self.record(error_record(custom_id, error))
                raise
            self.record(answer_record(custom_id, response))
            self.count_cost(custom_id, response)
            return response

        return cast("AFixedModelCompletion", call)

    def requests(self, source: Path, body_model: str | None, done: set[str]) -> Iterator[Any]:
        for line in _cli_input.lines(source, body_model):
            if line.custom_id in done:
                continue
            if self.stop_requested():
                return
            yield {**line.request, _CUSTOM_ID: line.custom_id}


def _listen(job: _Job) -> dict[int, Any]:
    """Route SIGINT and SIGTERM to the job; the signals it took, with their handlers before.

    Handlers of Python's own (as ``asyncio.run`` takes SIGINT), not the loop's: the loop's
    ``remove_signal_handler`` sets the signal's default action before the handler it
    replaced can be given back, and a SIGTERM landing in between ended the process where it
    stood (no clean-up; a pipe INPUT's copy left behind). ``signal.signal`` swaps one
    handler for the other at once, both ways.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    taken: dict[int, Any] = {}
    if main is None or sys.platform == "win32":  # the loop took no signal there either
        return taken

    def handler(number: int, frame: object) -> None:
        loop.call_soon_threadsafe(job.on_signal, main)

    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            taken[number] = signal.signal(number, handler)
        except (ValueError, OSError):  # not the main thread
            continue
    return taken


def _unlisten(taken: dict[int, Any]) -> None:
    """Give back the handlers ``_listen`` replaced (one set outside Python: the default)."""
    for number, previous in taken.items():
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(number, signal.SIG_DFL if previous is None else previous)


async def _run(args: argparse.Namespace, plan: _cli_input.Plan, body_model: str | None) -> int:
    from fixedmodel import aiter_batch

    before = read_state(args.output) if args.resume else OutputState()
    done = before.answered
    to_send = sum(1 for custom_id in plan.custom_ids if custom_id not in done)
    bound, chat = _stack(args, plan.kind)
    writer = RecordWriter(args.output)
    job = _Job(args, writer)
    if args.provider_batch:
        return await _provider_batch(args, plan, body_model, bound, chat, writer, job)
    taken = _listen(job)
    try:
        async with bound:
            results = aiter_batch(
                job.wrap(chat),
                job.requests(args.input, body_model, done),
                concurrency=args.concurrency,
                ordered=False,
                total=to_send,
                progress=False if args.no_progress else None,
            )
            async for _ in results:
                pass  # each call wrote its own record
    except asyncio.CancelledError:
        if not job.abandoned:
            raise
    finally:
        _unlisten(taken)
        writer.close()
    return _finish(args.output, plan, job)


async def _provider_batch(
    args: argparse.Namespace,
    plan: _cli_input.Plan,
    body_model: str | None,
    bound: BoundACompletion | BoundAEmbedding,
    chat: AFixedModelCompletion,
    writer: RecordWriter,
    job: _Job,
) -> int:
    """The job through the provider's Batch API (``--provider-batch``)."""
    from fixedmodel import _cli_provider

    try:
        async with bound:
            if not await _cli_provider.run(args, chat, body_model, writer):
                job.unwritable = True
    except (KeyboardInterrupt, asyncio.CancelledError):
        job.interrupted = True
        print(
            "fixedmodel: interrupted; the provider batch keeps running: run the same command "
            "with --resume to collect it",
            file=sys.stderr,
        )
    except ValueError as problem:  # a layer or provider provider_batch cannot drive
        raise UsageError(f"--provider-batch: {problem}") from None
    finally:
        writer.close()
    return _finish(args.output, plan, job)


def _finish(output: Path, plan: _cli_input.Plan, job: _Job) -> int:
    """Tidy OUTPUT, print the job's ``request_counts`` and choose the exit code."""
    state = read_state(output)
    if state.untidy:
        try:
            tidy(output)
        except OSError as error:  # no room for the rewrite: OUTPUT stays as it is
            print(f"fixedmodel: OUTPUT was not tidied: {error.strerror}", file=sys.stderr)
    completed = sum(1 for custom_id in plan.custom_ids if custom_id in state.answered)
    failed = sum(1 for custom_id in plan.custom_ids if custom_id in state.failed)
    total = len(plan.custom_ids)
    counts = {"total": total, "completed": completed, "failed": failed}
    print(json.dumps({"request_counts": counts}), file=sys.stderr)
    if job.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if completed == total else EXIT_SOME_FAILED
