"""Timing and statistics shared by the benchmark sections.

The machine a benchmark runs on is usually shared and noisy, so every section measures the
things it compares side by side: in rounds, with the order of the contenders changing from
round to round, and it reports medians with the spread (min-max) of the per-round medians.
Ratios are taken per round (both sides measured under the same conditions) and then
summarised the same way.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import random
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Summary:
    """Median, range and a 95% confidence interval of the median of some numbers.

    The numbers are typically one per round (a round's median, or a per-round ratio).
    """

    median: float
    low: float
    high: float
    count: int
    interval: tuple[float, float]

    def unsure_about(self, bar: float) -> bool:
        """Whether ``bar`` lies within the confidence interval: the data cannot tell the sides."""
        return self.interval[0] <= bar <= self.interval[1]


def summarize(values: Sequence[float]) -> Summary:
    """Summarise ``values``; raises ``ValueError`` when there are none."""
    if not values:
        raise ValueError("summarize() needs at least one value")
    return Summary(
        statistics.median(values), min(values), max(values), len(values), median_interval(values)
    )


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Summary:
    """Summarise the per-round ratios ``numerators[i] / denominators[i]``."""
    if len(numerators) != len(denominators):
        raise ValueError("paired_ratios() needs as many numerators as denominators")
    return summarize([n / d for n, d in zip(numerators, denominators, strict=True)])


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of ``values``.

    It is the pair of order statistics ``(x[j], x[n-1-j])`` with the largest ``j`` whose
    coverage, from the binomial distribution, is still at least ``confidence``. With few values
    that is their whole range (for 8 values at 95%: min and max).
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median_interval() needs at least one value")

    def misses(j: int) -> float:  # P(the interval misses the median) = 2 P(Binomial(n, 1/2) <= j)
        return 2 * sum(math.comb(n, i) for i in range(j + 1)) / (1 << n)

    j = 0
    while j + 1 <= (n - 1) // 2 and misses(j + 1) <= 1 - confidence:
        j += 1
    return ordered[j], ordered[n - 1 - j]


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """The order of ``items`` for a round: rotated by the round number, reversed every other.

    Over a few rounds every contender runs first, last and next to each of the others, so a
    slow drift of the machine's load does not favour one of them.
    """
    if not items:
        return []
    shift = round_index % len(items)
    order = [*items[shift:], *items[:shift]]
    return order[::-1] if round_index % 2 else order


def shuffled(items: Sequence[T], rng: random.Random) -> list[T]:
    """A shuffled copy of ``items``."""
    order = list(items)
    rng.shuffle(order)
    return order


@dataclass(frozen=True)
class Batch:
    """Timings of one batch of calls.

    Attributes:
        latencies: Seconds per call, in completion order.
        wall: Seconds from the first start to the last end.
        cpu: CPU seconds of this process (all threads) during the batch.
    """

    latencies: tuple[float, ...]
    wall: float
    cpu: float

    @property
    def median_latency(self) -> float:
        """Median seconds per call."""
        return statistics.median(self.latencies)

    @property
    def calls_per_second(self) -> float:
        """Completed calls per wall-clock second."""
        return len(self.latencies) / self.wall

    @property
    def cpu_per_call(self) -> float:
        """CPU seconds of this process per call."""
        return self.cpu / len(self.latencies)

    @classmethod
    def merge(cls, batches: Sequence[Batch]) -> Batch:
        """One batch holding the calls of several, as if they had run back to back."""
        latencies = tuple(value for batch in batches for value in batch.latencies)
        return cls(latencies, sum(b.wall for b in batches), sum(b.cpu for b in batches))


async def time_calls(
    call: Callable[[], Awaitable[object]], *, calls: int, concurrency: int
) -> Batch:
    """Run ``calls`` awaits of ``call()`` with ``concurrency`` workers and time each one."""
    if calls < 1 or concurrency < 1:
        raise ValueError("time_calls() needs calls >= 1 and concurrency >= 1")
    latencies: list[float] = []
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    cpu_start, wall_start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, calls))))
    wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
    return Batch(tuple(latencies), wall, cpu)


async def time_interleaved(
    calls: Mapping[str, Callable[[], Awaitable[object]]], *, cycles: int, rng: random.Random
) -> dict[str, Batch]:
    """Time sequential calls of several contenders, one call each per cycle, in shuffled order.

    Interleaving call by call makes the machine's background load hit every contender alike;
    shuffling spreads the after-effects of one call (e.g. background logging tasks) evenly over
    the call that follows it.
    """
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, float] = dict.fromkeys(calls, 0.0)
    for _ in range(cycles):
        for name in shuffled(list(calls), rng):
            cpu_start, start = time.process_time(), time.perf_counter()
            await calls[name]()
            latencies[name].append(time.perf_counter() - start)
            cpu[name] += time.process_time() - cpu_start
    return {
        name: Batch(tuple(values), sum(values), cpu[name]) for name, values in latencies.items()
    }


async def time_bursts(
    calls: Mapping[str, Callable[[], Awaitable[object]]],
    *,
    bursts: int,
    concurrency: int,
    rng: random.Random,
) -> dict[str, Batch]:
    """Time bursts of ``concurrency`` calls started together, contenders taking turns.

    Each contender runs ``bursts`` bursts; the contenders alternate burst by burst in shuffled
    order, so that the machine's load changes hit them alike (the concurrent counterpart of
    :func:`time_interleaved`).
    """
    measured: dict[str, list[Batch]] = {name: [] for name in calls}
    for _ in range(bursts):
        for name in shuffled(list(calls), rng):
            batch = await time_calls(calls[name], calls=concurrency, concurrency=concurrency)
            measured[name].append(batch)
            await settle()
    return {name: Batch.merge(batches) for name, batches in measured.items()}


async def settle(*, max_seconds: float = 1.0) -> None:
    """Let background tasks left by the last batch (e.g. litellm's logging) finish first.

    Waits until the number of other pending tasks stays the same for a few checks (long-lived
    worker tasks never finish), then collects garbage, so the next batch does not pay for the
    previous one.
    """
    deadline = time.perf_counter() + max_seconds
    counts: list[int] = []
    while time.perf_counter() < deadline:
        counts.append(len(asyncio.all_tasks()))
        if len(counts) >= 3 and counts[-1] == counts[-2] == counts[-3]:
            break
        await asyncio.sleep(0.005)
    gc.collect()


def time_command(argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None = None) -> float:
    """Wall seconds of one run of a command, which must succeed."""
    start = time.perf_counter()
    subprocess.run(list(argv), env=dict(env), cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def load_average() -> str:
    """The 1-minute load average, or ``"n/a"`` where the OS does not report it."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "n/a"


def ms(seconds: float) -> str:
    """Seconds as milliseconds for a table cell."""
    return f"{seconds * 1e3:.2f}"


def ms_range(summary: Summary) -> str:
    """The range of a summary of seconds, in milliseconds."""
    return f"{summary.low * 1e3:.2f}-{summary.high * 1e3:.2f}"


def ratio(summary: Summary) -> str:
    """A ratio's median with its range, e.g. ``1.003 (0.981-1.020)``."""
    return f"{summary.median:.3f} ({summary.low:.3f}-{summary.high:.3f})"


@contextmanager
def frozen_heap() -> Generator[None, None, None]:
    """Keep the objects alive now (litellm's modules, warmed caches) out of garbage collection.

    With litellm imported a full collection takes a few hundred milliseconds; one landing in a
    measured batch would dwarf what is being measured. Freezing makes collections cheap and
    even for every contender.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
