"""A cache hit through the full middleware stack against a hit in litellm's own cache.

Contenders, all answering the same request (model, messages, api_base) from memory:

- ``full stack``: the stack of ``_stack.py`` with a :class:`~fixedmodel.MemoryCacheStore`:
  logging (formatted, to a null stream), metrics, cache hit; retries and the limiter are not
  reached.
- ``with_cache alone``: ``with_cache(bound, MemoryCacheStore())``, for reference: what the
  observing layers add.
- ``litellm cache``: ``litellm.acompletion(..., caching=True)`` with
  ``litellm.cache = litellm.Cache(type="local")``. In litellm 1.110.2 a hit there imports
  ``litellm.proxy``, which needs ``fastapi``, ``orjson`` and ``soundfile``; without them the
  contender is reported unavailable (and its bar, in full mode, fails as "not measured").
  ``litellm.cache`` and the callbacks ``litellm.Cache`` registers are restored afterwards.

Each request is answered once from the loopback server (a separate process) to fill the
caches; every measured call is a hit (checked). In each round every contender makes a block
of calls back to back, the blocks in a shuffled order (as bursts are in the ``overhead``
section), and each call is timed; the figures are medians over rounds of each block's median.
Blocks rather than call-by-call turns: a 50 µs call that follows ~1 ms of litellm's code on
the same core would mostly measure the CPU caches that code evicted.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Generator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from benchmarks._litellm import MESSAGES, MODEL, close_clients
from benchmarks._report import RunConfig, SectionResult, Table
from benchmarks._server import ServerProcess
from benchmarks._stack import full_stack, null_logger
from benchmarks._stats import (
    Batch,
    frozen_heap,
    paired_ratios,
    settle,
    shuffled,
    summarize,
    time_calls,
)
from fixedmodel import InMemoryMetrics, MemoryCacheStore, bind_acompletion, is_cache_hit, with_cache

TITLE = "Cache hit: the full stack with MemoryCacheStore vs litellm's in-process cache"

BAR_SECONDS = 50e-6
"""A hit through the full stack takes at most 50 µs."""
BAR_SPEEDUP = 10.0
"""... and is at least 10 times faster than a hit in litellm's own cache."""

STACK = "full stack"
CACHE_ONLY = "with_cache alone"
LITELLM = "litellm cache"
UNAVAILABLE = "litellm cache: unavailable (pip install fastapi orjson soundfile)"

Call = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Sizes:
    """How much to measure.

    Attributes:
        rounds: Rounds; in each, every contender makes one block of calls.
        block: Calls per block, back to back.
    """

    rounds: int
    block: int


FULL = Sizes(rounds=12, block=1_000)
QUICK = Sizes(rounds=1, block=50)


@dataclass
class Measured:
    """What the section measured.

    Attributes:
        rounds: Per contender, one block of calls per round.
        litellm_error: Why the litellm contender could not run, or ``None``.
        metrics: What the full stack's metrics layer recorded.
    """

    rounds: dict[str, list[Batch]]
    litellm_error: str | None
    metrics: InMemoryMetrics


def run(config: RunConfig) -> SectionResult:
    """Measure cache hits and report them."""
    sizes = QUICK if config.quick else FULL
    result = SectionResult(TITLE)
    with ServerProcess() as server:
        measured = asyncio.run(_measure(server.base_url, sizes, config.seed), debug=False)
    _report(result, config, sizes, measured)
    return result


async def _measure(base_url: str, sizes: Sizes, seed: int) -> Measured:
    rng = random.Random(seed)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(close_clients)
        bound = bind_acompletion(MODEL, api_base=base_url, api_key="sk-bench-hit")
        stack.push_async_callback(bound.aclose)
        metrics = InMemoryMetrics()
        chat = full_stack(
            bound, store=MemoryCacheStore(), metrics=metrics, logger=null_logger("hit")
        )
        cached = with_cache(bound, MemoryCacheStore())

        # partial(): what is timed is the call itself, with no coroutine of ours around it.
        calls: dict[str, Call] = {
            STACK: partial(chat, messages=MESSAGES),
            CACHE_ONLY: partial(cached, messages=MESSAGES),
        }
        for call in calls.values():
            await call()  # Fills the cache from the server.
            await _expect_hit(call)
        with _litellm_cache():
            litellm_call, litellm_error = await _litellm_contender(base_url)
            if litellm_call is not None:
                calls[LITELLM] = litellm_call
            await settle()
            rounds: dict[str, list[Batch]] = {name: [] for name in calls}
            with frozen_heap():
                for _ in range(sizes.rounds):
                    for name in shuffled(list(calls), rng):
                        batch = await time_calls(calls[name], calls=sizes.block, concurrency=1)
                        rounds[name].append(batch)
                        await settle()
                        await _quiesce()
    return Measured(rounds, litellm_error, metrics)


async def _expect_hit(call: Call) -> None:
    from litellm import ModelResponse

    response = await call()
    if not isinstance(response, ModelResponse) or not is_cache_hit(response):
        raise RuntimeError(f"the second identical call was not a cache hit: {response!r}")


