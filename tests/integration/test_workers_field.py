"""batch_on in the field: failed items never break a pool, and workers keep their stacks.

- an item that fails on every callable of a fallback chain comes back as its litellm
  exception, with every cause, and the pool goes on (it used to break: the error carried
  causes that pickled but did not unpickle);
- an error that cannot come back as itself comes back as a ``WorkerError`` stand-in;
- a worker never closes its stack between chunks (closing waited for litellm's logging
  worker, seconds per chunk), and closes it once when its process exits, without warnings;
- a Dask task raising a 429 gives the 429 in the driver.
"""

from __future__ import annotations

import builtins
import hashlib
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import litellm
import pytest

from fixedmodel import (
    RetryPolicy,
    batch_on,
    bind_acompletion,
    errors,
    fallback_causes,
    with_fallbacks,
    with_retries,
)
from fixedmodel._workers import _run_chunk, close_worker
from fixedmodel.middleware._errors import retry_after
from fixedmodel.testing.server import Fault, OpenAIServer
from tests.unit.test_exception_pickling import (
    ShapeshiftingError,
    UnrebuildableError,
    raise_rate_limit,
)

# Starts other interpreters or engines; run at the newest litellm only (see scripts/test.sh).
pytestmark = pytest.mark.heavy

# ExceptionGroup is 3.11+; the tests using it are skipped before.
_ExceptionGroup: Any = getattr(builtins, "ExceptionGroup", None)

MESSAGES_OF = [[{"role": "user", "content": f"item {i}"}] for i in range(3)]


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _once(bound: Any) -> Any:
    """One request per call: no retries (the openai SDK would honour Retry-After twice)."""
    return with_retries(bound, RetryPolicy(max_attempts=1))


def test_an_item_failing_on_every_fallback_leaves_the_pool_whole(
    pool: ProcessPoolExecutor, server: OpenAIServer
) -> None:
    first = _once(bind_acompletion("openai/first", api_base=server.base_url, api_key="k"))
    second = _once(bind_acompletion("openai/second", api_base=server.base_url, api_key="k"))
    # Only the last model gives retry advice: advice makes with_fallbacks skip a model for
    # that long, which would fail the chunk's other items if both gave it.
    server.fault_rule = lambda body: (
        Fault.status(503, retry_after=3 if body["model"] == "second" else None)
        if body["messages"][0]["content"] == "item 1"
        else None
    )
    requests: list[Any] = [{"messages": messages} for messages in MESSAGES_OF]
    results = list(batch_on(pool, with_fallbacks(first, second), requests, chunk_size=3))
    assert [result.ok for result in results] == [True, False, True]
    error = results[1].error
    assert isinstance(error, litellm.ServiceUnavailableError)
    assert error.status_code == 503
    assert retry_after(error, now=0.0) == 3.0
    assert [type(cause) for cause in fallback_causes(error)] == [
        litellm.ServiceUnavailableError,
        litellm.ServiceUnavailableError,
    ]
    assert any("fallback_causes" in note for note in error.__notes__)
    assert pool.submit(int, "5").result() == 5  # the pool still works


class Picky:
    """An async stack that answers, or raises what its request names; it pickles by value."""

    model = "openai/picky"

    async def __call__(self, **kwargs: Any) -> litellm.ModelResponse:
        content = kwargs["messages"][0]["content"]
        if content == "unrebuildable":
            error = UnrebuildableError("the provider's own error type")
            error.status_code = 429  # type: ignore[attr-defined]
            error.add_note("from Picky")
            raise error
        if content == "budget":
            raise litellm.BudgetExceededError(current_cost=3.0, max_budget=1.0)
        if content == "shapeshifter":  # pickles to a string
            raise ShapeshiftingError("shifted")
        if content == "group":  # one member travels, one cannot
            budget = litellm.BudgetExceededError(current_cost=3.0, max_budget=1.0)
            raise _ExceptionGroup("both failed", [budget, UnrebuildableError("odd")])
        return litellm.ModelResponse(model=self.model)


def test_an_error_that_cannot_come_back_as_itself_comes_back_as_a_stand_in(
    pool: ProcessPoolExecutor,
) -> None:
    contents = ["fine", "unrebuildable", "budget", "fine", "shapeshifter"]
    requests: list[Any] = [{"messages": [{"role": "user", "content": c}]} for c in contents]
    results = list(batch_on(pool, Picky(), requests, chunk_size=5))
    assert [result.ok for result in results] == [True, False, False, True, False]
    # An error whose own __reduce__ gives no exception came back as that (a str).
    shifted = results[4].error
    assert isinstance(shifted, errors.WorkerError)
    assert shifted.type_name.endswith("ShapeshiftingError")
    stand_in = results[1].error
    assert isinstance(stand_in, errors.WorkerError)
    assert stand_in.type_name.endswith("UnrebuildableError")
    assert stand_in.status_code == 429
    assert stand_in.__notes__ == ["from Picky"]
    budget = results[2].error
    assert isinstance(budget, litellm.BudgetExceededError)  # travels as itself
    assert (budget.current_cost, budget.max_budget) == (3.0, 1.0)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is 3.11+")
def test_a_group_with_a_member_that_cannot_travel_keeps_the_others(
    pool: ProcessPoolExecutor,
) -> None:
    # The whole group came back as one WorkerError: the budget error beside the odd member
    # lost its type and fields.
    contents = ["fine", "group", "fine"]
    requests: list[Any] = [{"messages": [{"role": "user", "content": c}]} for c in contents]
    results = list(batch_on(pool, Picky(), requests, chunk_size=3))
    assert [result.ok for result in results] == [True, False, True]
    group = results[1].error
    assert isinstance(group, _ExceptionGroup)
    budget, odd = group.exceptions
    assert isinstance(budget, litellm.BudgetExceededError)
    assert (budget.current_cost, budget.max_budget) == (3.0, 1.0)
    assert isinstance(odd, errors.WorkerError) and odd.type_name.endswith("UnrebuildableError")


