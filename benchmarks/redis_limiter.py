"""The Redis rate limiter store: acquire latency, and one limit shared by several processes.

Both parts run against a ``redis-server`` of their own on 127.0.0.1 (an ephemeral port, no
persistence; ``RedisServer`` from ``tests/integration/redis_server.py``).

**Latency.** Sequential ``acquire``s of a ``RateLimiter`` over a ``RedisLimiterStore`` whose
limit never binds, so every call is one script run and never waits. Four contenders take
turns call by call, in a shuffled order:

- ``sync``: ``limiter.acquire()`` (the store's sync client);
- ``async (store threads)``: ``await limiter.aacquire()``, which runs the sync client on the
  store's threads (a store built from a URL);
- ``async (redis.asyncio)``: the same over a store given ``async_client=``;
- ``PING``: a bare round trip of the sync client, for reference.

**Accuracy.** Several worker processes (``python -m benchmarks.redis_limiter --worker``) share
one ``RateLimit(requests=50, period=1.0)`` through one key. Each keeps its line full: half of
them with threads calling ``limiter.acquire()``, the others with tasks awaiting
``limiter.aacquire()``. They start together and stop after ``period * (cycles + 2)``. Every
admission is bracketed at the store by the monotonic clock, which the processes of one host
share; the server decides by its own clock, somewhere within the bracket. Over the merged
admissions:

- most admissions in any window of one period: the count that is certain, whatever the
  decision times within their brackets, must not exceed the limit (bar); the count that is
  possible is shown too;
- aggregate throughput in steady state, as for the in-process limiter (the first period
  left out, whole refill cycles from the next burst on): reported against 90 %.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks._admissions import (
    Admission,
    RecordingStore,
    most_in_a_window,
    percentile,
    steady_rate,
)
from benchmarks._report import RunConfig, SectionResult, Table
from benchmarks._stats import frozen_heap, ms, shuffled
from fixedmodel import RateLimit, RateLimiter, RedisLimiterStore

TITLE = "Rate limiter over Redis: acquire latency and one limit shared by processes"

THROUGHPUT_TARGET = 0.90
"""Aggregate steady-state throughput, as a fraction of the limit, reported against this."""

NOT_BINDING = RateLimit(requests=1_000_000_000, period=60.0)
"""A limit the latency runs never reach: every acquire is admitted at once."""

ROOT = Path(__file__).resolve().parent.parent

SYNC = "sync: limiter.acquire()"
ASYNC_THREADS = "async (store threads): await limiter.aacquire()"
ASYNC_NATIVE = "async (redis.asyncio client): await limiter.aacquire()"
PING = "PING (sync client, reference)"
CONTENDERS = (SYNC, ASYNC_THREADS, ASYNC_NATIVE, PING)


@dataclass(frozen=True)
class Sizes:
    """How much to measure.

    Attributes:
        acquires: Sequential calls per latency contender.
        processes: Worker processes sharing one limit.
        callers: Concurrent callers per worker process.
        requests: The shared limit's request budget per period.
        period: The shared limit's period, in seconds.
        cycles: Periods of steady state measured for throughput.
    """

    acquires: int
    processes: int
    callers: int
    requests: int
    period: float
    cycles: int

    @property
    def seconds(self) -> float:
        """How long the workers run: the first period, the measured cycles, one to spare."""
        return self.period * (self.cycles + 2)


FULL = Sizes(acquires=2000, processes=4, callers=8, requests=50, period=1.0, cycles=2)
QUICK = Sizes(acquires=200, processes=2, callers=4, requests=50, period=0.5, cycles=1)


def run(config: RunConfig) -> SectionResult:
    """Measure the Redis store against a redis-server of this section's own."""
    sizes = QUICK if config.quick else FULL
    result = SectionResult(TITLE)
    missing = _missing()
    if missing is not None:
        result.notes.append(f"skipped: {missing}")
        result.bar(config, f"redis limiter measured ({missing})", passed=False)
        return result

    from tests.integration.redis_server import RedisServer

    with RedisServer() as server:
        latencies = asyncio.run(_latencies(server.url, sizes.acquires, config.seed), debug=False)
        workers = _share(server.url, sizes)
    _report_latency(result, sizes, latencies)
    _report_sharing(result, config, sizes, workers)
    return result


def _missing() -> str | None:
    """What this section lacks on this machine, if anything."""
    from tests.integration.redis_server import REDIS_SERVER

    if not os.access(REDIS_SERVER, os.X_OK):
        return "redis-server not installed"
    try:
        import redis  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        return "redis-py not installed (pip install 'fixedmodel[redis]')"
    return None


# --- latency ---------------------------------------------------------------------------------


