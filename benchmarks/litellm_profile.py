"""Where litellm spends a non-stream ``acompletion``, and which call-time keywords make it cheaper.

Two measurements against the loopback server (a separate process):

1. cProfile over many sequential calls, summed into stages (provider lookup, parameter
   mapping, client lookup, HTTP, cost calculation, logging, ...). litellm runs part of each
   call in the loop's default executor (a thread cProfile would not see), so while profiling
   that executor runs its work inline. Profiling slows Python code down unevenly: read the
   shares, not the absolute times.
2. Unprofiled timing of the raw call with extra keywords a binding could fill in once at bind
   time (``custom_llm_provider``, prices, a prebuilt ``client``), interleaved call by call with
   the plain call and compared round by round.

This module only reports; it does not change fixedmodel.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import cProfile
import pstats
import random
import statistics
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from typing_extensions import ParamSpec

from benchmarks._litellm import MESSAGES, MODEL, close_clients
from benchmarks._report import RunConfig, SectionResult, Table
from benchmarks._server import ServerProcess
from benchmarks._stats import Batch, frozen_heap, ms, paired_ratios, ratio, settle, time_interleaved

TITLE = "Profile: litellm's per-call path, and what call-time keywords save"

UNKNOWN_MODEL = "openai/my-finetune"
"""A model name litellm's cost map does not know, like most self-hosted models."""

_API_KEY = "sk-bench-profile"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Stage:
    """A part of litellm's call path: a function, its file, and whether a binding can help."""

    label: str
    file_suffix: str
    function: str
    once: str


STAGES = (
    Stage("whole call: awaited part of acompletion", "litellm/utils.py", "wrapper_async", ""),
    Stage(
        "· logging object setup (function_setup)",
        "litellm/utils.py",
        "function_setup",
        "no: per call by design",
    ),
    Stage(
        "· provider lookups (get_llm_provider, all callers)",
        "get_llm_provider_logic.py",
        "get_llm_provider",
        "partly: bound objects pass custom_llm_provider",
    ),
    Stage("· sync part: completion(), run in the executor", "litellm/main.py", "completion", ""),
    Stage(
        "· · optional-params mapping (get_optional_params)",
        "litellm/utils.py",
        "get_optional_params",
        "no: depends on each call's keywords",
    ),
    Stage(
        "· · · supported-params lookups",
        "get_supported_openai_params.py",
        "get_supported_openai_params",
        "no",
    ),
    Stage(
        "· OpenAI client lookup (hashes the API key)",
        "llms/openai/openai.py",
        "_get_openai_client",
        "yes: pass client= (see the keyword table)",
    ),
    Stage(
        "· request transform",
        "gpt_transformation.py",
        "async_transform_request",
        "no: depends on the messages",
    ),
    Stage("· HTTP round trip via the openai SDK", "openai/_base_client.py", "post", "no"),
    Stage(
        "· response conversion",
        "convert_dict_to_response.py",
        "convert_to_model_response_object",
        "no",
    ),
    Stage(
        "· cost calculation (response_cost_calculator)",
        "litellm_logging.py",
        "response_cost_calculator",
        "for models the cost map lacks: pass prices",
    ),
    Stage(
        "model-info lookups (get_model_info, all callers)",
        "litellm/utils.py",
        "get_model_info",
        "as above",
    ),
    Stage(
        "success logging (background task)",
        "litellm_logging.py",
        "async_success_handler",
        "no: global settings only",
    ),
)
"""Stages in call order; each '·' row runs inside the nearest row above it with fewer dots."""


@dataclass(frozen=True)
class Variant:
    """Keywords added to the plain raw call, and the variant it is compared with."""

    label: str
    kwargs: dict[str, object]
    baseline: str


@dataclass(frozen=True)
class Sizes:
    """How much to measure: profiled calls, and rounds x cycles of the keyword comparison."""

    profiled_calls: int
    rounds: int
    cycles: int


FULL = Sizes(profiled_calls=300, rounds=6, cycles=40)
QUICK = Sizes(profiled_calls=20, rounds=1, cycles=3)


def run(config: RunConfig) -> SectionResult:
    """Profile litellm's call path and time the keyword variants."""
    sizes = QUICK if config.quick else FULL
    result = SectionResult(TITLE)
    with ServerProcess() as server:
        stats = asyncio.run(_profile(server.base_url, sizes.profiled_calls), debug=False)
        batches, variants = asyncio.run(_compare(server.base_url, sizes, config.seed), debug=False)
    result.tables.append(_stage_table(stats, sizes.profiled_calls))
    result.tables.append(_variant_table(batches, variants))
    result.notes += [
        f"Model {MODEL!r} unless the row says otherwise. Shares are of the profiled busy time "
        "(total minus the event loop waiting in select). A '·' row runs inside the nearest row "
        "above it with fewer dots, so shares overlap. 'Entered per call' counts each resumption "
        "of a coroutine.",
        "Prices passed as input_cost_per_token / output_cost_per_token are the cost map's own "
        "for the known model, as a binding could look them up once with litellm.get_model_info.",
    ]
    return result


async def _profile(base_url: str, calls: int) -> pstats.Stats:
    import litellm

    # On a loop of its own whose default executor runs jobs inline: litellm hands part of
    # each call to that executor, and cProfile only sees the thread it was enabled in.
    asyncio.get_running_loop().set_default_executor(_InlineExecutor(max_workers=1))
    call = _raw_call(litellm.acompletion, base_url, {"model": MODEL})
    for _ in range(5):
        await call()
    await settle()
    profiler = cProfile.Profile()
    with frozen_heap():
        profiler.enable()
        for _ in range(calls):
            await call()
        await settle()
        profiler.disable()
    await close_clients()
    return pstats.Stats(profiler)


