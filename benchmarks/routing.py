"""The routing layers: their cost on a healthy call, failover latency, and Redis checks.

**Overhead.** Contenders, each calling the loopback server (a separate process) with the same
model and messages of the same size:

- ``bound``: ``bind_acompletion(MODEL, api_base=..., api_key=...)``;
- ``fallbacks``: ``with_fallbacks(bound, backup)``, the primary always answering;
- ``load balancing``: ``with_load_balancing([bound, bound2], "least_busy")``, two
  deployments of the same server (in-process cooldown store);
- ``budget``: ``with_budget(bound, Budget(max_cost=...))`` that never binds (in-process
  store): the worst case is counted and priced, reserved, then settled to litellm's price;
- ``bound, again``: a second bound object like the first (its own API key), no layer: the
  control. Its ratio to ``bound`` is what the method reads when nothing differs, so a layer's
  ratio is only told apart from 1 by more than the control's distance from 1.

Concurrency 1 and 64, in rounds with a shuffled order; each bar is on the median of the
per-round latency ratios. A low-noise cross-check times each layer's own work over a no-op
``litellm.acompletion`` and divides it by a bound call's latency.

**Failover latency.** Two in-process loopback servers; the primary answers every request
with 503. Per call, the time from the primary's error leaving the primary callable (litellm
has read and classified the 503) to the fallback's request arriving at its server (the same
monotonic clock): an upper bound of "503 arrived → fallback request left", which includes
litellm building the fallback's request and the loopback transit.

**Redis.** Against a ``redis-server`` of its own on 127.0.0.1: per call, a budget's
``reserve`` plus ``settle`` (what ``with_budget`` does for a non-stream call), and a
cooldown ``enter`` on a healthy deployment and on a cooling one.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

from benchmarks._litellm import MODEL, close_clients
from benchmarks._report import RunConfig, SectionResult, Table
from benchmarks._server import ServerProcess
from benchmarks._stack import unique_messages
from benchmarks._stats import (
    Batch,
    frozen_heap,
    ms,
    ms_range,
    paired_ratios,
    ratio,
    settle,
    shuffled,
    summarize,
    time_bursts,
    time_calls,
    time_interleaved,
)
from fixedmodel import (
    AFixedModelCompletion,
    Budget,
    CooldownPolicy,
    MessageParam,
    bind_acompletion,
    bind_completion,
    with_budget,
    with_fallbacks,
    with_load_balancing,
)

TITLE = "Routing: fallbacks, load balancing and budgets on a healthy call; failover; Redis"

BAR_OVERHEAD = 1.01
"""Each routing layer may make a healthy loopback call at most 1% slower."""

BAR_FAILOVER_MS = 2.0
"""Median milliseconds from the primary's 503 to the fallback's request (upper bound)."""

BAR_REDIS_P99_MS = 1.0
"""p99 milliseconds of a call's budget or cooldown check on a local redis-server."""

BOUND = "bound"
FALLBACKS = "fallbacks"
BALANCED = "load balancing"
BUDGET = "budget"
CONTROL = "bound, again"
CONTENDERS = (BOUND, FALLBACKS, BALANCED, BUDGET, CONTROL)
LAYERS = (FALLBACKS, BALANCED, BUDGET)

Call = Callable[[], Awaitable[object]]

FULL_SIZES = {
    "concurrency": 64,
    "rounds": 40,
    "cycles": 60,
    "bursts": 3,
    "probe_calls": 2_000,
    "failovers": 300,
    "redis_calls": 5_000,
}
QUICK_SIZES = {
    "concurrency": 8,
    "rounds": 1,
    "cycles": 3,
    "bursts": 1,
    "probe_calls": 50,
    "failovers": 20,
    "redis_calls": 100,
}


def _layered(name: str, bound: AFixedModelCompletion, spare: AFixedModelCompletion) -> Any:
    if name == FALLBACKS:
        return with_fallbacks(bound, spare)
    if name == BALANCED:
        return with_load_balancing([bound, spare], "least_busy")
    if name == BUDGET:
        return with_budget(bound, Budget(max_cost=1e6))
    return bound