async def _latencies(url: str, acquires: int, seed: int) -> dict[str, list[float]]:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    namespace = f"bench:{uuid.uuid4().hex[:8]}:"
    store = RedisLimiterStore(url, namespace=namespace)
    # redis-py leaves the keywords of from_url and ping untyped.
    async_client = AsyncRedis.from_url(  # pyright: ignore[reportUnknownMemberType]
        url, socket_timeout=0.25, socket_connect_timeout=0.25
    )
    native = RedisLimiterStore(async_client=async_client, namespace=namespace)
    client = Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
        url, socket_timeout=0.25, socket_connect_timeout=0.25
    )
    sync = RateLimiter(NOT_BINDING, store=store, key="sync")
    threads = RateLimiter(NOT_BINDING, store=store, key="threads")
    asyncio_native = RateLimiter(NOT_BINDING, store=native, key="native")

    async def call_sync() -> None:
        sync.acquire()

    async def call_threads() -> None:
        await threads.aacquire()

    async def call_native() -> None:
        await asyncio_native.aacquire()

    async def call_ping() -> None:
        client.ping()  # pyright: ignore[reportUnknownMemberType]

    calls: dict[str, Callable[[], Awaitable[None]]] = {
        SYNC: call_sync, ASYNC_THREADS: call_threads, ASYNC_NATIVE: call_native, PING: call_ping
    }  # fmt: skip
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    rng = random.Random(seed)
    try:
        for _ in range(50):  # Warm up: connections, the script loaded, the store's threads.
            for call in calls.values():
                await call()
        with frozen_heap():
            for _ in range(acquires):
                for name in shuffled(CONTENDERS, rng):
                    start = time.perf_counter()
                    await calls[name]()
                    latencies[name].append(time.perf_counter() - start)
    finally:
        store.close()
        native.close()
        client.close()
        await async_client.aclose()
    return latencies


def _report_latency(result: SectionResult, sizes: Sizes, latencies: dict[str, list[float]]) -> None:
    table = Table(
        ("contender", "calls", "p50 ms", "p90 ms", "p99 ms", "max ms"),
        title=f"Acquire latency: {sizes.acquires} sequential calls each, taking turns in a "
        "shuffled order (limit not binding)",
    )
    for name in CONTENDERS:
        values = latencies[name]
        table.add(
            name,
            str(len(values)),
            ms(percentile(values, 0.5)),
            ms(percentile(values, 0.9)),
            ms(percentile(values, 0.99)),
            ms(max(values)),
        )
    result.tables.append(table)


# --- one limit, several processes ------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process runs (passed to it as JSON)."""

    url: str
    namespace: str
    threads: bool
    callers: int
    requests: int
    period: float
    seconds: float


@dataclass(frozen=True)
class WorkerRun:
    """What one worker process reports.

    Attributes:
        spec: What it ran.
        started: When it started calling, by the monotonic clock.
        admissions: Its admissions, bracketed at the store.
    """

    spec: WorkerSpec
    started: float
    admissions: tuple[Admission, ...]


def _share(url: str, sizes: Sizes) -> list[WorkerRun]:
    """Run the worker processes on one limit, started together; return what they report."""
    namespace = f"bench:{uuid.uuid4().hex[:8]}:"
    specs = [
        WorkerSpec(url, namespace, index % 2 == 1, sizes.callers, sizes.requests, sizes.period,
                   sizes.seconds)
        for index in range(sizes.processes)
    ]  # fmt: skip
    processes: list[subprocess.Popen[str]] = []
    try:
        for spec in specs:
            argv = [sys.executable, "-m", "benchmarks.redis_limiter", "--worker",
                    json.dumps(asdict(spec))]  # fmt: skip
            processes.append(
                subprocess.Popen(
                    argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            )
        for process in processes:  # Each says "ready" once connected and warmed up.
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("a Redis limiter worker process failed to start")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=sizes.seconds + 60)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    runs: list[WorkerRun] = []
    for spec, output in zip(specs, outputs, strict=True):
        report = json.loads(output)
        admissions = tuple(Admission(asked, answered) for asked, answered in report["admissions"])
        runs.append(WorkerRun(spec, float(report["started"]), admissions))
    return runs


