"""The full middleware stack against raw ``litellm.acompletion``, every call a cache miss.

Contenders, calling the loopback server (a separate process) with the same model and
messages of the same size, each call with a message never sent before:

- ``full stack``: ``with_logging(with_metrics(with_cache(with_retries(with_rate_limit(bound,
  limiter)))))`` over ``bind_acompletion(MODEL, ...)`` (see ``_stack.py``): logging formats
  every record (to a null stream), metrics aggregate, the memory cache misses and stores the
  answer, retries make one attempt, the limiter counts tokens but never waits.
- ``litellm``: ``litellm.acompletion(model=..., api_base=..., api_key=..., messages=...)``,
  given an aiohttp session of its own only if the bound object passes one to litellm (the
  same HTTP client set-up on both sides, as in the ``overhead`` section).

Concurrency 1 (turns call by call) and 64 (bursts of 64 calls started together), both in
rounds with a shuffled order; the bar is on the median of the per-round latency ratios.

A low-noise cross-check: the stack's own work per call, timed over a no-op
``litellm.acompletion`` that returns a ready answer, divided by a raw call's latency.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from benchmarks._litellm import MODEL, close_clients
from benchmarks._report import RunConfig, SectionResult, Table
from benchmarks._server import ServerProcess
from benchmarks._stack import (
    NOT_BINDING,
    TOKEN_BUDGET,
    full_stack,
    null_logger,
    unique_messages,
)
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
    InMemoryMetrics,
    MemoryCacheStore,
    MessageParam,
    RateLimiter,
    bind_acompletion,
    with_cache,
    with_logging,
    with_metrics,
    with_rate_limit,
    with_retries,
)

TITLE = "Full middleware stack (cache misses) vs raw litellm.acompletion"

BAR = 1.05
"""The full stack may take at most 5% longer than the raw litellm call."""

STACK = "full stack"
RAW = "litellm"
CONTENDERS = (STACK, RAW)
DIRECT = "the no-op, called directly"

Call = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Sizes:
    """How much to measure.

    Attributes:
        concurrency: Callers of the concurrent scenario.
        rounds: Rounds per scenario.
        cycles: Calls per contender per round at concurrency 1.
        bursts: Bursts per contender per round in the concurrent scenario.
        probe_calls: Calls per block in the measurement of the stack's own work.
    """

    concurrency: int
    rounds: int
    cycles: int
    bursts: int
    probe_calls: int


FULL = Sizes(concurrency=64, rounds=12, cycles=40, bursts=4, probe_calls=2_000)
QUICK = Sizes(concurrency=16, rounds=1, cycles=3, bursts=1, probe_calls=100)


def run(config: RunConfig) -> SectionResult:
    """Measure the full stack against raw litellm and report it."""
    sizes = QUICK if config.quick else FULL
    result = SectionResult(TITLE)
    with ServerProcess() as server:
        measured = asyncio.run(_measure(server.base_url, sizes, config.seed), debug=False)
    _report(result, config, sizes, *measured)
    return result


FULL_STACK = "full stack (as measured above)"
TOKEN_STACK = "full stack, the limiter also with a token budget"


@dataclass(frozen=True)
class StackProbe:
    """The layers' own part of a miss, seen through a no-op ``litellm.acompletion``.

    Attributes:
        direct_seconds: Per call of the no-op called directly with the same keywords.
        chains: Per call of each chain of layers over the bound no-op, by label.
        forwarded: The keywords the bound object handed to litellm.
    """

    direct_seconds: float
    chains: dict[str, float]
    forwarded: tuple[str, ...]

    def own_seconds(self, label: str) -> float:
        """What the chain ``label`` adds to each (missing) call."""
        return self.chains[label] - self.direct_seconds

    @property
    def passes_session(self) -> bool:
        """Whether the bound object hands litellm an HTTP session of its own."""
        return "shared_session" in self.forwarded


async def _measure(
    base_url: str, sizes: Sizes, seed: int
) -> tuple[dict[int, dict[str, list[Batch]]], StackProbe, InMemoryMetrics]:
    rng = random.Random(seed)
    levels = (1, sizes.concurrency)
    batches: dict[int, dict[str, list[Batch]]] = {
        level: {name: [] for name in CONTENDERS} for level in levels
    }
    probe = await _probe_stack(base_url, sizes.probe_calls, rng)
    async with AsyncExitStack() as stack:
        calls, metrics = await _contenders(base_url, probe.passes_session, stack)
        for level in levels:  # Warm up: connections, litellm's caches, the tokenizer.
            for call in calls.values():
                await time_calls(call, calls=level, concurrency=level)
        await settle()
        with frozen_heap():
            for _ in range(sizes.rounds):
                for level in levels:
                    if level == 1:
                        measured = await time_interleaved(calls, cycles=sizes.cycles, rng=rng)
                    else:
                        measured = await time_bursts(
                            calls, bursts=sizes.bursts, concurrency=level, rng=rng
                        )
                    await settle()
                    for name, batch in measured.items():
                        batches[level][name].append(batch)
    return batches, probe, metrics


async def _contenders(
    base_url: str, passes_session: bool, stack: AsyncExitStack
) -> tuple[dict[str, Call], InMemoryMetrics]:
    import aiohttp
    import litellm

    stack.push_async_callback(close_clients)
    # Own API keys: litellm caches its OpenAI client per key (see overhead.py).
    bound = bind_acompletion(MODEL, api_base=base_url, api_key="sk-bench-stack")
    stack.push_async_callback(bound.aclose)
    metrics = InMemoryMetrics()
    chat = full_stack(bound, store=MemoryCacheStore(), metrics=metrics, logger=null_logger("stack"))
    raw_extra: dict[str, Any] = {}
    if passes_session:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        stack.push_async_callback(session.close)
        raw_extra["shared_session"] = session
    stack_messages = unique_messages("stack")
    raw_messages = unique_messages("raw")

    async def call_stack() -> object:
        return await chat(messages=next(stack_messages))

    async def call_raw() -> object:
        response: object = await litellm.acompletion(
            model=MODEL,
            api_base=base_url,
            api_key="sk-bench-stack-raw",
            messages=next(raw_messages),
            **raw_extra,
        )
        return response

    return {STACK: call_stack, RAW: call_raw}, metrics


async def _probe_stack(base_url: str, calls: int, rng: random.Random) -> StackProbe:
    """Time chains of layers and a direct call over a no-op ``acompletion`` with an answer.

    litellm.acompletion is swapped for the no-op only while the bound object is made: the
    binding resolves the function once, at bind time (checked below). Every call sends a
    new message, so every cache lookup misses and stores.
    """
    import litellm

    answer = litellm.ModelResponse(
        model=MODEL,
        choices=[{"message": {"role": "assistant", "content": "Hello from the no-op."}}],
        usage={"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    )
    seen: dict[str, object] = {}

    async def no_op(**kwargs: object) -> object:
        seen.update(kwargs)
        return answer

    original = litellm.acompletion
    litellm.acompletion = no_op
    try:
        bound = bind_acompletion(MODEL, api_base=base_url, api_key="sk-bench-stack-no-op")
    finally:
        litellm.acompletion = original
    logger = null_logger("probe")
    chains: dict[str, AFixedModelCompletion] = {
        FULL_STACK: full_stack(bound, store=MemoryCacheStore(), metrics=InMemoryMetrics(),
                               logger=logger),
        TOKEN_STACK: full_stack(bound, store=MemoryCacheStore(), metrics=InMemoryMetrics(),
                                logger=logger, limiter=RateLimiter(TOKEN_BUDGET)),
        "with_logging(with_metrics(bound))": with_logging(
            with_metrics(bound, InMemoryMetrics()), logger=logger
        ),
        "with_cache(bound), a miss": with_cache(bound, MemoryCacheStore()),
        "with_retries(bound)": with_retries(bound),
        "with_rate_limit(bound), request budget": with_rate_limit(
            bound, RateLimiter(NOT_BINDING)
        ),
        "with_rate_limit(bound), request and token budgets": with_rate_limit(
            bound, RateLimiter(TOKEN_BUDGET)
        ),
    }  # fmt: skip
    messages: Iterator[list[MessageParam]] = unique_messages("probe")

    def block_of(chain: AFixedModelCompletion) -> Callable[[], Awaitable[None]]:
        async def block() -> None:
            for _ in range(calls):
                await chain(messages=next(messages))

        return block

    async def direct_block() -> None:
        for _ in range(calls):
            await no_op(
                model=MODEL,
                api_base=base_url,
                api_key="sk-bench-stack-no-op",
                messages=next(messages),
            )

    runs = {DIRECT: direct_block, **{label: block_of(chain) for label, chain in chains.items()}}
    try:
        await bound(messages=next(messages))
        if not seen:
            raise RuntimeError("the bound object did not call the no-op bound in its place")
        forwarded = tuple(sorted(seen))  # What the bound object alone hands litellm.
        for chain in chains.values():
            await chain(messages=next(messages))  # Also loads the tokenizer.
        blocks: dict[str, list[float]] = {label: [] for label in runs}
        with frozen_heap():
            for _ in range(5):
                for label in shuffled(list(runs), rng):
                    start = time.perf_counter()
                    await runs[label]()
                    blocks[label].append((time.perf_counter() - start) / calls)
    finally:
        await bound.aclose()
    per_call = {label: statistics.median(values) for label, values in blocks.items()}
    direct = per_call.pop(DIRECT)
    return StackProbe(direct, per_call, forwarded)


def _report(
    result: SectionResult,
    config: RunConfig,
    sizes: Sizes,
    batches: dict[int, dict[str, list[Batch]]],
    probe: StackProbe,
    metrics: InMemoryMetrics,
) -> None:
    latency = Table(
        ("scenario", "contender", "median ms/call", "min-max (round medians)", "calls/s",
         "CPU ms/call"),
        title="Per-call latency (every call a cache miss): median over rounds of round medians",
    )  # fmt: skip
    ratios = Table(
        ("scenario", "comparison", "latency ratio", "bar", "result", "CPU/call ratio"),
        title="Ratios, paired round by round: median (min-max over rounds)",
    )
    setup = "both pass their own aiohttp session" if probe.passes_session else "litellm's client"
    for level, by_name in batches.items():
        label = f"non-stream, c={level}"
        medians: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for name in CONTENDERS:
            rounds = by_name[name]
            medians[name] = [batch.median_latency for batch in rounds]
            cpu[name] = [batch.cpu_per_call for batch in rounds]
            summary = summarize(medians[name])
            latency.add(
                label,
                name,
                ms(summary.median),
                ms_range(summary),
                f"{statistics.median(batch.calls_per_second for batch in rounds):.0f}",
                ms(statistics.median(cpu[name])),
            )
        summary = paired_ratios(medians[STACK], medians[RAW])
        verdict = result.bar(
            config,
            f"stack {label}: {STACK} / {RAW}",
            summary.median <= BAR,
            within_noise=summary.unsure_about(BAR),
        )
        ratios.add(
            label,
            f"{STACK} / {RAW} ({setup} on both sides)",
            ratio(summary),
            f"≤ {BAR}",
            verdict,
            ratio(paired_ratios(cpu[STACK], cpu[RAW])),
        )
    raw_call = summarize([batch.median_latency for batch in batches[1][RAW]]).median
    own = probe.own_seconds(FULL_STACK)
    decomposed = 1 + own / raw_call
    ratios.add(
        "non-stream, c=1",
        f"{STACK} / {RAW}, decomposed: 1 + the stack's own work / raw call",
        f"{decomposed:.4f}",
        f"≤ {BAR}",
        result.bar(config, "stack: 1 + the stack's own work / raw call", decomposed <= BAR),
        "",
    )
    layers = Table(
        ("layers over the bound no-op", "own work µs/call", "share of a raw call at c=1"),
        title="Own work per cache miss, by layer: time over a no-op litellm.acompletion "
        "returning a ready answer, less the no-op called directly (median of 5 blocks)",
    )
    for label in probe.chains:
        seconds = probe.own_seconds(label)
        layers.add(label, f"{seconds * 1e6:.0f}", f"{seconds / raw_call:.2%}")
    result.tables += [latency, ratios, layers]
    seen = metrics.summary()
    result.notes += [
        f"Decomposed row: the stack's own work per miss, {own * 1e6:.0f} µs (first row of "
        f"the last table), over a raw call at c=1 ({raw_call * 1e3:.2f} ms): the low-noise "
        "way to the same ratio. The no-op called directly takes "
        f"{probe.direct_seconds * 1e6:.1f} µs.",
        "The measured stack's limiter has a request budget only. A token budget makes it "
        "count each call's tokens with litellm.token_counter (the last row), which the "
        "second row adds to the stack.",
        f"The stack's metrics saw {seen.calls} calls: {seen.cache_hits} cache hits, "
        f"{seen.retries} retries, {seen.errors} errors (all should be 0 but the calls).",
        f"The bound object hands litellm: {', '.join(probe.forwarded)}; so the raw call uses "
        f"{setup}. In the stack, with_retries adds max_retries=0 and num_retries=0 (only it "
        "retries); the raw call passes neither.",
        f"Rounds: {sizes.rounds}; {sizes.cycles} calls per contender per round at c=1, "
        f"{sizes.bursts} burst(s) of {sizes.concurrency} at c={sizes.concurrency}.",
    ]
