"""The batch runner in the field: leaving a loop, fail_fast, progress that never costs a result,
the bar and callbacks together, and public names that resolve one way."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest

import fixedmodel
from fixedmodel import (
    BatchCancelledError,
    BatchFailure,
    BatchProgress,
    BatchSuccess,
    CompletionRequest,
    MemoryCacheStore,
    abatch,
    aiter_batch,
    batch,
    with_cache,
)
from fixedmodel.testing import Fail, FakeACompletion, FakeCompletion, FakeUsage, Reply


def _requests(count: int) -> list[CompletionRequest]:
    return [{"messages": [{"role": "user", "content": str(i)}]} for i in range(count)]


class Gated:
    """Answers the numbers in ``instant`` at once; the others wait for ``gate``."""

    def __init__(self, instant: set[int], failing: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.instant = instant
        self.failing = failing
        self.gate = asyncio.Event()
        self.started: list[int] = []
        self.answered: list[int] = []
        self.cancelled: list[int] = []

    async def __call__(self, **kwargs: Any) -> Any:
        number = int(kwargs["messages"][0]["content"])
        self.started.append(number)
        try:
            await asyncio.sleep(0)
            if number in self.failing:
                raise ValueError(f"item {number} fails")
            if number not in self.instant:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(number)
            raise
        self.answered.append(number)
        return number


def _request_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and getattr(task.get_coro(), "__qualname__", "") == "_run_one"
    ]


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


# Leaving an aiter_batch loop stops the requests in flight -------------------------------------


async def test_break_cancels_the_requests_in_flight_at_once() -> None:
    fn = Gated(instant={0})
    async for result in aiter_batch(fn, _requests(10), concurrency=8, progress=False):  # type: ignore[call-overload]
        assert result.response == 0
        break
    await asyncio.sleep(0)  # one loop step: the cancellations are delivered
    assert _request_tasks() == []
    assert sorted(fn.cancelled) == list(range(1, 8))
    assert max(fn.started) == 7  # the input after the window was never read


@pytest.mark.parametrize("leave", ["break", "return", "raise"])
async def test_leaving_a_loop_over_a_held_run_stops_it(leave: str) -> None:
    fn = Gated(instant={0})
    run = aiter_batch(fn, _requests(10), concurrency=8, progress=False)  # type: ignore[call-overload]

    async def consume() -> None:
        async for _ in run:
            if leave == "break":
                break
            if leave == "return":
                return
            raise KeyError(leave)

    if leave == "raise":
        with pytest.raises(KeyError):
            await consume()
    else:
        await consume()
    await _settle()
    fn.gate.set()  # had the requests gone on, they would now be answered
    await _settle()
    assert _request_tasks() == []
    assert fn.answered == [0]
    assert sorted(fn.cancelled) == list(range(1, 8))
    assert [r async for r in run] == []  # a stopped run yields nothing more


async def test_aclose_and_async_with_stop_a_run_read_by_anext() -> None:
    fn = Gated(instant={0})
    async with aiter_batch(fn, _requests(10), concurrency=4, progress=False) as run:  # type: ignore[call-overload]
        first = await anext(run)
        assert first.response == 0
    assert _request_tasks() == []
    assert sorted(fn.cancelled) == [1, 2, 3]
    await run.aclose()  # idempotent


async def test_a_run_read_to_the_end_leaves_nothing_behind() -> None:
    fake = FakeACompletion(["a", Fail(400), "c"])
    results = [r async for r in aiter_batch(fake, _requests(3), progress=False)]
    assert [r.ok for r in results] == [True, False, True]
    await _settle()
    assert _request_tasks() == []
    assert [
        t for t in asyncio.all_tasks() if not t.done() and t is not asyncio.current_task()
    ] == []


# fail_fast ----------------------------------------------------------------------------------


async def test_abatch_fail_fast_stops_at_the_first_failure_and_keeps_what_finished() -> None:
    read = 0

    def requests() -> Iterator[CompletionRequest]:
        nonlocal read
        for request in _requests(10):
            read += 1
            yield request

    fn = Gated(instant={0, 1}, failing={2})
    results = await abatch(fn, requests(), concurrency=4, progress=False, fail_fast=True)  # type: ignore[call-overload]
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert isinstance(results[0], BatchSuccess) and results[0].response == 0
    assert isinstance(results[1], BatchSuccess) and results[1].response == 1
    assert isinstance(results[2], BatchFailure) and isinstance(results[2].error, ValueError)
    assert isinstance(results[3], BatchFailure)
    assert isinstance(results[3].error, BatchCancelledError)
    assert fn.cancelled == [3]
    assert read == 4  # nothing read after the failure
    assert _request_tasks() == []


async def test_without_fail_fast_a_failure_stops_nothing() -> None:
    fn = Gated(instant=set(range(10)), failing={2})
    results = await abatch(fn, _requests(10), concurrency=4, progress=False)  # type: ignore[call-overload]
    assert [r.ok for r in results] == [i != 2 for i in range(10)]


async def test_aiter_batch_fail_fast_as_completed_reports_the_rest_as_cancelled() -> None:
    fn = Gated(instant=set(), failing={1})
    run = aiter_batch(
        fn, _requests(10), concurrency=3, ordered=False, fail_fast=True, progress=False
    )  # type: ignore[call-overload]
    results = [r async for r in run]
    assert sorted(r.index for r in results) == [0, 1, 2]
    errors = {r.index: type(r.error) for r in results}
    assert errors == {0: BatchCancelledError, 1: ValueError, 2: BatchCancelledError}


def test_batch_fail_fast_starts_nothing_after_the_first_failure() -> None:
    read = 0

    def requests() -> Iterator[CompletionRequest]:
        nonlocal read
        for request in _requests(10):
            read += 1
            yield request

    fake = FakeCompletion(["a", "b", Fail(400), "d", "e"])
    results = batch(fake, requests(), concurrency=1, progress=False, fail_fast=True)
    assert [r.ok for r in results] == [True, True, False]
    assert read == 3
    assert len(fake.calls) == 3
    error = results[2].error
    assert error is not None
    with pytest.raises(type(error)) as raised:
        results[2].unwrap()
    assert raised.value is error


# A failing callback or bar never costs a result ---------------------------------------------


def _raising_after(count: int) -> Any:
    seen: list[int] = []

    def callback(progress: BatchProgress) -> None:
        seen.append(progress.done)
        if progress.done > count:
            raise ValueError("callback broke")

    callback.seen = seen  # type: ignore[attr-defined]
    return callback


async def test_abatch_keeps_every_result_when_the_callback_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    callback = _raising_after(4)
    fake = FakeACompletion([f"answer {i}" for i in range(10)])
    with caplog.at_level(logging.WARNING, logger="fixedmodel.batch"):
        results = await abatch(fake, _requests(10), concurrency=2, progress=callback)
    assert [r.ok for r in results] == [True] * 10
    assert callback.seen == list(range(1, 11))  # still called after it raised
    warnings = [r for r in caplog.records if r.name == "fixedmodel.batch"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "callback broke" in caplog.text


def test_batch_and_aiter_batch_keep_every_result_too(caplog: pytest.LogCaptureFixture) -> None:
    first, second = _raising_after(0), _raising_after(3)
    fake = FakeCompletion([f"answer {i}" for i in range(10)])
    with caplog.at_level(logging.WARNING, logger="fixedmodel.batch"):
        results = batch(fake, _requests(10), concurrency=3, on_progress=[first, second])
    assert [r.ok for r in results] == [True] * 10
    assert len([r for r in caplog.records if r.name == "fixedmodel.batch"]) == 2  # one each

    async def iterate() -> list[Any]:
        fake = FakeACompletion([f"answer {i}" for i in range(10)])
        run = aiter_batch(fake, _requests(10), progress=False, on_progress=_raising_after(1))
        return [r async for r in run]

    assert len(asyncio.run(iterate())) == 10


def test_a_failing_progress_bar_never_costs_a_result(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import tqdm

    def broken(self: object, n: float = 1) -> None:
        raise OSError("stderr is gone")

    monkeypatch.setattr(tqdm.tqdm, "update", broken)
    fake = FakeCompletion([f"answer {i}" for i in range(5)])
    with caplog.at_level(logging.WARNING, logger="fixedmodel.batch"):
        results = batch(fake, _requests(5), progress=True)
    assert [r.ok for r in results] == [True] * 5
    assert len([r for r in caplog.records if r.name == "fixedmodel.batch"]) == 1


async def test_an_answer_whose_usage_cannot_be_read_is_still_returned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Odd:
        @property
        def usage(self) -> object:
            raise RuntimeError("no usage here")

    async def answer(**kwargs: Any) -> Any:
        return Odd()

    with caplog.at_level(logging.WARNING, logger="fixedmodel.batch"):
        results = await abatch(answer, _requests(3), on_progress=lambda p: None)  # type: ignore[call-overload]
    assert [isinstance(r.response, Odd) for r in results] == [True] * 3
    assert len([r for r in caplog.records if r.name == "fixedmodel.batch"]) == 1


def test_on_progress_refuses_what_is_not_a_callable() -> None:
    fake = FakeCompletion(["never"])
    with pytest.raises(TypeError, match="on_progress"):
        batch(fake, _requests(1), on_progress=[print, 3])  # type: ignore[list-item]
    assert fake.calls == []


# The bar and callbacks together; cache hits on the bar --------------------------------------


def test_bar_and_callbacks_at_once_with_cache_hits_on_the_bar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeCompletion(lambda call: Reply(text="same", usage=FakeUsage(3, 2)))
    chat = with_cache(fake, MemoryCacheStore())
    batch(chat, _requests(3), progress=False)  # fills the cache
    capsys.readouterr()
    first: list[BatchProgress] = []
    second: list[BatchProgress] = []
    results = batch(chat, _requests(3), progress=True, on_progress=[first.append, second.append])
    assert [r.ok for r in results] == [True] * 3
    assert len(fake.calls) == 3  # the second run came from the cache
    assert first == second and first[-1].cache_hits == 3 and first[-1].done == 3
    bar = capsys.readouterr().err
    assert "3/3" in bar
    assert "cache_hits=3" in bar and "failed=0" in bar and "done=3" in bar


async def test_a_callable_progress_and_on_progress_both_hear() -> None:
    heard: list[int] = []
    also: list[int] = []
    fake = FakeACompletion(["a", "b"])
    await abatch(
        fake,
        _requests(2),
        progress=lambda p: heard.append(p.done),
        on_progress=lambda p: also.append(p.done),
    )
    assert heard == also == [1, 2]


# Every public name resolves one way ---------------------------------------------------------


def test_fixedmodel_batch_is_the_function_however_it_is_reached() -> None:
    assert callable(fixedmodel.batch) and fixedmodel.batch is batch
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("fixedmodel.batch")


def test_every_public_name_is_one_object_by_attribute_and_by_import() -> None:
    for name in fixedmodel.__all__:
        try:
            module = importlib.import_module(f"fixedmodel.{name}")
        except ModuleNotFoundError:
            continue  # not a module: reached by attribute only
        assert getattr(fixedmodel, name) is module, name
    # A public submodule is never hidden behind a name of another kind.
    for info in pkgutil.iter_modules(fixedmodel.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"fixedmodel.{info.name}")
        assert getattr(fixedmodel, info.name) is module, info.name


class _Odd(BaseException):
    """Neither an Exception nor a request to stop the program."""


@pytest.mark.parametrize("kind", [asyncio.CancelledError, _Odd, GeneratorExit])
async def test_a_callback_raising_a_base_exception_costs_no_result(
    kind: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    # A CancelledError from the callback turned an answered request into a "stopped" failure
    # counted twice; any other BaseException ended abatch and lost every finished result.
    seen: list[int] = []

    def callback(progress: BatchProgress) -> None:
        seen.append(progress.done)
        if progress.done == 4:
            raise kind()

    fake = FakeACompletion([f"answer {i}" for i in range(10)])
    with caplog.at_level(logging.WARNING, logger="fixedmodel.batch"):
        results = await abatch(fake, _requests(10), concurrency=3, on_progress=callback)
    assert [r.ok for r in results] == [True] * 10
    assert seen == list(range(1, 11))
    assert len([r for r in caplog.records if r.name == "fixedmodel.batch"]) == 1
    fake = FakeCompletion([f"answer {i}" for i in range(10)])
    seen.clear()
    assert [r.ok for r in batch(fake, _requests(10), on_progress=callback)] == [True] * 10


def test_keyboard_interrupt_from_a_callback_still_stops_the_batch() -> None:
    def callback(progress: BatchProgress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch(FakeCompletion(["a", "b"]), _requests(2), concurrency=1, on_progress=callback)


async def test_an_async_callback_is_refused_before_any_request() -> None:
    # An async def callback was called and never awaited: it never ran, and the only sign
    # was a "coroutine was never awaited" RuntimeWarning per request.
    async def counting(progress: BatchProgress) -> None:
        pass

    fake = FakeACompletion(["never"])
    with pytest.raises(TypeError, match=r"on_progress=.*counting"):
        await abatch(fake, _requests(1), on_progress=counting)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"progress=.*counting"):
        await abatch(fake, _requests(1), progress=counting)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="on_progress="):
        batch(FakeCompletion(["never"]), _requests(1), on_progress=[print, counting])  # type: ignore[list-item]
    assert fake.calls == []


async def test_a_callback_returning_a_coroutine_is_logged_once_and_closed(
    caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    async def counting(progress: BatchProgress) -> None:
        pass

    fake = FakeACompletion([f"answer {i}" for i in range(3)])
    with caplog.at_level(logging.WARNING, logger="fixedmodel.batch"):
        results = await abatch(fake, _requests(3), on_progress=lambda p: counting(p))
    assert [r.ok for r in results] == [True] * 3
    assert "returned a coroutine" in caplog.text
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


@pytest.mark.parametrize("stderr", ["none", "closed"])
@pytest.mark.parametrize("progress", [None, True])
def test_a_missing_or_closed_stderr_costs_no_result(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, stderr: str, progress: bool | None
) -> None:
    # With sys.stderr None (pythonw, a service) or closed, batch() raised AttributeError or
    # ValueError before its first request: from isatty(), from tqdm, from logging's last
    # resort writing about the failing bar.
    stream: Any = None
    if stderr == "closed":
        stream = (tmp_path / "stderr").open("w")
        stream.close()
    monkeypatch.setattr("sys.stderr", stream)
    results = batch(FakeCompletion(["a", "b", "c"]), _requests(3), progress=progress)
    assert [r.ok for r in results] == [True] * 3


def _with_a_bad_request(count: int, bad: int, request: object) -> list[Any]:
    requests: list[Any] = list(_requests(count))
    requests[bad] = request
    return requests


_STREAMING = {"messages": [{"role": "user", "content": "x"}], "stream": True}


@pytest.mark.parametrize(("request_", "error"), [(_STREAMING, ValueError), (7, TypeError)])
async def test_a_bad_request_in_a_list_is_refused_before_any_is_sent(
    request_: object, error: type[Exception]
) -> None:
    # Found when read: the six requests before it were sent and paid for, then the error
    # took their results with it.
    requests = _with_a_bad_request(10, 6, request_)
    fake = FakeACompletion([f"answer {i}" for i in range(10)])
    with pytest.raises(error, match="#6"):
        await abatch(fake, requests, concurrency=2)
    assert fake.calls == []
    sync = FakeCompletion([f"answer {i}" for i in range(10)])
    with pytest.raises(error, match="#6"):
        batch(sync, requests, concurrency=2)
    assert sync.calls == []
    with pytest.raises(ValueError, match="ids= ran out at batch request #2"):
        batch(sync, _requests(5), ids=["a", "b"])
    assert sync.calls == []


def test_batch_on_checks_requests_and_ids_as_abatch_does() -> None:
    # batch_on let a stream through to the worker, where it failed the whole chunk, and
    # labelled requests past the end of ids= with their position instead of refusing.
    from concurrent.futures import ThreadPoolExecutor

    from fixedmodel import batch_on, bind_completion

    chat = bind_completion("openai/gpt-x", mock_response="hi")
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ValueError, match="#6 asks for a stream"):
            batch_on(pool, chat, _with_a_bad_request(10, 6, _STREAMING), chunk_size=2)
        results = batch_on(pool, chat, iter(_requests(3)), ids=iter(["a", "b"]), chunk_size=1)
        with pytest.raises(ValueError, match="ids= ran out at batch request #2"):
            list(results)
        worked = batch_on(pool, chat, iter(_requests(3)), ids=iter(["a", "b", "c"]))
        assert [(r.id, r.ok) for r in worked] == [("a", True), ("b", True), ("c", True)]