def _report_sharing(
    result: SectionResult, config: RunConfig, sizes: Sizes, runs: Sequence[WorkerRun]
) -> None:
    limit = f"{sizes.requests} requests per {sizes.period:g} s"
    admissions = [admission for run in runs for admission in run.admissions]
    started = min(run.started for run in runs)
    rate = steady_rate(
        [a.answered for a in admissions],
        after=started + sizes.period,
        span=sizes.cycles * sizes.period,
    )
    window = most_in_a_window(admissions, sizes.period)
    table = Table(
        ("process", "callers", "admitted (whole run)", "steady state: admitted / s", "per s",
         "% of limit", "most in one period (certain/possible)"),
        title=f"{sizes.processes} processes sharing one limit of {limit} for {sizes.seconds:g} s",
    )  # fmt: skip
    for index, run in enumerate(runs, 1):
        kind = "threads, acquire()" if run.spec.threads else "tasks, aacquire()"
        table.add(f"{index}", f"{run.spec.callers} {kind}", str(len(run.admissions)),
                  "", "", "", "")  # fmt: skip
    fraction = 0.0 if rate is None else rate.per_second * sizes.period / sizes.requests
    table.add(
        "all",
        str(sum(run.spec.callers for run in runs)),
        str(len(admissions)),
        "run too short" if rate is None else f"{rate.admitted} / {rate.seconds:.3f}",
        "" if rate is None else f"{rate.per_second:.1f}",
        f"{fraction:.2%}",
        f"{window.certain}/{window.possible}",
    )
    bars = Table(("measure", "measured", "bar", "result"))
    bars.add(
        "most admissions in any window of one period, all processes",
        f"{window.certain} (possible: {window.possible})",
        f"≤ {sizes.requests}",
        result.bar(
            config,
            f"redis limiter: no window of {sizes.period:g} s over {sizes.requests}, "
            f"{sizes.processes} processes",
            window.certain <= sizes.requests,
            within_noise=window.certain <= sizes.requests < window.possible,
        ),
    )
    bars.add(
        "aggregate steady-state throughput, % of limit",
        f"{fraction:.2%}",
        f"≥ {THROUGHPUT_TARGET:.0%} (reported)",
        "met" if fraction >= THROUGHPUT_TARGET else "missed",
    )
    result.tables += [table, bars]
    widest = max((a.answered - a.asked for a in admissions), default=0.0)
    result.notes += [
        "Latency: wall time of each call; the store's client times out after 0.25 s. "
        "PING is one bare round trip of a sync client, the floor under any acquire.",
        "Sharing: admissions are bracketed by the monotonic clock around each script run "
        f"(widest bracket {widest * 1e3:.2f} ms); Redis decides by its own clock within the "
        "bracket. Certain: some window holds that many whatever the decision times; "
        "possible: some choice of decision times puts that many in one window.",
        f"Steady state leaves out the first {sizes.period:g} s and counts whole refill cycles "
        f"from the next burst on, over {sizes.cycles} period(s); the window rule's ceiling is "
        "50/51 of the limit (98.04%).",
    ]


# --- the worker process ----------------------------------------------------------------------


def _worker(spec: WorkerSpec) -> None:
    """Wait for "go" on stdin, keep the line full until the time is up, print the admissions."""
    redis_store = RedisLimiterStore(spec.url, namespace=spec.namespace)
    store = RecordingStore(redis_store)
    limiter = RateLimiter(RateLimit(requests=spec.requests, period=spec.period), store=store)
    warm_up = RateLimiter(NOT_BINDING, store=redis_store, key="warm-up")
    warm_up.acquire()  # Connect and load the script before the start.
    if not spec.threads:
        asyncio.run(_warm_threads(warm_up, spec.callers))
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    deadline = started + spec.seconds
    if spec.threads:
        _call_from_threads(limiter, spec.callers, deadline)
    else:
        asyncio.run(_call_from_tasks(limiter, spec.callers, deadline))
    admissions = [(a.asked, a.answered) for a in list(store.admissions)]
    print(json.dumps({"started": started, "admissions": admissions}), flush=True)
    if not spec.threads:
        redis_store.close()
    # Threads may still wait in acquire(); they are daemons and end with the process.


async def _warm_threads(limiter: RateLimiter, callers: int) -> None:
    await asyncio.gather(*(limiter.aacquire() for _ in range(callers)))


def _call_from_threads(limiter: RateLimiter, callers: int, deadline: float) -> None:
    def call() -> None:
        while time.monotonic() < deadline:
            limiter.acquire()

    for _ in range(callers):
        threading.Thread(target=call, daemon=True).start()
    time.sleep(max(0.0, deadline - time.monotonic()))


async def _call_from_tasks(limiter: RateLimiter, callers: int, deadline: float) -> None:
    async def call() -> None:
        while True:
            await limiter.aacquire()

    tasks = [asyncio.create_task(call()) for _ in range(callers)]
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--worker"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m benchmarks.redis_limiter --worker SPEC_JSON")
    _worker(WorkerSpec(**json.loads(sys.argv[2])))