def run(config: RunConfig) -> SectionResult:
    """Measure the routing layers and report them."""
    sizes = QUICK_SIZES if config.quick else FULL_SIZES
    result = SectionResult(TITLE)
    with ServerProcess() as server:
        batches, probe = asyncio.run(_measure(server.base_url, sizes, config.seed))
    _report_overhead(result, config, sizes, batches, probe)
    _report_failover(result, config, _failover(sizes["failovers"]))
    _report_redis(result, config, _redis(sizes["redis_calls"]))
    return result


async def _measure(
    base_url: str, sizes: dict[str, int], seed: int
) -> tuple[dict[int, dict[str, list[Batch]]], dict[str, float]]:
    rng = random.Random(seed)
    levels = (1, sizes["concurrency"])
    batches: dict[int, dict[str, list[Batch]]] = {
        level: {name: [] for name in CONTENDERS} for level in levels
    }
    probe = await _probe(base_url, sizes["probe_calls"], rng)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(close_clients)
        calls: dict[str, Call] = {}
        for name in CONTENDERS:
            # Own API keys: litellm caches its OpenAI client per key (see overhead.py).
            bound = bind_acompletion(MODEL, api_base=base_url, api_key=f"sk-bench-{name}")
            spare = bind_acompletion(MODEL, api_base=base_url, api_key=f"sk-bench-{name}-2")
            stack.push_async_callback(bound.aclose)
            stack.push_async_callback(spare.aclose)
            calls[name] = _caller(_layered(name, bound, spare), unique_messages(name))
        for level in levels:  # Warm up: connections, litellm's caches, both deployments.
            for call in calls.values():
                await time_calls(call, calls=2 * level, concurrency=level)
        await settle()
        with frozen_heap():
            for _ in range(sizes["rounds"]):
                for level in levels:
                    if level == 1:
                        measured = await time_interleaved(calls, cycles=sizes["cycles"], rng=rng)
                    else:
                        measured = await time_bursts(
                            calls, bursts=sizes["bursts"], concurrency=level, rng=rng
                        )
                    await settle()
                    for name, batch in measured.items():
                        batches[level][name].append(batch)
    return batches, probe


def _caller(chat: AFixedModelCompletion, messages: Iterator[list[MessageParam]]) -> Call:
    async def call() -> object:
        return await chat(messages=next(messages), max_tokens=64)

    return call


