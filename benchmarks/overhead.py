"""Call overhead: a bound fixedmodel call against the same call made on litellm directly.

Contenders, all calling the loopback server (a separate process) with the same model and
messages:

- ``fixedmodel``: ``bind_acompletion(MODEL, api_base=..., api_key=...)(messages=...)``.
- ``litellm``: ``litellm.acompletion(model=..., api_base=..., api_key=..., messages=...)``,
  which uses the HTTP client litellm makes and caches itself.
- ``litellm + shared_session``: the same raw call given a plain aiohttp session of its own.
- ``openai SDK``: ``openai.AsyncOpenAI(base_url=..., api_key=...)``, for reference.

The bar compares fixedmodel with the raw call that uses the same HTTP client set-up: the
section checks which keywords the bound object hands litellm (through a no-op
``acompletion``) and picks ``litellm + shared_session`` if they include ``shared_session``,
``litellm`` otherwise. The same probe times fixedmodel's own work per call.

Each scenario (stream or not, 1 or 64 concurrent callers) runs in rounds. At concurrency 1 the
contenders take turns call by call, at 64 burst by burst (64 calls started together), in a
shuffled order. Ratios are of per-round median latencies (and of CPU time per call).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

from benchmarks._litellm import MESSAGES, MODEL, close_clients
from benchmarks._report import RunConfig, SectionResult, Table
from benchmarks._server import ServerProcess
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

TITLE = "Call overhead: fixedmodel bound call vs raw litellm.acompletion"

BAR = 1.02
"""The bound call may take at most 2% longer than the equivalent raw litellm call."""

BOUND = "fixedmodel"
RAW = "litellm"
RAW_SESSION = "litellm + shared_session"
SDK = "openai SDK"
CONTENDERS = (BOUND, RAW, RAW_SESSION, SDK)

Call = Callable[[bool], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    """One way of calling: streamed or not, by how many concurrent callers."""

    stream: bool
    concurrency: int

    @property
    def label(self) -> str:
        """E.g. ``"stream, c=64"``."""
        return f"{'stream' if self.stream else 'non-stream'}, c={self.concurrency}"


@dataclass(frozen=True)
class Sizes:
    """How much to measure.

    Attributes:
        concurrency: The number of concurrent callers of the concurrent scenarios.
        rounds: Rounds per scenario.
        cycles: Calls per contender per round at concurrency 1.
        bursts: Bursts (``concurrency`` calls started together) per contender per round in
            the concurrent scenarios.
        binding_calls: Calls per block in the measurement of fixedmodel's own work.
    """

    concurrency: int
    rounds: int
    cycles: int
    bursts: int
    binding_calls: int

    @property
    def scenarios(self) -> tuple[Scenario, ...]:
        """Non-stream and stream, one caller and many."""
        return tuple(
            Scenario(stream, concurrency)
            for concurrency in (1, self.concurrency)
            for stream in (False, True)
        )


FULL = Sizes(concurrency=64, rounds=12, cycles=60, bursts=3, binding_calls=20_000)
# Small enough for the test command on a busy machine: it only has to run, not to measure.
QUICK = Sizes(concurrency=16, rounds=1, cycles=3, bursts=1, binding_calls=1_000)


def run(config: RunConfig) -> SectionResult:
    """Measure the call overhead and report it."""
    sizes = QUICK if config.quick else FULL
    result = SectionResult(TITLE)
    with ServerProcess() as server:
        batches, probe = asyncio.run(_measure(server.base_url, sizes, config.seed), debug=False)
    _report(result, config, batches, probe)
    return result


async def _measure(
    base_url: str, sizes: Sizes, seed: int
) -> tuple[dict[Scenario, dict[str, list[Batch]]], BindingProbe]:
    rng = random.Random(seed)
    batches: dict[Scenario, dict[str, list[Batch]]] = {
        scenario: {name: [] for name in CONTENDERS} for scenario in sizes.scenarios
    }
    async with AsyncExitStack() as stack:
        calls = await _contenders(base_url, stack)
        for scenario in sizes.scenarios:  # Warm up: open connections, fill litellm's caches.
            for call in calls.values():
                warm, workers = partial(call, scenario.stream), scenario.concurrency
                await time_calls(warm, calls=workers, concurrency=workers)
        await settle()
        with frozen_heap():
            for _ in range(sizes.rounds):
                for scenario in sizes.scenarios:
                    measured = await _round(calls, scenario, sizes, rng)
                    for name, batch in measured.items():
                        batches[scenario][name].append(batch)
            probe = await _probe_binding(base_url, sizes.binding_calls, rng)
    return batches, probe


async def _round(
    calls: dict[str, Call], scenario: Scenario, sizes: Sizes, rng: random.Random
) -> dict[str, Batch]:
    of_scenario = {name: partial(call, scenario.stream) for name, call in calls.items()}
    if scenario.concurrency == 1:
        measured = await time_interleaved(of_scenario, cycles=sizes.cycles, rng=rng)
    else:
        measured = await time_bursts(
            of_scenario, bursts=sizes.bursts, concurrency=scenario.concurrency, rng=rng
        )
    await settle()
    return measured


async def _contenders(base_url: str, stack: AsyncExitStack) -> dict[str, Call]:
    import aiohttp
    import litellm
    import openai

    import fixedmodel

    stack.push_async_callback(close_clients)
    # Each contender gets its own API key: litellm caches its OpenAI client under a key made of
    # api_key, api_base, timeout, ... but not shared_session, so contenders sharing a key would
    # share whichever HTTP client the first of them created.
    bound = fixedmodel.bind_acompletion(MODEL, api_base=base_url, api_key="sk-bench-bound")
    stack.push_async_callback(bound.aclose)
    # A plain session, as a binding owning its own would make it: no cookies, no env proxies.
    session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
    stack.push_async_callback(session.close)
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench-sdk")
    stack.push_async_callback(sdk.close)
    raw_model = MODEL.split("/", 1)[1]

    async def call_bound(stream: bool) -> None:
        await _drain(await bound(messages=MESSAGES, stream=stream), stream)

    async def call_raw(stream: bool) -> None:
        response: object = await litellm.acompletion(
            model=MODEL,
            api_base=base_url,
            api_key="sk-bench-raw",
            messages=MESSAGES,
            stream=stream,
        )
        await _drain(response, stream)

    async def call_raw_session(stream: bool) -> None:
        response: object = await litellm.acompletion(
            model=MODEL,
            api_base=base_url,
            api_key="sk-bench-raw-session",
            messages=MESSAGES,
            stream=stream,
            shared_session=session,
        )
        await _drain(response, stream)

    async def call_sdk(stream: bool) -> None:
        messages: Any = MESSAGES  # Any: the SDK wants its own TypedDicts; the data is the same.
        response = await sdk.chat.completions.create(
            model=raw_model, messages=messages, stream=stream
        )
        await _drain(response, stream)

    return {BOUND: call_bound, RAW: call_raw, RAW_SESSION: call_raw_session, SDK: call_sdk}


async def _drain(response: object, stream: bool) -> None:
    """Read a streamed response to its end (a call is measured until its last chunk)."""
    if not stream:
        return
    if not isinstance(response, AsyncIterable):
        msg = f"a streamed call returned {type(response).__name__}, not an async iterable"
        raise TypeError(msg)
    async for _ in response:  # pyright: ignore[reportUnknownVariableType]
        pass


@dataclass(frozen=True)
class BindingProbe:
    """fixedmodel's own part of a call, seen through a no-op ``litellm.acompletion``.

    Attributes:
        bound_seconds: Per call of the bound object, to the no-op.
        direct_seconds: Per call of the no-op called directly with the same keywords.
        forwarded: The keywords the bound object handed to litellm.
    """

    bound_seconds: float
    direct_seconds: float
    forwarded: tuple[str, ...]

    @property
    def own_seconds(self) -> float:
        """What fixedmodel adds to each call: merging defaults, checking keywords, ..."""
        return self.bound_seconds - self.direct_seconds

    @property
    def passes_session(self) -> bool:
        """Whether the bound object hands litellm an HTTP session of its own."""
        return "shared_session" in self.forwarded


async def _probe_binding(base_url: str, calls: int, rng: random.Random) -> BindingProbe:
    """Time a bound call and a direct call to a no-op ``acompletion``, and see what is passed.

    litellm.acompletion is swapped for the no-op only while the bound object is made: the
    binding resolves the function once, at bind time (checked below).
    """
    import litellm

    import fixedmodel

    seen: dict[str, object] = {}

    async def no_op(**kwargs: object) -> None:
        seen.update(kwargs)

    original = litellm.acompletion
    litellm.acompletion = no_op
    try:
        bound = fixedmodel.bind_acompletion(MODEL, api_base=base_url, api_key="sk-bench-no-op")
    finally:
        litellm.acompletion = original

    async def bound_block() -> None:
        for _ in range(calls):
            await bound(messages=MESSAGES)

    async def direct_block() -> None:
        for _ in range(calls):
            await no_op(model=MODEL, api_base=base_url, api_key="sk-bench-no-op", messages=MESSAGES)

    try:
        await bound(messages=MESSAGES)
        if not seen:
            raise RuntimeError("the bound object did not call the no-op bound in its place")
        forwarded = tuple(sorted(seen))
        blocks: dict[str, list[float]] = {"bound": [], "direct": []}
        runs = {"bound": bound_block, "direct": direct_block}
        for _ in range(5):
            for name in shuffled(list(runs), rng):
                start = time.perf_counter()
                await runs[name]()
                blocks[name].append((time.perf_counter() - start) / calls)
    finally:
        await bound.aclose()
    return BindingProbe(
        statistics.median(blocks["bound"]), statistics.median(blocks["direct"]), forwarded
    )


def _report(
    result: SectionResult,
    config: RunConfig,
    batches: dict[Scenario, dict[str, list[Batch]]],
    probe: BindingProbe,
) -> None:
    scenarios = list(batches)
    # The fair raw call uses the same HTTP client set-up as the bound one.
    fair, other = (RAW_SESSION, RAW) if probe.passes_session else (RAW, RAW_SESSION)
    setup = (
        "both pass their own aiohttp session"
        if probe.passes_session
        else ("both use litellm's cached client")
    )
    latency = Table(
        ("scenario", "contender", "median ms/call", "min-max (round medians)", "calls/s",
         "CPU ms/call"),
        title="Per-call latency: median over rounds of each round's median",
    )  # fmt: skip
    ratios = Table(
        ("scenario", "comparison", "latency ratio", "bar", "result", "CPU/call ratio"),
        title="Ratios, paired round by round: median (min-max over rounds)",
    )
    comparisons = (
        (f"{BOUND} / {fair} ({setup}: fair)", BOUND, fair, True),
        (f"{BOUND} / {other} (different HTTP client set-up)", BOUND, other, False),
        (f"{RAW_SESSION} / {RAW} (the session alone)", RAW_SESSION, RAW, False),
        (f"{SDK} / {RAW} (reference)", SDK, RAW, False),
    )
    for scenario in scenarios:
        medians: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for name in CONTENDERS:
            rounds = batches[scenario][name]
            medians[name] = [batch.median_latency for batch in rounds]
            cpu[name] = [batch.cpu_per_call for batch in rounds]
            summary = summarize(medians[name])
            latency.add(
                scenario.label,
                name,
                ms(summary.median),
                ms_range(summary),
                f"{statistics.median(batch.calls_per_second for batch in rounds):.0f}",
                ms(statistics.median(cpu[name])),
            )
        for label, top, bottom, has_bar in comparisons:
            summary = paired_ratios(medians[top], medians[bottom])
            bar, verdict = "info", ""
            if has_bar:
                bar = f"≤ {BAR}"
                verdict = result.bar(
                    config,
                    f"overhead {scenario.label}: {top} / {bottom}",
                    summary.median <= BAR,
                    within_noise=summary.unsure_about(BAR),
                )
            cpu_ratio = ratio(paired_ratios(cpu[top], cpu[bottom]))
            ratios.add(scenario.label, label, ratio(summary), bar, verdict, cpu_ratio)

    raw_call = summarize([b.median_latency for b in batches[scenarios[0]][fair]]).median
    decomposed = 1 + probe.own_seconds / raw_call
    ratios.add(
        scenarios[0].label,
        f"{BOUND} / {fair}, decomposed: 1 + fixedmodel's own work / raw call",
        f"{decomposed:.4f}",
        f"≤ {BAR}",
        result.bar(config, "overhead: 1 + fixedmodel's own work / raw call", decomposed <= BAR),
        "",
    )
    result.tables += [latency, ratios]
    result.notes += [
        f"fixedmodel's own work per call, timed against a no-op litellm.acompletion: "
        f"{probe.own_seconds * 1e6:.1f} µs ({probe.bound_seconds * 1e6:.1f} µs bound vs "
        f"{probe.direct_seconds * 1e6:.1f} µs direct), i.e. {probe.own_seconds / raw_call:.3%} "
        f"of a non-stream raw call at c=1 ({raw_call * 1e3:.2f} ms): the low-noise way to the "
        "same ratio (last row).",
        f"The bound object hands litellm: {', '.join(probe.forwarded)}. So the fair raw call "
        f"is '{fair}' ({setup}); the other is shown for information.",
        f"Model {MODEL!r}. Each contender has its own API key because litellm's OpenAI-client "
        "cache key ignores shared_session: contenders sharing a key would share the HTTP "
        "client of whichever called first.",
    ]