@contextmanager
def _litellm_cache() -> Generator[None, None, None]:
    """Let the block set ``litellm.cache``; restore it and litellm's callback lists after."""
    import litellm

    previous = litellm.cache
    # litellm.Cache() adds "cache" to these lists; restore their contents as they were.
    lists: list[list[Any]] = [
        litellm.input_callback,
        litellm.success_callback,
        litellm._async_success_callback,  # pyright: ignore[reportPrivateUsage]
    ]
    saved = [list(callbacks) for callbacks in lists]
    try:
        yield
    finally:
        litellm.cache = previous
        for callbacks, before in zip(lists, saved, strict=True):
            callbacks[:] = before


async def _litellm_contender(base_url: str) -> tuple[Call | None, str | None]:
    """A call answered from litellm's local cache, or ``None`` and why it cannot run."""
    import litellm
    from litellm.caching.caching import Cache
    from litellm.types.caching import LiteLLMCacheType

    litellm.cache = Cache(type=LiteLLMCacheType.LOCAL)  # litellm.Cache(type="local")

    call_litellm: Call = partial(
        litellm.acompletion,
        model=MODEL,
        api_base=base_url,
        api_key="sk-bench-hit-litellm",
        messages=MESSAGES,
        caching=True,
    )

    try:
        await call_litellm()  # Fills litellm's cache from the server.
        await settle()  # litellm may store the answer from a background task.
        await _expect_hit(call_litellm)
    except ImportError as exc:  # litellm's hit path imports litellm.proxy (optional extras).
        return None, f"{type(exc).__name__}: {exc}"
    return call_litellm, None


async def _quiesce(*, max_seconds: float = 0.5) -> None:
    """Wait until this process's other threads are idle (litellm's success handlers).

    litellm hands the logging of each hit to a thread pool; left running, those threads
    would take the GIL from the next block. Idle means the process used under 10% of one
    CPU over 20 ms while this thread slept.
    """
    deadline = time.perf_counter() + max_seconds
    while time.perf_counter() < deadline:
        cpu = time.process_time()
        await asyncio.sleep(0.02)
        if time.process_time() - cpu < 0.002:
            return


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def _report(result: SectionResult, config: RunConfig, sizes: Sizes, measured: Measured) -> None:
    latency = Table(
        ("contender", "median µs/call", "min-max (round medians)", "CPU µs/call"),
        title="Per-hit latency: median over rounds of each block's median",
    )
    medians: dict[str, list[float]] = {}
    for name, rounds in measured.rounds.items():
        medians[name] = [batch.median_latency for batch in rounds]
        summary = summarize(medians[name])
        cpu = statistics.median(batch.cpu_per_call for batch in rounds)
        spread = f"{_us(summary.low)}-{_us(summary.high)}"
        latency.add(name, _us(summary.median), spread, _us(cpu))
    if measured.litellm_error is not None:
        latency.add(UNAVAILABLE, "", "", "")

    bars = Table(
        ("check", "measured", "bar", "result"),
        title="Bars (medians over rounds; ratios paired round by round)",
    )
    stack = summarize(medians[STACK])
    bars.add(
        f"{STACK} hit, µs per call",
        f"{_us(stack.median)} ({_us(stack.low)}-{_us(stack.high)})",
        f"≤ {_us(BAR_SECONDS)}",
        result.bar(
            config,
            f"cache hit: {STACK} ≤ {_us(BAR_SECONDS)} µs",
            stack.median <= BAR_SECONDS,
            within_noise=stack.unsure_about(BAR_SECONDS),
        ),
    )
    speedup_name = f"cache hit: {LITELLM} / {STACK} ≥ {BAR_SPEEDUP:g}"
    if measured.litellm_error is None:
        speedup = paired_ratios(medians[LITELLM], medians[STACK])
        bars.add(
            f"{LITELLM} / {STACK} (speed-up)",
            f"{speedup.median:.1f} ({speedup.low:.1f}-{speedup.high:.1f})",
            f"≥ {BAR_SPEEDUP:g}",
            result.bar(
                config,
                speedup_name,
                speedup.median >= BAR_SPEEDUP,
                within_noise=speedup.unsure_about(BAR_SPEEDUP),
            ),
        )
    else:
        verdict = result.bar(config, f"{speedup_name} (not measured)", False)
        bars.add(f"{LITELLM} / {STACK} (speed-up)", "not measured", f"≥ {BAR_SPEEDUP:g}",
                 verdict)  # fmt: skip
    layers = paired_ratios(medians[STACK], medians[CACHE_ONLY])
    bars.add(
        f"{STACK} / {CACHE_ONLY} (what logging and metrics add)",
        f"{layers.median:.2f} ({layers.low:.2f}-{layers.high:.2f})",
        "info",
        "",
    )
    result.tables += [latency, bars]
    seen = measured.metrics.summary()
    result.notes += [
        f"Every measured call was a hit: the stack's metrics count {seen.cache_hits} hits of "
        f"{seen.calls} calls (the first call filled the cache from the loopback server).",
        f"Rounds: {sizes.rounds}, one block of {sizes.block} calls per contender per round.",
    ]
    if measured.litellm_error is not None:
        result.notes.append(
            f"{UNAVAILABLE}: its cache-hit path raised {measured.litellm_error}. Install "
            "those packages into the venv to measure it (they are not project dependencies)."
        )
