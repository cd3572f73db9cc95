"""The batch runner without a network: laziness, bounded memory, progress, misuse."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixedmodel import BatchProgress, CompletionRequest, abatch, aiter_batch, batch
from fixedmodel.testing import Fail, FakeACompletion, FakeCompletion, FakeUsage, Reply

ANSWER = FakeACompletion([Reply(text="x")] * 1)


class Instant:
    """A completion callable that answers at once with one shared response (no allocation)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        await asyncio.sleep(0)
        return kwargs["messages"][0]["content"]


@pytest.mark.heavy  # 100,000 items through our own runner; run at the newest litellm only.
async def test_a_hundred_thousand_requests_are_read_lazily_in_bounded_memory(
    tmp_path: Path,
) -> None:
    produced = 0
    consumed = 0
    ahead = 0

    def requests() -> Iterator[CompletionRequest]:
        nonlocal produced, ahead
        for number in range(100_000):
            produced += 1
            ahead = max(ahead, produced - consumed)
            yield {"messages": [{"role": "user", "content": str(number)}]}

    fn = Instant()
    out = tmp_path / "results.jsonl"
    tracemalloc.start()
    try:
        with out.open("w") as sink:
            async for result in aiter_batch(fn, requests(), concurrency=32, progress=False):  # type: ignore[call-overload]
                consumed += 1
                sink.write(json.dumps({"id": result.id, "answer": result.response}) + "\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fn.calls == 100_000
    assert consumed == 100_000
    # Never more than the in-flight window (4 x concurrency) read ahead of what was consumed.
    assert ahead <= 4 * 32 + 1
    # Python allocations stay small: nothing proportional to the 100,000 items is held.
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    lines = out.read_text().splitlines()
    assert json.loads(lines[-1]) == {"id": "99999", "answer": "99999"}


async def test_results_as_they_complete_and_failures_kept_per_item() -> None:
    fake = FakeACompletion(["a", Fail(400), "c"])
    results = [r async for r in aiter_batch(fake, _three(), ordered=False, progress=False)]
    assert sorted(r.index for r in results) == [0, 1, 2]
    assert [r.ok for r in sorted(results, key=lambda r: r.index)] == [True, False, True]


def _three() -> list[CompletionRequest]:
    return [{"messages": [{"role": "user", "content": str(i)}]} for i in range(3)]


async def test_progress_callback_counts_tokens_cost_and_errors() -> None:
    seen: list[BatchProgress] = []
    fake = FakeACompletion(
        [Reply(text="a", usage=FakeUsage(10, 2)), Fail(500), Reply(text="c", usage=FakeUsage(5, 1))]
    )
    await abatch(fake, _three(), concurrency=1, progress=seen.append)
    last = seen[-1]
    assert (last.done, last.total, last.errors) == (3, 3, 1)
    assert (last.prompt_tokens, last.completion_tokens) == (15, 3)
    assert last.requests_per_second > 0


def test_the_progress_bar_goes_to_stderr_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCompletion(["a", "b", "c"])
    batch(fake, _three(), progress=True)
    assert "3/3" in capsys.readouterr().err


async def test_misuse_is_refused_before_any_call() -> None:
    fake = FakeACompletion(["never"])
    with pytest.raises(ValueError, match="concurrency"):
        aiter_batch(fake, _three(), concurrency=0)
    stream: Any = {"messages": [{"role": "user", "content": "x"}], "stream": True}
    results = abatch(fake, [stream])
    with pytest.raises(ValueError, match="asks for a stream"):
        await results
    with pytest.raises(TypeError, match="must be a dict"):
        await abatch(fake, ["not a dict"])  # type: ignore[list-item]
    assert fake.calls == []


async def test_cancelling_keeps_what_finished_and_cancels_the_rest() -> None:
    started: list[int] = []
    gate = asyncio.Event()

    class Slow:
        async def __call__(self, **kwargs: Any) -> Any:
            number = int(kwargs["messages"][0]["content"])
            started.append(number)
            if number >= 2:
                await gate.wait()  # never set: these are in flight when cancelled
            return number

    kept: list[int] = []
    two_kept = asyncio.Event()

    async def consume() -> None:
        async for result in aiter_batch(Slow(), _ten(), concurrency=4, progress=False):  # type: ignore[call-overload]
            kept.append(result.response)
            if len(kept) == 2:
                two_kept.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(two_kept.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert kept == [0, 1]
    assert max(started) < 10  # input after the window was never read


def _ten() -> list[CompletionRequest]:
    return [{"messages": [{"role": "user", "content": str(i)}]} for i in range(10)]


async def test_a_callable_of_the_wrong_kind_is_refused_before_any_request() -> None:
    sync_fake = FakeCompletion(["never"])
    async_fake = FakeACompletion(["never"])
    with pytest.raises(TypeError, match=r"abatch\(\) needs an async callable"):
        await abatch(sync_fake, _three())  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"aiter_batch\(\) needs an async callable"):
        aiter_batch(sync_fake, _three())  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"batch\(\) needs a synchronous callable"):
        batch(async_fake, _three())  # type: ignore[call-overload]
    assert sync_fake.calls == [] and async_fake.calls == []


async def test_ids_must_cover_every_request() -> None:
    fake = FakeACompletion(["a", "b", "c"])
    with pytest.raises(ValueError, match="ids= ran out at batch request #1"):
        await abatch(fake, _three(), ids=["only-one"], concurrency=1)
