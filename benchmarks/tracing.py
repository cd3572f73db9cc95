"""``with_tracing`` against the same bound call without it, over the loopback server.

Contenders, each calling the loopback server (a separate process) with the same model and
messages of the same size:

- ``bound``: ``bind_acompletion(MODEL, api_base=..., api_key=...)``;
- ``traced, SDK``: ``with_tracing(bound2, ...)`` with the OpenTelemetry SDK's tracer and
  meter providers, spans exported to an in-memory exporter through a simple (synchronous)
  span processor, metrics kept by an in-memory reader: the most work per span the SDK does
  in-process;
- ``traced, no-op``: ``with_tracing(bound3)`` with no provider configured: the API's no-op
  tracer and meter, what a library user pays before any SDK is set up.

- ``bound, again``: a second bound object like the first, untraced: the control, whose ratio
  to ``bound`` shows the method's noise;
- ``SDK minimum, by hand``: the bound call wrapped by ``_by_hand`` (below), sharing the SDK
  providers of ``traced, SDK``.

Concurrency 1 and 64, in rounds with a shuffled order; each bar is on the median of the
per-round latency ratios. A low-noise cross-check times the layer's own work over a no-op
``litellm.acompletion`` and divides it by a call's latency. Beside it, the same over the no-op
for a hand-written minimum: one span and the three histogram records with the conventions'
attributes, made directly with the SDK (what any instrumentation that follows the
conventions pays the SDK), so that with_tracing's share can be told from the SDK's.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any, cast

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
from fixedmodel import AFixedModelCompletion, MessageParam, bind_acompletion, with_tracing

TITLE = "with_tracing vs the same bound call"

BAR_SDK = 1.02
"""With the SDK and an in-memory exporter, a traced call may take at most 2% longer."""

BAR_NO_OP = 1.005
"""With no provider configured (the API's no-op), at most 0.5% longer."""

BOUND = "bound"
SDK = "traced, SDK"
NO_OP = "traced, no-op"
CONTROL = "bound, again"
BY_HAND = "SDK minimum, by hand"
CONTENDERS = (BOUND, SDK, NO_OP, CONTROL, BY_HAND)
BARS = {SDK: BAR_SDK, NO_OP: BAR_NO_OP}

Call = Callable[[], Awaitable[object]]

FULL_SIZES = {"concurrency": 64, "rounds": 20, "cycles": 60, "bursts": 3, "probe_calls": 2_000}
QUICK_SIZES = {"concurrency": 8, "rounds": 1, "cycles": 3, "bursts": 1, "probe_calls": 50}


def _sdk() -> tuple[Any, Any, Any]:
    """Tracer provider, meter provider and span exporter of the SDK, all in memory."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tracer_provider, meter_provider, exporter


def run(config: RunConfig) -> SectionResult:
    """Measure with_tracing's cost and report it."""
    sizes = QUICK_SIZES if config.quick else FULL_SIZES
    result = SectionResult(TITLE)
    with ServerProcess() as server:
        batches, probe, spans = asyncio.run(_measure(server.base_url, sizes, config.seed))
    _report(result, config, sizes, batches, probe, spans)
    return result


async def _measure(
    base_url: str, sizes: dict[str, int], seed: int
) -> tuple[dict[int, dict[str, list[Batch]]], dict[str, float], int]:
    rng = random.Random(seed)
    levels = (1, sizes["concurrency"])
    batches: dict[int, dict[str, list[Batch]]] = {
        level: {name: [] for name in CONTENDERS} for level in levels
    }
    probe = await _probe(base_url, sizes["probe_calls"], rng)
    tracer_provider, meter_provider, exporter = _sdk()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(close_clients)
        calls: dict[str, Call] = {}
        for name in CONTENDERS:
            # Own API keys: litellm caches its OpenAI client per key (see overhead.py).
            bound = bind_acompletion(MODEL, api_base=base_url, api_key=f"sk-bench-{name}")
            stack.push_async_callback(bound.aclose)
            chat: AFixedModelCompletion = bound
            if name == SDK:
                chat = with_tracing(
                    bound, tracer_provider=tracer_provider, meter_provider=meter_provider
                )
            elif name == NO_OP:
                chat = with_tracing(bound)
            elif name == BY_HAND:
                chat = _by_hand(bound, tracer_provider, meter_provider, base_url)
            calls[name] = _caller(chat, unique_messages(name))
        for level in levels:  # Warm up: connections, litellm's caches.
            for call in calls.values():
                await time_calls(call, calls=level, concurrency=level)
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
                    exporter.clear()  # keep memory flat; the spans were made and exported
    spans = len(exporter.get_finished_spans())
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return batches, probe, spans


def _caller(chat: AFixedModelCompletion, messages: Iterator[list[MessageParam]]) -> Call:
    async def call() -> object:
        return await chat(messages=next(messages))

    return call


async def _probe(base_url: str, calls: int, rng: random.Random) -> dict[str, float]:
    """Seconds per call of the bound no-op alone and under each tracing set-up."""
    import litellm

    answer = litellm.ModelResponse(
        model=MODEL,
        choices=[{"message": {"role": "assistant", "content": "Hello from the no-op."}}],
        usage={"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    )

    async def no_op(**kwargs: object) -> object:
        return answer

    original = litellm.acompletion
    litellm.acompletion = no_op
    try:
        bound = bind_acompletion(MODEL, api_base=base_url, api_key="sk-bench-probe")
    finally:
        litellm.acompletion = original
    tracer_provider, meter_provider, exporter = _sdk()
    chains: dict[str, AFixedModelCompletion] = {
        BOUND: bound,
        SDK: with_tracing(bound, tracer_provider=tracer_provider, meter_provider=meter_provider),
        NO_OP: with_tracing(bound),
        BY_HAND: _by_hand(bound, tracer_provider, meter_provider, base_url),
    }
    messages = unique_messages("probe")
    blocks: dict[str, list[float]] = {label: [] for label in chains}
    for chain in chains.values():
        await chain(messages=next(messages))
    with frozen_heap():
        for _ in range(5):
            for label in shuffled(list(chains), rng):
                chain = chains[label]
                start = time.perf_counter()
                for _ in range(calls):
                    await chain(messages=next(messages))
                blocks[label].append((time.perf_counter() - start) / calls)
                exporter.clear()
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return {label: statistics.median(values) for label, values in blocks.items()}


def _by_hand(
    bound: AFixedModelCompletion, tracer_provider: Any, meter_provider: Any, base_url: str
) -> AFixedModelCompletion:
    """The least an instrumentation pays the SDK for the conventions' span and metrics.

    One CLIENT span with the request attributes at its start and the answer's at its end,
    current while the call runs, and the three histogram records with the metric
    attributes: what ``with_tracing`` records on a successful non-stream call, less its own
    ``fixedmodel.*`` attributes, with no request reading, no error handling, nothing general.
    """
    from urllib.parse import urlsplit

    from opentelemetry import context, trace

    tracer = tracer_provider.get_tracer("benchmark")
    meter = meter_provider.get_meter("benchmark")
    duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    server = urlsplit(base_url)
    started_with = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": MODEL,
        "server.address": server.hostname,
        "server.port": server.port,
    }

    async def call(**kwargs: Any) -> Any:
        span = tracer.start_span(
            f"chat {MODEL}", kind=trace.SpanKind.CLIENT, attributes=started_with
        )
        token = context.attach(trace.set_span_in_context(span))
        started = time.perf_counter()
        try:
            result: Any = cast("Any", await bound(**kwargs))
        finally:
            context.detach(token)
        span.set_attributes(
            {
                "gen_ai.response.id": result.id,
                "gen_ai.response.model": result.model,
                "gen_ai.response.finish_reasons": tuple(
                    choice.finish_reason for choice in result.choices
                ),
                "gen_ai.usage.input_tokens": result.usage.prompt_tokens,
                "gen_ai.usage.output_tokens": result.usage.completion_tokens,
            }
        )
        span.end()
        measured = {**started_with, "gen_ai.response.model": result.model}
        duration.record(time.perf_counter() - started, measured)
        tokens.record(result.usage.prompt_tokens, {**measured, "gen_ai.token.type": "input"})
        tokens.record(result.usage.completion_tokens, {**measured, "gen_ai.token.type": "output"})
        return result

    return cast("AFixedModelCompletion", call)


def _report(
    result: SectionResult,
    config: RunConfig,
    sizes: dict[str, int],
    batches: dict[int, dict[str, list[Batch]]],
    probe: dict[str, float],
    spans: int,
) -> None:
    latency = Table(
        ("scenario", "contender", "median ms/call", "min-max (round medians)", "CPU ms/call"),
        title="Per-call latency: median over rounds of round medians",
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
        minimum = paired_ratios(medians[BY_HAND], medians[BOUND])
        ratios.add(
            label, f"{BY_HAND} / {BOUND}", ratio(minimum), "(information: the SDK's share)", "",
            ratio(paired_ratios(cpu[BY_HAND], cpu[BOUND])),
        )  # fmt: skip
        for name, bar in BARS.items():
            summary = paired_ratios(medians[name], medians[BOUND])
            verdict = result.bar(
                config,
                f"tracing {label}: {name} / {BOUND}",
                summary.median <= bar,
                within_noise=summary.unsure_about(bar),
            )
            ratios.add(
                label, f"{name} / {BOUND}", ratio(summary), f"≤ {bar}", verdict,
                ratio(paired_ratios(cpu[name], cpu[BOUND])),
            )  # fmt: skip
    call = summarize([batch.median_latency for batch in batches[1][BOUND]]).median
    for name, bar in BARS.items():
        own = probe[name] - probe[BOUND]
        decomposed = 1 + own / call
        ratios.add(
            "non-stream, c=1",
            f"{name}, decomposed: 1 + the layer's own work / bound call",
            f"{decomposed:.4f}",
            f"≤ {bar}",
            result.bar(config, f"tracing: 1 + {name}'s own work / bound call", decomposed <= bar),
            "",
        )
        result.notes.append(
            f"{name}: the layer's own work is {own * 1e6:.1f} µs per call over a no-op "
            f"litellm.acompletion (bound no-op alone {probe[BOUND] * 1e6:.1f} µs), against a "
            f"bound call of {call * 1e3:.2f} ms at c=1."
        )
    floor = probe[BY_HAND] - probe[BOUND]
    ratios.add(
        "non-stream, c=1",
        f"{BY_HAND}: 1 + its work / bound call (information: the SDK's share)",
        f"{1 + floor / call:.4f}",
        "",
        "",
        "",
    )
    result.notes.append(
        f"{BY_HAND}: {floor * 1e6:.1f} µs per call over the no-op; with_tracing with the SDK "
        f"does {(probe[SDK] - probe[BY_HAND]) * 1e6:.1f} µs more (reading the request, the "
        "optional attributes, the fixedmodel.* attributes, errors and streams)."
    )
    result.tables += [latency, ratios]
    result.notes += [
        f"Spans left in the exporter after the last round: {spans} (cleared every round).",
        f"Rounds: {sizes['rounds']}; {sizes['cycles']} calls per contender per round at c=1, "
        f"{sizes['bursts']} burst(s) of {sizes['concurrency']} at c={sizes['concurrency']}.",
    ]
