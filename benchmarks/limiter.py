"""The in-process rate limiter, saturated: many async callers against one limit.

Each round makes a fresh ``RateLimiter(RateLimit(requests=200, period=1.0))`` (in-process
store) and starts 1,000 callers on one event loop at once. Every caller loops for the whole
round: half call a no-op async function wrapped by ``with_rate_limit``, half call
``limiter.aacquire()`` themselves; either way the trivial work after the admission yields to
the loop once, as a real call would. So the line always holds about 1,000 waiters, and the
limiter is saturated from the first moment to the last. A round lasts ``period * (cycles +
2)`` (6 s in full mode).

Measured, per round:

- **Throughput in steady state.** The first period is left out: it admits the whole budget
  at once, a burst no steady state repeats. From the first admission after it, admissions per
  second up to the first admission ``cycles`` periods later (see
  :func:`benchmarks._admissions.steady_rate`: whole refill cycles, so where the round stops
  does not bias it). The window rule admits at most 50/51 of the limit (98 %).
- **No window over the limit.** The most admissions in any window ``(u, u + period]``, over
  the admission times recorded at the store for the whole round, first burst included.
- **Event-loop lag.** A ticker task sleeps 5 ms over and over and records how much longer
  than 5 ms each sleep took: from before the callers start (their start included) to the
  middle of the steady state.
- **CPU while they wait.** ``time.process_time()`` over the second half of the steady state,
  divided by the wall time: the waiting callers and the admitted ones, the ticker stopped
  (it is the measuring instrument, and on a VM its 200 timer wake-ups a second cost as much
  CPU as the limiter). The share with the ticker running (first half) is shown too.

Before each round the ticker runs alone for a while: the lag and CPU floor the machine sets
at the time (another process's load shows there first).

The heap is frozen first (``gc.freeze``): a full collection with litellm loaded (by earlier
sections) takes long enough to show up as event-loop lag that is none of the limiter's doing.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from benchmarks._admissions import (
    Admission,
    Rate,
    RecordingStore,
    WindowCount,
    most_in_a_window,
    percentile,
    steady_rate,
)
from benchmarks._report import RunConfig, SectionResult, Table
from benchmarks._stats import frozen_heap, ms, summarize
from fixedmodel import (
    AFixedModelCompletion,
    MemoryLimiterStore,
    Messages,
    RateLimit,
    RateLimiter,
    with_rate_limit,
)

TITLE = "Rate limiter (in-process): async callers against one saturated limit"

THROUGHPUT_BAR = 0.97
"""Steady-state admissions per second, as a fraction of the limit, at least."""
LAG_BAR = 0.005
"""99th percentile of the event-loop lag, in seconds, at most."""
CPU_BAR = 0.05
"""CPU time of the process while the callers wait, as a fraction of wall time, at most."""

TICK = 0.005
"""How long the ticker sleeps each time; lag is what it oversleeps."""

MESSAGES: Messages = [{"role": "user", "content": "Say hello."}]


@dataclass(frozen=True)
class Sizes:
    """How much to measure.

    Attributes:
        callers: Concurrent callers.
        requests: The limit's request budget per period.
        period: The limit's period, in seconds.
        cycles: Periods of steady state measured for throughput.
        rounds: Rounds (each with a fresh limiter).
        baseline: Seconds of the ticker alone, before each round.
    """

    callers: int
    requests: int
    period: float
    cycles: int
    rounds: int
    baseline: float

    @property
    def seconds(self) -> float:
        """Length of a round: the first period, the measured cycles, one period to spare."""
        return self.period * (self.cycles + 2)


FULL = Sizes(callers=1000, requests=200, period=1.0, cycles=4, rounds=3, baseline=2.0)
QUICK = Sizes(callers=200, requests=100, period=0.5, cycles=1, rounds=1, baseline=0.25)


@dataclass(frozen=True)
class Usage:
    """CPU seconds of this process (all threads) over a stretch of wall-clock seconds."""

    cpu: float
    wall: float

    @property
    def share(self) -> float:
        """CPU time as a fraction of wall time."""
        return self.cpu / self.wall


class _Stopwatch:
    """Reads the process CPU time and the wall clock now, and their increase later."""

    def __init__(self) -> None:
        self._cpu, self._wall = time.process_time(), time.monotonic()

    def read(self) -> Usage:
        """The CPU and wall time since this stopwatch was made."""
        return Usage(time.process_time() - self._cpu, time.monotonic() - self._wall)


@dataclass(frozen=True)
class Round:
    """What one round measured.

    Attributes:
        admissions: Admissions as recorded at the store.
        delivered: When the callers got through (their own view).
        lags: Oversleep of each tick, in seconds.
        ticking: CPU over the first half of the steady state, the ticker running.
        quiet: CPU over the second half of the steady state, the ticker stopped.
        rate: Steady-state throughput (``None`` if the round was too short to see it).
    """

    admissions: tuple[Admission, ...]
    delivered: tuple[float, ...]
    lags: tuple[float, ...]
    ticking: Usage
    quiet: Usage
    rate: Rate | None

    def window(self, period: float) -> WindowCount:
        """The most admissions in one period, at the store."""
        return most_in_a_window(self.admissions, period)

    def delivered_window(self, period: float) -> int:
        """The most deliveries to callers in one period."""
        return most_in_a_window([Admission(t, t) for t in self.delivered], period).certain


class _NoOpCall:
    """Stands in for a model call: notes when it was reached, yields once, answers nothing."""

    def __init__(self, delivered: list[float]) -> None:
        self.delivered = delivered

    async def __call__(self, **kwargs: object) -> None:
        self.delivered.append(time.monotonic())
        await asyncio.sleep(0)


async def _call_wrapped(chat: AFixedModelCompletion) -> None:
    while True:
        await chat(messages=MESSAGES)


async def _call_directly(limiter: RateLimiter, delivered: list[float]) -> None:
    while True:
        await limiter.aacquire()
        delivered.append(time.monotonic())
        await asyncio.sleep(0)


async def _tick(lags: list[float]) -> None:
    while True:
        before = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.append(time.perf_counter() - before - TICK)


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def _stop(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _round(sizes: Sizes) -> Round:
    """One saturated run: lag over the start and the first half of the steady state (the
    ticker running), CPU over its second half with the ticker stopped."""
    store = RecordingStore(MemoryLimiterStore())
    limiter = RateLimiter(RateLimit(requests=sizes.requests, period=sizes.period), store=store)
    delivered: list[float] = []
    # The limiter never looks at the answer, so a no-op that returns None stands in for
    # a completion; the cast gives it the callable kind with_rate_limit wraps.
    chat = with_rate_limit(cast(AFixedModelCompletion, _NoOpCall(delivered)), limiter)
    lags: list[float] = []
    ticker = asyncio.create_task(_tick(lags))
    await asyncio.sleep(4 * TICK)
    started = time.monotonic()
    steady, end = started + sizes.period, started + sizes.seconds
    callers = [
        asyncio.create_task(
            _call_directly(limiter, delivered) if index % 2 else _call_wrapped(chat)
        )
        for index in range(sizes.callers)
    ]
    await _sleep_until(steady)
    stopwatch = _Stopwatch()
    await _sleep_until((steady + end) / 2)
    await _stop([ticker])
    ticking = stopwatch.read()
    stopwatch = _Stopwatch()
    await _sleep_until(end)
    quiet = stopwatch.read()
    await _stop(callers)
    admissions = tuple(store.admissions)
    rate = steady_rate(
        [a.answered for a in admissions], after=steady, span=sizes.cycles * sizes.period
    )
    return Round(admissions, tuple(delivered), tuple(lags), ticking, quiet, rate)


@dataclass(frozen=True)
class Baseline:
    """The ticker alone: the lag and CPU floor of this machine at the time."""

    lags: tuple[float, ...]
    usage: Usage


async def _baseline(seconds: float) -> Baseline:
    lags: list[float] = []
    ticker = asyncio.create_task(_tick(lags))
    stopwatch = _Stopwatch()
    await asyncio.sleep(seconds)
    usage = stopwatch.read()
    await _stop([ticker])
    return Baseline(tuple(lags), usage)


async def _measure(sizes: Sizes) -> list[tuple[Round, Baseline]]:
    measured: list[tuple[Round, Baseline]] = []
    with frozen_heap():
        for _ in range(sizes.rounds):
            baseline = await _baseline(sizes.baseline)
            measured.append((await _round(sizes), baseline))
    return measured


def run(config: RunConfig) -> SectionResult:
    """Saturate an in-process limiter with async callers and report the four bars."""
    sizes = QUICK if config.quick else FULL
    measured = asyncio.run(_measure(sizes), debug=False)
    result = SectionResult(TITLE)
    _report(result, config, sizes, measured)
    return result


def _fraction(rate: Rate | None, sizes: Sizes) -> float:
    return 0.0 if rate is None else rate.per_second * sizes.period / sizes.requests


def _median_range(values: Sequence[float], show: str) -> str:
    summary = summarize(values)
    text = show.format(summary.median)
    if len(values) == 1:
        return text
    return f"{text} ({show.format(summary.low)}-{show.format(summary.high)})"


def _report(
    result: SectionResult, config: RunConfig, sizes: Sizes, measured: list[tuple[Round, Baseline]]
) -> None:
    limit = f"{sizes.requests} requests per {sizes.period:g} s"
    rounds = [measured_round for measured_round, _ in measured]
    table = Table(
        ("round", "steady state: admitted / s", "per s", "% of limit",
         "most in one period: store (certain/possible)", "callers' view",
         "loop lag p50 ms", "p99 ms", "max ms", "CPU % of wall (ticker stopped)",
         "CPU % of wall (ticker running)", "ticker alone: lag p99 ms", "ticker alone: CPU %"),
        title=f"{sizes.callers} callers, limit {limit}, {sizes.seconds:g} s per round",
    )  # fmt: skip
    for index, (measured_round, baseline) in enumerate(measured, 1):
        rate, window = measured_round.rate, measured_round.window(sizes.period)
        table.add(
            str(index),
            "run too short" if rate is None else f"{rate.admitted} / {rate.seconds:.3f}",
            "" if rate is None else f"{rate.per_second:.1f}",
            f"{_fraction(rate, sizes):.2%}",
            f"{window.certain}/{window.possible}",
            str(measured_round.delivered_window(sizes.period)),
            ms(statistics.median(measured_round.lags)),
            ms(percentile(measured_round.lags, 0.99)),
            ms(max(measured_round.lags)),
            f"{measured_round.quiet.share:.2%}",
            f"{measured_round.ticking.share:.2%}",
            ms(percentile(baseline.lags, 0.99)),
            f"{baseline.usage.share:.2%}",
        )

    bars = Table(("bar", "measured: median (min-max over rounds)", "bar", "result"))
    throughput = [_fraction(r.rate, sizes) for r in rounds]
    summary = summarize(throughput)
    bars.add(
        "steady-state throughput, % of limit",
        _median_range([100 * value for value in throughput], "{:.2f}"),
        f"≥ {THROUGHPUT_BAR:.0%}",
        result.bar(
            config,
            "limiter: steady-state throughput ≥ 97% of the limit",
            summary.median >= THROUGHPUT_BAR,
            within_noise=summary.unsure_about(THROUGHPUT_BAR),
        ),
    )
    windows = [r.window(sizes.period) for r in rounds]
    worst_certain = max(w.certain for w in windows)
    worst_possible = max(w.possible for w in windows)
    bars.add(
        "most admissions in any window of one period (worst round)",
        f"{worst_certain} (possible: {worst_possible})",
        f"≤ {sizes.requests}",
        result.bar(
            config,
            f"limiter: no window of {sizes.period:g} s over {sizes.requests}",
            worst_certain <= sizes.requests,
            within_noise=worst_certain <= sizes.requests < worst_possible,
        ),
    )
    lag = [percentile(r.lags, 0.99) for r in rounds]
    lag_summary = summarize(lag)
    bars.add(
        "event-loop lag p99, ms",
        _median_range([1e3 * value for value in lag], "{:.2f}"),
        f"≤ {LAG_BAR * 1e3:g}",
        result.bar(
            config,
            "limiter: event-loop lag p99 ≤ 5 ms",
            lag_summary.median <= LAG_BAR,
            within_noise=lag_summary.unsure_about(LAG_BAR),
        ),
    )
    cpu = [r.quiet.share for r in rounds]
    cpu_summary = summarize(cpu)
    bars.add(
        "process CPU while waiting, % of wall",
        _median_range([100 * value for value in cpu], "{:.2f}"),
        f"≤ {CPU_BAR:.0%}",
        result.bar(
            config,
            "limiter: CPU while waiting ≤ 5% of wall time",
            cpu_summary.median <= CPU_BAR,
            within_noise=cpu_summary.unsure_about(CPU_BAR),
        ),
    )
    result.tables += [table, bars]
    ceiling = sizes.requests / sizes.period * 50 / 51
    result.notes += [
        f"Steady state leaves out the first {sizes.period:g} s (the whole budget admitted at "
        f"once) and counts whole refill cycles from the next burst on, over {sizes.cycles} "
        f"period(s). The window rule's ceiling is 50/51 of the limit: {ceiling:.1f}/s (98.04%).",
        "Most in one period: over every window (u, u + period] of the whole round, first "
        "burst included, from admission times bracketed at the store (certain/possible: the "
        "brackets are microseconds wide). Callers' view: the same from the times the callers "
        "got through, for information.",
        f"Loop lag: oversleep of a {TICK * 1e3:g} ms asyncio.sleep, from before the "
        f"{sizes.callers} callers start to the middle of the steady state. CPU: "
        "time.process_time() / wall time over the second half of the steady state, the "
        "ticker stopped (the bar); the first half, ticker running, for information. Ticker "
        f"alone: the same ticker with nothing else on the loop, for {sizes.baseline:g} s "
        "just before the round: the floor this machine sets at the time.",
        "Half the callers call a no-op wrapped by with_rate_limit, half call "
        "limiter.aacquire() directly; after each admission they yield once and queue again.",
    ]
