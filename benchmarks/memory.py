"""Memory: RSS of the process over many calls through the full stack with a bounded cache.

The stack of ``_stack.py`` (logging, metrics, cache, retries, limiter) over a bound call that
uses litellm's ``mock_response``: litellm runs its whole call path (parameter mapping, logging
objects, cost calculation, its background success handlers) but answers without a request, so
20,000 calls fit in a minute. The cache is ``MemoryCacheStore(max_entries=1000)``.

Half of the calls are new requests (misses: litellm answers, the answer is stored, and past
1000 entries each store evicts the least recently used one); the other half repeat one of the
last 100 new requests (hits). A warm-up fills the cache past its bound first, so that what is
measured is the steady state. RSS (resident set size, from psutil) is read after
``gc.collect()`` at the baseline and after every quarter of the calls; live Python objects are
counted alongside, which tells the interpreter's heap from memory held elsewhere.
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from benchmarks._litellm import MODEL, close_clients
from benchmarks._report import RunConfig, SectionResult, Table
from benchmarks._stack import full_stack, null_logger, unique_messages
from benchmarks._stats import settle
from fixedmodel import InMemoryMetrics, MemoryCacheStore, MessageParam, bind_acompletion

TITLE = "Memory: RSS over many calls through the full stack (bounded memory cache)"

BAR_MB = 10.0
"""RSS may grow by at most 10 MB over the measured calls."""

MAX_ENTRIES = 1000
RECENT = 100
"""Repeated requests are drawn from this many most recent new ones (all still cached)."""


@dataclass(frozen=True)
class Sizes:
    """How much to run.

    Attributes:
        warm_up: Calls before the baseline; half are misses, so more than ``2 * MAX_ENTRIES``
            fills the cache to its bound.
        calls: Calls measured after the baseline.
        checkpoints: How many times RSS is read over the measured calls.
    """

    warm_up: int
    calls: int
    checkpoints: int


FULL = Sizes(warm_up=2_400, calls=20_000, checkpoints=4)
QUICK = Sizes(warm_up=100, calls=300, checkpoints=2)


@dataclass(frozen=True)
class Checkpoint:
    """One reading: after how many measured calls, RSS and live objects."""

    calls: int
    rss: int
    objects: int
    types: Counter[str]


@dataclass(frozen=True)
class Measured:
    """The readings, and what the stack saw."""

    checkpoints: list[Checkpoint]
    cache_entries: int
    calls: int
    hits: int
    errors: int


def run(config: RunConfig) -> SectionResult:
    """Run the calls, read the memory, report it."""
    sizes = QUICK if config.quick else FULL
    result = SectionResult(TITLE)
    measured = asyncio.run(_measure(sizes, config.seed), debug=False)
    _report(result, config, sizes, measured)
    return result


def _requests(rng: random.Random) -> Iterator[list[MessageParam]]:
    """New requests and repeats of recent ones, alternating."""
    fresh = unique_messages("memory")
    recent: list[list[MessageParam]] = []
    while True:
        messages = next(fresh)
        recent = [*recent[-(RECENT - 1) :], messages]
        yield messages
        yield rng.choice(recent)


async def _measure(sizes: Sizes, seed: int) -> Measured:
    rng = random.Random(seed)
    bound = bind_acompletion(MODEL, api_key="sk-bench-memory", mock_response="Hello, memory.")
    store = MemoryCacheStore(max_entries=MAX_ENTRIES)
    metrics = InMemoryMetrics()
    chat = full_stack(bound, store=store, metrics=metrics, logger=null_logger("memory"))
    requests = _requests(rng)
    try:
        for _ in range(sizes.warm_up):
            await chat(messages=next(requests))
        checkpoints = [await _checkpoint(0)]
        per_checkpoint = sizes.calls // sizes.checkpoints
        for index in range(1, sizes.checkpoints + 1):
            for _ in range(per_checkpoint):
                await chat(messages=next(requests))
            checkpoints.append(await _checkpoint(index * per_checkpoint))
    finally:
        await bound.aclose()
        await close_clients()
    seen = metrics.summary()
    return Measured(checkpoints, len(store), seen.calls, seen.cache_hits, seen.errors)


async def _checkpoint(calls: int) -> Checkpoint:
    # psutil has no type hints (and types-psutil is not a dependency).
    import psutil  # type: ignore[import-untyped]

    await settle()  # litellm's background logging of the last calls, then gc.collect().
    gc.collect()
    objects = gc.get_objects()
    types = Counter(type(item).__name__ for item in objects)
    rss: int = psutil.Process().memory_info().rss
    return Checkpoint(calls, rss, len(objects), types)


def _mb(size: float) -> str:
    return f"{size / 2**20:+.2f}" if size else "0.00"


def _report(result: SectionResult, config: RunConfig, sizes: Sizes, measured: Measured) -> None:
    baseline = measured.checkpoints[0]
    table = Table(
        ("calls after warm-up", "RSS MB", "RSS growth MB", "live Python objects", "growth"),
        title=f"RSS after gc.collect(), {sizes.warm_up} warm-up calls first",
    )
    for point in measured.checkpoints:
        table.add(
            f"{point.calls:,}",
            f"{point.rss / 2**20:.1f}",
            _mb(point.rss - baseline.rss),
            f"{point.objects:,}",
            f"{point.objects - baseline.objects:+,}",
        )
    last = measured.checkpoints[-1]
    growth = (last.rss - baseline.rss) / 2**20
    bars = Table(("check", "measured", "bar", "result"), title="Bar")
    bars.add(
        f"RSS growth over {last.calls:,} calls",
        f"{growth:+.2f} MB",
        f"≤ {BAR_MB:g} MB",
        result.bar(config, f"memory: RSS growth ≤ {BAR_MB:g} MB", growth <= BAR_MB),
    )
    result.tables += [table, bars]
    grown = (last.types - baseline.types).most_common(5)
    growing = ", ".join(f"{name} {count:+,}" for name, count in grown) or "none"
    result.notes += [
        f"Calls: litellm's mock_response (no server), model {MODEL!r}; half new requests, "
        f"half repeats of one of the last {RECENT} new ones. The stack saw {measured.calls:,} "
        f"calls: {measured.hits:,} cache hits, {measured.errors} errors; the store holds "
        f"{measured.cache_entries} entries (bound {MAX_ENTRIES}).",
        f"Object types that grew most since the baseline: {growing}. InMemoryMetrics keeps "
        "the last 10,000 latencies (bounded), which fill up during the measured calls.",
    ]