async def _compare(
    base_url: str, sizes: Sizes, seed: int
) -> tuple[dict[str, list[Batch]], list[Variant]]:
    import litellm
    import openai

    async with AsyncExitStack() as stack:
        stack.push_async_callback(close_clients)
        client = openai.AsyncOpenAI(base_url=base_url, api_key=_API_KEY)
        stack.push_async_callback(client.close)
        variants = _variants(client)
        calls = {v.label: _raw_call(litellm.acompletion, base_url, v.kwargs) for v in variants}
        for call in calls.values():
            for _ in range(3):
                await call()
        rng = random.Random(seed)
        batches: dict[str, list[Batch]] = {v.label: [] for v in variants}
        with frozen_heap():
            for _ in range(sizes.rounds):
                await settle()
                measured = await time_interleaved(calls, cycles=sizes.cycles, rng=rng)
                for label, batch in measured.items():
                    batches[label].append(batch)
    return batches, variants


def _variants(client: object) -> list[Variant]:
    import litellm

    info: dict[str, Any] = dict(litellm.get_model_info(MODEL))  # Any: litellm's ModelInfo dict.
    prices = {
        "input_cost_per_token": float(info["input_cost_per_token"]),
        "output_cost_per_token": float(info["output_cost_per_token"]),
    }
    provider, _, bare = MODEL.partition("/")
    plain = f"plain: model={MODEL!r}"
    unknown = f"plain: model={UNKNOWN_MODEL!r} (not in the cost map)"
    return [
        Variant(plain, {"model": MODEL}, plain),
        Variant(
            f"custom_llm_provider={provider!r}, model={bare!r}",
            {"model": bare, "custom_llm_provider": provider},
            plain,
        ),
        Variant(
            f"custom_llm_provider={provider!r}, model={MODEL!r}",
            {"model": MODEL, "custom_llm_provider": provider},
            plain,
        ),
        Variant("prices given (input/output_cost_per_token)", {"model": MODEL, **prices}, plain),
        Variant("client=AsyncOpenAI(...) made once", {"model": MODEL, "client": client}, plain),
        Variant(unknown, {"model": UNKNOWN_MODEL}, plain),
        Variant(
            f"model={UNKNOWN_MODEL!r} with prices given",
            {"model": UNKNOWN_MODEL, **prices},
            unknown,
        ),
    ]


def _raw_call(
    acompletion: Callable[..., Awaitable[object]], base_url: str, kwargs: dict[str, object]
) -> Callable[[], Awaitable[object]]:
    arguments = {"api_base": base_url, "api_key": _API_KEY, "messages": MESSAGES, **kwargs}

    def call() -> Awaitable[object]:
        return acompletion(**arguments)

    return call


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """An executor that runs each job at once in the submitting thread, so cProfile sees it."""

    def submit(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[R]:
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class _RawStats(Protocol):
    """Attributes ``pstats.Stats`` has but does not declare to type checkers."""

    # {(file, line, function): (primitive calls, calls, own seconds, cumulative seconds, callers)}
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    total_tt: float


def _stage_table(stats: pstats.Stats, calls: int) -> Table:
    raw = cast("_RawStats", stats)
    idle = sum(
        own
        for (file, _, function), (_, _, own, _, _) in raw.stats.items()
        if file == "~" and "poll" in function  # The event loop waiting in select/epoll.
    )
    busy = raw.total_tt - idle
    table = Table(
        ("stage", "profiled ms/call", "share of busy time", "entered per call",
         "can a binding resolve it once?"),
        title=f"cProfile of {calls} sequential non-stream calls ({busy / calls * 1e3:.1f} ms "
        "busy per call under the profiler)",
    )  # fmt: skip
    for stage in STAGES:
        matching = [
            entry
            for (file, _, function), entry in raw.stats.items()
            if function == stage.function and file.replace("\\", "/").endswith(stage.file_suffix)
        ]
        cumulative = sum(entry[3] for entry in matching)
        if cumulative == 0:
            table.add(stage.label, "not seen", "", "", stage.once)
            continue
        entered = sum(entry[1] for entry in matching) / calls
        share = f"{cumulative / busy:.1%}"
        table.add(stage.label, ms(cumulative / calls), share, f"{entered:g}", stage.once)
    return table


def _variant_table(batches: dict[str, list[Batch]], variants: list[Variant]) -> Table:
    table = Table(
        ("raw litellm.acompletion with", "median ms/call", "CPU ms/call", "compared with",
         "latency ratio", "CPU/call ratio"),
        title="Call-time keywords, non-stream, c=1 (interleaved call by call); ratios paired "
        "round by round: median (min-max)",
    )  # fmt: skip
    latency = {label: [b.median_latency for b in rounds] for label, rounds in batches.items()}
    cpu = {label: [b.cpu_per_call for b in rounds] for label, rounds in batches.items()}
    for variant in variants:
        row = (
            variant.label,
            ms(statistics.median(latency[variant.label])),
            ms(statistics.median(cpu[variant.label])),
        )
        if variant.baseline == variant.label:
            table.add(*row, "-", "1", "1")
            continue
        known = variant.baseline == variants[0].label
        table.add(
            *row,
            "plain, known model" if known else "plain, unknown model",
            ratio(paired_ratios(latency[variant.label], latency[variant.baseline])),
            ratio(paired_ratios(cpu[variant.label], cpu[variant.baseline])),
        )
    return table