async def _probe(base_url: str, calls: int, rng: random.Random) -> dict[str, float]:
    """Seconds per call of the bound no-op alone and under each routing layer."""
    import litellm

    answer = litellm.ModelResponse(
        model=MODEL,
        choices=[{"message": {"role": "assistant", "content": "Hello from the no-op."}}],
        usage={"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    )
    # litellm prices every real answer into its hidden parameters; with_budget reads it.
    answer._hidden_params["response_cost"] = 4.8e-06

    async def no_op(**kwargs: object) -> object:
        return answer

    original = litellm.acompletion
    litellm.acompletion = no_op
    try:
        bound = bind_acompletion(MODEL, api_base=base_url, api_key="sk-bench-probe")
        spare = bind_acompletion(MODEL, api_base=base_url, api_key="sk-bench-probe-2")
    finally:
        litellm.acompletion = original
    chains: dict[str, AFixedModelCompletion] = {
        name: _layered(name, bound, spare) for name in CONTENDERS
    }
    messages = unique_messages("probe")
    blocks: dict[str, list[float]] = {label: [] for label in chains}
    for chain in chains.values():
        await chain(messages=next(messages), max_tokens=64)
    with frozen_heap():
        for _ in range(5):
            for label in shuffled(list(chains), rng):
                chain = chains[label]
                start = time.perf_counter()
                for _ in range(calls):
                    await chain(messages=next(messages), max_tokens=64)
                blocks[label].append((time.perf_counter() - start) / calls)
    return {label: statistics.median(values) for label, values in blocks.items()}


def _report_overhead(
    result: SectionResult,
    config: RunConfig,
    sizes: dict[str, int],
    batches: dict[int, dict[str, list[Batch]]],
    probe: dict[str, float],
) -> None:
    latency = Table(
        ("scenario", "contender", "median ms/call", "min-max (round medians)", "CPU ms/call"),
        title="Per-call latency, no failures: median over rounds of round medians",
    )
    ratios = Table(
        ("scenario", "comparison", "latency ratio", "bar", "result", "CPU/call ratio"),
        title="Ratios, paired round by round: median (min-max over rounds)",
    )
    for level, by_name in batches.items():
        label = f"non-stream, c={level}"
        medians = {name: [b.median_latency for b in by_name[name]] for name in CONTENDERS}
        cpu = {name: [b.cpu_per_call for b in by_name[name]] for name in CONTENDERS}
        for name in CONTENDERS:
            summary = summarize(medians[name])
            latency.add(
                label, name, ms(summary.median), ms_range(summary),
                ms(statistics.median(cpu[name])),
            )  # fmt: skip
        control = paired_ratios(medians[CONTROL], medians[BOUND])
        ratios.add(
            label, f"control: {CONTROL} / {BOUND}", ratio(control), "(the method's noise)", "",
            ratio(paired_ratios(cpu[CONTROL], cpu[BOUND])),
        )  # fmt: skip
        for name in LAYERS:
            summary = paired_ratios(medians[name], medians[BOUND])
            verdict = result.bar(
                config,
                f"routing {label}: {name} / {BOUND}",
                summary.median <= BAR_OVERHEAD,
                within_noise=summary.unsure_about(BAR_OVERHEAD),
            )
            ratios.add(
                label, f"{name} / {BOUND}", ratio(summary), f"≤ {BAR_OVERHEAD}", verdict,
                ratio(paired_ratios(cpu[name], cpu[BOUND])),
            )  # fmt: skip
    call = summarize([batch.median_latency for batch in batches[1][BOUND]]).median
    for name in LAYERS:
        own = probe[name] - probe[BOUND]
        decomposed = 1 + own / call
        ratios.add(
            "non-stream, c=1",
            f"{name}, decomposed: 1 + the layer's own work / bound call",
            f"{decomposed:.4f}",
            f"≤ {BAR_OVERHEAD}",
            result.bar(
                config, f"routing: 1 + {name}'s own work / bound call", decomposed <= BAR_OVERHEAD
            ),
            "",
        )
        result.notes.append(
            f"{name}: the layer's own work is {own * 1e6:.1f} µs per call over a no-op "
            f"litellm.acompletion (bound no-op alone {probe[BOUND] * 1e6:.1f} µs), against a "
            f"bound call of {call * 1e3:.2f} ms at c=1."
        )
    result.tables += [latency, ratios]
    result.notes.append(
        f"Rounds: {sizes['rounds']}; {sizes['cycles']} calls per contender per round at c=1, "
        f"{sizes['bursts']} burst(s) of {sizes['concurrency']} at c={sizes['concurrency']}."
    )


def _failover(calls: int) -> dict[str, list[float]]:
    """Seconds of each failover leg, and of a direct call to the fallback for reference."""
    from fixedmodel.testing.server import OpenAIServer

    raised_at: list[float] = []
    entered_at: list[float] = []

    class Timed:
        """A callable noting when it is entered and when an error leaves it."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.model = inner.model

        def __call__(self, **kwargs: Any) -> Any:
            entered_at.append(time.monotonic())
            try:
                return self.inner(**kwargs)
            except Exception:
                raised_at.append(time.monotonic())
                raise

    with OpenAIServer() as primary_server, OpenAIServer() as backup_server:
        primary_server.random_faults(rate=1.0, statuses=(503,))
        with (
            bind_completion(MODEL, api_base=primary_server.base_url, api_key="k") as primary,
            bind_completion(MODEL, api_base=backup_server.base_url, api_key="k") as backup,
        ):
            chat = with_fallbacks(Timed(primary), Timed(backup))  # type: ignore[call-overload]
            direct = Timed(backup)
            messages = unique_messages("failover")
            for _ in range(5):  # Warm up both connections.
                chat(messages=next(messages))
            handoffs: list[float] = []
            to_server: list[float] = []
            reference: list[float] = []
            for _ in range(calls):
                raised_at.clear()
                entered_at.clear()
                chat(messages=next(messages))
                arrived = backup_server.requests[-1].arrived_at
                handoffs.append(entered_at[1] - raised_at[0])
                to_server.append(arrived - raised_at[0])
                entered_at.clear()
                direct(messages=next(messages), max_retries=0)
                reference.append(backup_server.requests[-1].arrived_at - entered_at[0])
    return {
        "hand-off: primary's error out → fallback callable entered": handoffs,
        "primary's error out → fallback's request at its server (bar)": to_server,
        "reference: fallback called directly → its request at its server": reference,
    }


def _report_failover(
    result: SectionResult, config: RunConfig, legs: dict[str, list[float]]
) -> None:
    table = Table(
        ("measure", "calls", "median ms", "p90 ms", "max ms", "bar", "result"),
        title="Failover on a 503 (sync calls, in-process loopback servers)",
    )
    for name, values in legs.items():
        ordered = sorted(values)
        median = statistics.median(ordered)
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        checked = name.endswith("(bar)")
        verdict = (
            result.bar(config, "failover median", median * 1e3 <= BAR_FAILOVER_MS)
            if checked
            else ""
        )
        table.add(
            name, str(len(values)), ms(median), ms(p90), ms(ordered[-1]),
            f"median ≤ {BAR_FAILOVER_MS} ms" if checked else "", verdict,
        )  # fmt: skip
    result.tables.append(table)
    result.notes.append(
        'The barred leg is an upper bound of "503 arrived → fallback request left": it also '
        "holds litellm building the fallback's request (the reference row) and the loopback "
        "transit. with_fallbacks itself neither sleeps nor waits between callables (hand-off)."
    )


def _redis(calls: int) -> dict[str, list[float]]:
    """Seconds per budget check (reserve + settle) and per cooldown enter, on Redis."""
    from fixedmodel import RedisBudgetStore, RedisCooldownStore
    from fixedmodel.stores._budget_store import Caps
    from tests.integration.redis_server import RedisServer

    timings: dict[str, list[float]] = {
        "budget: reserve + settle": [],
        "cooldown: enter, healthy": [],
        "cooldown: enter, cooling": [],
    }
    policy = CooldownPolicy()
    caps = Caps(cost=10**15, tokens=None, requests=None, period=86400.0)
    with (
        RedisServer() as server,
        RedisBudgetStore(server.url) as budget,
        RedisCooldownStore(server.url) as cooldown,
    ):
        cooldown.failed("cooling", policy, probe=False, cool_for=3600.0)
        for number in range(50):  # Warm up: connection, script load.
            budget.reserve("b", caps, f"w{number}", 1000, 10)
            budget.settle("b", caps, f"w{number}", 990, 9)
            cooldown.enter("healthy", policy)
            cooldown.enter("cooling", policy)
        with frozen_heap():
            for number in range(calls):
                start = time.perf_counter()
                budget.reserve("b", caps, f"r{number}", 1000, 10)
                budget.settle("b", caps, f"r{number}", 990, 9)
                middle = time.perf_counter()
                cooldown.enter("healthy", policy)
                healthy = time.perf_counter()
                cooldown.enter("cooling", policy)
                end = time.perf_counter()
                timings["budget: reserve + settle"].append(middle - start)
                timings["cooldown: enter, healthy"].append(healthy - middle)
                timings["cooldown: enter, cooling"].append(end - healthy)
    return timings


def _report_redis(
    result: SectionResult, config: RunConfig, timings: dict[str, list[float]]
) -> None:
    table = Table(
        ("check", "calls", "median ms", "p99 ms", "bar", "result"),
        title="Per-call checks on a local redis-server (sync client, one process)",
    )
    for name, values in timings.items():
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        verdict = result.bar(config, f"redis {name} p99", p99 * 1e3 <= BAR_REDIS_P99_MS)
        table.add(
            name, str(len(values)), ms(statistics.median(ordered)), ms(p99),
            f"p99 ≤ {BAR_REDIS_P99_MS} ms", verdict,
        )  # fmt: skip
    result.tables.append(table)
    result.notes.append(
        "A non-stream call through with_budget on Redis makes two script calls (reserve, then "
        "settle); through with_load_balancing one per deployment asked (a deployment known to "
        "be cooling is not asked again for up to 1 s)."
    )