# The worker's stack lives as long as the worker -----------------------------------------

CLOSES: list[str] = []


class Recording:
    """An async stack that records its closes (in this process: the test calls the worker)."""

    async def __call__(self, **kwargs: Any) -> litellm.ModelResponse:
        return litellm.ModelResponse(model="openai/recording")

    async def aclose(self) -> None:
        CLOSES.append("aclose")

    def close(self) -> None:  # a sync close on an async stack must not be called either
        CLOSES.append("close")


def test_chunks_do_not_close_the_stack_and_the_worker_closes_it_once() -> None:
    payload = pickle.dumps(Recording())
    digest = hashlib.sha256(payload).hexdigest()
    CLOSES.clear()
    try:
        for first in range(0, 12, 3):
            chunk = [(i, str(i), {"messages": MESSAGES_OF[0]}) for i in range(first, first + 3)]
            sent = _run_chunk(payload, digest, chunk, 2)
            assert [item[0] for item in sent] == [i for i, _, _ in chunk]
            assert all(item[3] is None for item in sent)
        assert CLOSES == []  # no chunk closed it
    finally:
        close_worker()
    assert CLOSES == ["aclose"]  # once, at the worker's end
    close_worker()
    assert CLOSES == ["aclose"]  # idempotent


EXIT_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys
    from concurrent.futures import ProcessPoolExecutor

    from fixedmodel import batch_on, bind_acompletion


    class Noting:
        # Wraps a bound call; notes each close in a file, by process id.
        def __init__(self, inner, path):
            self.inner, self.path = inner, path

        async def __call__(self, **kwargs):
            return await self.inner(**kwargs)

        async def aclose(self):
            await self.inner.aclose()
            import os
            with open(self.path, "a") as file:
                file.write(f"{os.getpid()}\\n")


    if __name__ == "__main__":
        base_url, folder = sys.argv[1:]
        bound = bind_acompletion("openai/test", api_base=base_url, api_key="k")
        requests = [{"messages": [{"role": "user", "content": f"{i}"}]} for i in range(12)]
        for method in ("spawn", "fork"):
            context = multiprocessing.get_context(method)
            stack = Noting(bound, f"{folder}/{method}.txt")
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                results = list(batch_on(pool, stack, requests, chunk_size=3))
            assert all(result.ok for result in results), results
            print(method, "answered", len(results))
    """
)


def test_a_worker_closes_its_stack_once_at_exit_without_warnings(
    server: OpenAIServer, tmp_path: Path
) -> None:
    script = tmp_path / "exit_script.py"
    script.write_text(EXIT_SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "always::ResourceWarning", "PYTHONDEVMODE": "1"}
    done = subprocess.run(
        [sys.executable, str(script), server.base_url, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["spawn answered 12", "fork answered 12"]
    assert "ResourceWarning" not in done.stderr, done.stderr
    assert "Unclosed" not in done.stderr, done.stderr
    for method in ("spawn", "fork"):
        # One worker process, four chunks: its stack closed once, when the process ended.
        assert len((tmp_path / f"{method}.txt").read_text().split()) == 1, method


def test_a_dask_task_raising_a_429_gives_the_429() -> None:
    distributed = pytest.importorskip("distributed")  # a dev dependency: always there in CI
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    with cluster, distributed.Client(cluster) as client:
        future = client.submit(raise_rate_limit, pure=False)
        with pytest.raises(litellm.RateLimitError) as caught:
            future.result()
    assert caught.value.status_code == 429
    assert (caught.value.model, caught.value.llm_provider) == ("openai/gpt-x", "openai")
    assert retry_after(caught.value, now=0.0) == 7.0


class Dying:
    """A sync stack whose process dies (as if killed for memory) on the item "die"."""

    model = "openai/dying"

    def __call__(self, **kwargs: Any) -> litellm.ModelResponse:
        if kwargs["messages"][0]["content"] == "die":
            time.sleep(1.0)  # the other worker answers its chunks first
            os._exit(1)
        return litellm.ModelResponse(model=self.model)


def test_a_worker_that_dies_fails_its_chunk_and_keeps_the_answers_behind_it() -> None:
    # The dead worker's BrokenProcessPool was raised from the iterator: the three chunks
    # already answered behind it (paid for) were thrown away.
    contents = ["die", "fine", "fine", "fine"]
    requests: list[Any] = [{"messages": [{"role": "user", "content": c}]} for c in contents]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        list(pool.map(abs, [1, 2]))  # both workers up before the first chunk
        results = list(batch_on(pool, Dying(), requests, chunk_size=1, ids=list("abcd")))
    assert [result.ok for result in results] == [False, True, True, True]
    assert [result.id for result in results] == list("abcd")
    failure = results[0].error
    assert isinstance(failure, errors.WorkerError)
    assert failure.type_name.endswith("BrokenProcessPool")
    assert isinstance(failure.__cause__, BrokenProcessPool)


def test_a_pool_broken_for_good_raises_after_what_came_back() -> None:
    # Once the pool cannot take a chunk, the iterator raises, after every result that had
    # come back (the dead worker's chunk as failures).
    contents = ["fine", "die", "fine", "fine"]
    requests: list[Any] = [{"messages": [{"role": "user", "content": c}]} for c in contents]
    seen: list[bool] = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        results = batch_on(pool, Dying(), requests, chunk_size=1, pending_chunks=1)
        with pytest.raises(BrokenProcessPool):
            for result in results:
                seen.append(result.ok)
    assert seen == [True, False]
