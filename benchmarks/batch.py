"""Batches: ``abatch`` over the full stack against the usual hand-made and library ways.

One loopback server (a child process) answers every contender of the throughput part; each
round runs the same number of requests through every contender, in a rotated order:

- ``abatch``: ``fixedmodel.abatch(stack, requests, concurrency=C, progress=False)`` where
  ``stack`` is the full stack of ``_stack.py`` (logging, metrics, a memory cache that misses,
  retries, a limiter that never waits) over ``bind_acompletion(MODEL, api_base=..., ...)``;
  every request carries a message never sent before, so every cache lookup misses.
- ``abatch, progress bar``: the same with ``progress=True``: tqdm draws its bar (with errors,
  tokens and cost) on ``sys.stderr``, which is redirected to ``/dev/null`` for the run (the
  bar is formatted and written, the terminal's drawing is not counted).
- ``asyncio.gather``: ``asyncio.gather(*(one(m) for m in messages), return_exceptions=True)``
  with ``one`` awaiting raw ``litellm.acompletion`` under an ``asyncio.Semaphore(C)``.
- ``batch_on``: ``fixedmodel.batch_on(ProcessPoolExecutor(W), stack, requests,
  chunk_size=N/W, concurrency=C/W)`` with ``W`` = the machine's CPU count (2 here) worker
  processes (spawned, warmed up before the first round) and ``stack`` = ``with_retries`` over
  the bound call: what travels to workers must hold no in-process state, so no memory cache
  or limiter (graphrag-llm runs without them too). The same ``C`` requests in flight in all.
- ``graphrag-llm``: ``LLMCompletion.completion_batch(requests, concurrency=C)`` of
  graphrag-llm 3.3.0 (``C`` threads calling ``litellm.completion``), in its own venv and a
  child process (``_graphrag_batch.py``) that stays up between rounds. Skipped with a note in
  quick mode when that venv is missing; full mode creates it.

Throughput is requests over the wall time of the whole batch; ratios are paired within a
round. Two low-noise cross-checks over a no-op callable returning a ready answer: what the
progress bar costs per item, and the runner's own work per item against gather + semaphore.

Peak memory of a streamed batch runs in a fresh interpreter (``python -m benchmarks.batch
--rss ...``), so its baseline is the interpreter after its imports: ``aiter_batch`` over a
lazy generator of requests, each result written to a temporary file as it comes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any, cast

from benchmarks._litellm import MESSAGES, MODEL, close_clients
from benchmarks._report import RunConfig, SectionResult, Table
from benchmarks._server import REPO_ROOT, ServerProcess
from benchmarks._stack import full_stack, null_logger, unique_messages
from benchmarks._stats import frozen_heap, paired_ratios, ratio, rotated, settle, summarize
from fixedmodel import (
    AFixedModelCompletion,
    CompletionRequest,
    InMemoryMetrics,
    MemoryCacheStore,
    MessageParam,
    abatch,
    aiter_batch,
    batch_on,
    bind_acompletion,
    with_retries,
)

TITLE = "Batches: abatch vs asyncio.gather and graphrag-llm; progress bar; streamed memory"

THROUGHPUT_BAR = 0.97
"""abatch over the full stack must reach 97% of gather + semaphore's requests per second."""
GRAPHRAG_BAR = 1.5
"""fixedmodel's batch throughput must reach 1.5 times graphrag-llm's requests per second.

Checked on ``batch_on`` over a process pool as wide as the machine (fixedmodel's way of
using more than one core); abatch in one process against graphrag-llm is reported beside it.
"""
PROGRESS_BAR = 1.01
"""A batch with the progress bar may take at most 1% longer than without."""
RSS_BAR_MB = 100.0
"""Peak RSS of a 100,000-line streamed batch, above the interpreter after imports."""

GRAPHRAG_VERSION = "3.3.0"
GRAPHRAG_VENV = Path(__file__).resolve().parent / ".venvs" / "graphrag"
GRAPHRAG_SCRIPT = Path(__file__).resolve().parent / "_graphrag_batch.py"

ABATCH = "abatch (full stack)"
PROGRESS = "abatch (full stack), progress bar"
GATHER = "asyncio.gather + Semaphore, raw litellm.acompletion"
BATCH_ON = "batch_on, process pool (with_retries over the bound call)"
GRAPHRAG = f"graphrag-llm {GRAPHRAG_VERSION} completion_batch"


@dataclass(frozen=True)
class Sizes:
    """How much to measure.

    Attributes:
        requests: Requests per batch in the throughput part.
        concurrency: Requests in flight (threads for graphrag-llm).
        rounds: Rounds; each runs one batch per contender.
        warm_up: Requests per contender before the first round.
        probe_items: Items per block in the no-op cross-checks.
        stream_lines: Requests of the streamed batch whose memory is measured.
    """

    requests: int
    concurrency: int
    rounds: int
    warm_up: int
    probe_items: int
    stream_lines: int


FULL = Sizes(
    requests=2_000, concurrency=64, rounds=16, warm_up=256, probe_items=20_000, stream_lines=100_000
)
QUICK = Sizes(
    requests=100, concurrency=16, rounds=1, warm_up=32, probe_items=500, stream_lines=2_000
)


@dataclass(frozen=True)
class Run:
    """One batch of one contender: wall and CPU seconds, requests, failed requests."""

    seconds: float
    cpu_seconds: float
    requests: int
    errors: int

    @property
    def per_second(self) -> float:
        """Requests per wall-clock second."""
        return self.requests / self.seconds


@dataclass
class Measured:
    """Everything the throughput part measured."""

    runs: dict[str, list[Run]] = field(default_factory=dict[str, list[Run]])
    bar_cost: float = 0.0
    """Seconds the progress bar adds per item, over the no-op."""
    runner_own: float = 0.0
    """Seconds abatch takes per item over gather + semaphore, both over the no-op."""
    graphrag_note: str = ""
    graphrag_litellm: str = ""


def run(config: RunConfig) -> SectionResult:
    """Measure batch throughput, the progress bar and streamed memory; report them."""
    sizes = QUICK if config.quick else FULL
    result = SectionResult(TITLE)
    graphrag = _graphrag_python(config.quick)
    # The progress bar draws on sys.stderr: /dev/null while batches run (see the notes).
    with ServerProcess() as server, open(os.devnull, "w", encoding="utf-8") as devnull:
        measured = asyncio.run(_measure(server.base_url, sizes, graphrag, devnull), debug=False)
    if isinstance(graphrag, str):
        measured.graphrag_note = graphrag
    streamed = _rss_child(sizes, hold=False)
    # The control shows that the measurement sees results held; quick mode saves the time.
    held = None if config.quick else _rss_child(sizes, hold=True)
    _report(result, config, sizes, measured, streamed, held)
    return result


def _graphrag_python(quick: bool) -> Path | str:
    """The Python of graphrag-llm's venv, or why there is none (quick mode never installs)."""
    python = GRAPHRAG_VENV / "bin" / "python"
    if python.exists():
        return python
    if quick:
        return (
            f"graphrag-llm skipped: no venv at {GRAPHRAG_VENV.relative_to(REPO_ROOT)} (a full "
            "run creates it; quick mode never installs)."
        )
    print(f"   creating {GRAPHRAG_VENV} (graphrag-llm=={GRAPHRAG_VERSION}) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(GRAPHRAG_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"graphrag-llm=={GRAPHRAG_VERSION}"],
        check=True,
    )
    return python


class GraphragChild:
    """``_graphrag_batch.py`` running in graphrag-llm's venv, one batch per ``run`` call."""

    def __init__(self, python: Path, base_url: str, concurrency: int) -> None:
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        argv = [str(python), str(GRAPHRAG_SCRIPT), base_url, MODEL, "sk-bench-batch-graphrag"]
        self._process = subprocess.Popen(
            [*argv, MESSAGES[0]["content"], str(concurrency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._batches = 0
        self._ready = False
        self.litellm_version = "unknown"

    def wait_ready(self) -> None:
        """Wait until the child has imported graphrag-llm and built its completion object."""
        if self._ready:
            return
        line = self._readline()
        if not line.startswith("READY "):
            self.close()
            raise RuntimeError(f"graphrag-llm child did not start: {line!r}")
        self.litellm_version = line.removeprefix("READY ")
        self._ready = True

    def _readline(self) -> str:
        assert self._process.stdout is not None
        return self._process.stdout.readline().strip()

    def run(self, requests: int) -> Run:
        """Send ``requests`` new requests through ``completion_batch``; time it in the child."""
        assert self._process.stdin is not None
        self.wait_ready()
        self._batches += 1
        self._process.stdin.write(f"run {requests} graphrag-{self._batches}\n")
        self._process.stdin.flush()
        report: dict[str, Any] = json.loads(self._readline())
        if "error" in report:
            raise RuntimeError(f"graphrag-llm child: {report['error']}")
        return Run(report["seconds"], report["cpu_seconds"], report["requests"], report["errors"])

    def close(self) -> None:
        """Close the child's stdin and wait for it to exit."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


async def _measure(base_url: str, sizes: Sizes, graphrag: Path | str, devnull: IO[str]) -> Measured:
    import litellm

    measured = Measured()
    # Started first: its imports (seconds) overlap the warm-up below, which is not timed.
    child = (
        GraphragChild(graphrag, base_url, sizes.concurrency) if isinstance(graphrag, Path) else None
    )
    bound = bind_acompletion(MODEL, api_base=base_url, api_key="sk-bench-batch")
    messages: dict[str, Iterator[list[MessageParam]]] = {
        ABATCH: unique_messages("abatch"),
        PROGRESS: unique_messages("abatch-progress"),
        GATHER: unique_messages("gather"),
    }

    def through_abatch(progress: bool) -> Callable[[list[list[MessageParam]]], Awaitable[int]]:
        async def call(batch: list[list[MessageParam]]) -> int:
            stack = full_stack(
                bound,
                store=MemoryCacheStore(),
                metrics=InMemoryMetrics(),
                logger=null_logger("batch"),
            )
            requests: list[CompletionRequest] = [{"messages": m} for m in batch]
            with contextlib.redirect_stderr(devnull):
                results = await abatch(
                    stack, requests, concurrency=sizes.concurrency, progress=progress
                )
            return sum(1 for r in results if not r.ok)

        return call

    async def through_gather(batch: list[list[MessageParam]]) -> int:
        semaphore = asyncio.Semaphore(sizes.concurrency)

        async def one(m: list[MessageParam]) -> object:
            async with semaphore:
                response: object = await litellm.acompletion(
                    model=MODEL, api_base=base_url, api_key="sk-bench-batch-raw", messages=m
                )
                return response

        results = await asyncio.gather(*(one(m) for m in batch), return_exceptions=True)
        return sum(1 for r in results if isinstance(r, BaseException))

    workers = os.cpu_count() or 1
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    messages[BATCH_ON] = unique_messages("batch-on")
    # Pickled once per batch_on call and rebuilt once per worker process.
    spread = with_retries(
        bind_acompletion(MODEL, api_base=base_url, api_key="sk-bench-batch-workers")
    )

    import psutil  # type: ignore[import-untyped]  # no type hints, types-psutil not installed

    others = {child.pid for child in psutil.Process().children(recursive=True)}
    worker_cpu = [0.0]  # CPU seconds the pool's processes spent in the last batch_on batch

    def pool_cpu() -> float:
        spent = 0.0
        for child in psutil.Process().children(recursive=True):
            if child.pid not in others:
                with contextlib.suppress(psutil.Error):
                    times = child.cpu_times()
                    spent += times.user + times.system
        return spent

    async def through_batch_on(batch: list[list[MessageParam]]) -> int:
        requests: list[CompletionRequest] = [{"messages": m} for m in batch]
        before = pool_cpu()

        def run() -> int:
            results = batch_on(
                pool,
                spread,
                requests,
                chunk_size=max(1, -(-len(requests) // workers)),
                concurrency=max(1, sizes.concurrency // workers),
            )
            return sum(1 for r in results if not r.ok)

        errors = await asyncio.to_thread(run)
        worker_cpu[0] = pool_cpu() - before
        return errors

    contenders: dict[str, Callable[[list[list[MessageParam]]], Awaitable[int]]] = {
        ABATCH: through_abatch(False),
        PROGRESS: through_abatch(True),
        GATHER: through_gather,
        BATCH_ON: through_batch_on,
    }
    try:
        names = [*contenders, *([GRAPHRAG] if child is not None else [])]
        measured.runs = {name: [] for name in names}
        for name, call in contenders.items():  # connections, litellm's caches, the tokenizer
            await call([next(messages[name]) for _ in range(sizes.warm_up)])
        if child is not None:
            child.wait_ready()
            measured.graphrag_litellm = child.litellm_version
            child.run(sizes.warm_up)
        await settle()
        measured.bar_cost, measured.runner_own = await _probe(sizes, devnull)
        with frozen_heap():
            for round_index in range(sizes.rounds):
                for name in rotated(names, round_index):
                    if name == GRAPHRAG:
                        assert child is not None
                        measured.runs[name].append(child.run(sizes.requests))
                        continue
                    batch = [next(messages[name]) for _ in range(sizes.requests)]
                    cpu_start, start = time.process_time(), time.perf_counter()
                    errors = await contenders[name](batch)
                    seconds = time.perf_counter() - start
                    cpu = time.process_time() - cpu_start
                    if name == BATCH_ON:  # the work is done in the pool's processes
                        cpu += worker_cpu[0]
                    measured.runs[name].append(Run(seconds, cpu, len(batch), errors))
                    await settle()
    finally:
        pool.shutdown(cancel_futures=True)
        if child is not None:
            child.close()
        await bound.aclose()
        await close_clients()
    return measured


async def _probe(sizes: Sizes, devnull: IO[str]) -> tuple[float, float]:
    """Per-item seconds the progress bar adds, and abatch's own work over gather + semaphore.

    All over a no-op callable that returns a ready answer (with usage, so the bar counts
    tokens); blocks alternate, 5 of each, medians taken.
    """
    import litellm

    answer = litellm.ModelResponse(
        model=MODEL,
        choices=[{"message": {"role": "assistant", "content": "Hello from the no-op."}}],
        usage={"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    )

    async def no_op(**kwargs: object) -> object:
        await asyncio.sleep(0)
        return answer

    fn = cast("AFixedModelCompletion", no_op)
    hello: list[MessageParam] = [{"role": "user", "content": MESSAGES[0]["content"]}]
    requests: list[CompletionRequest] = [{"messages": hello} for _ in range(sizes.probe_items)]

    async def with_abatch(progress: bool) -> None:
        await abatch(fn, requests, concurrency=sizes.concurrency, progress=progress)

    async def with_gather() -> None:
        semaphore = asyncio.Semaphore(sizes.concurrency)

        async def one(request: CompletionRequest) -> object:
            async with semaphore:
                return await no_op(**request)

        await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)

    blocks: dict[str, Callable[[], Awaitable[None]]] = {
        "off": lambda: with_abatch(False),
        "on": lambda: with_abatch(True),
        "gather": with_gather,
    }
    times: dict[str, list[float]] = {name: [] for name in blocks}
    with contextlib.redirect_stderr(devnull):
        await with_abatch(True)  # imports tqdm
        with frozen_heap():
            for index in range(5):
                for name in rotated(list(blocks), index):
                    start = time.perf_counter()
                    await blocks[name]()
                    times[name].append((time.perf_counter() - start) / sizes.probe_items)
    median = {name: summarize(values).median for name, values in times.items()}
    return median["on"] - median["off"], median["off"] - median["gather"]


# --- peak memory of a streamed batch, in a fresh interpreter ---------------------------------


def _rss_child(sizes: Sizes, *, hold: bool) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.batch", "--rss", str(sizes.stream_lines)]
    argv += ["--concurrency", str(sizes.concurrency), *(["--hold"] if hold else [])]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    completed = subprocess.run(
        argv, cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True
    )
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def _rss_main(lines: int, concurrency: int, hold: bool) -> None:
    """Run one streamed (or, with ``hold``, collected) batch and print its memory as JSON."""
    import gc

    import litellm
    import psutil  # type: ignore[import-untyped]  # no type hints, types-psutil not installed

    process = psutil.Process()
    generated = written = most_ahead = 0

    def requests() -> Iterator[CompletionRequest]:
        nonlocal generated
        for number in range(lines):
            generated += 1
            yield {"messages": [{"role": "user", "content": f"Say hello. (line {number})"}]}

    async def answer(**kwargs: Any) -> object:
        await asyncio.sleep(0)  # hand the loop over, as a real call does
        content = kwargs["messages"][0]["content"]
        return litellm.ModelResponse(
            model=MODEL,
            choices=[{"message": {"role": "assistant", "content": f"Hello, {content}"}}],
            usage={"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
        )

    fn = cast("AFixedModelCompletion", answer)
    peak = 0
    sampling = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not sampling.wait(0.005):
            peak = max(peak, int(process.memory_info().rss))

    async def stream(out: IO[str]) -> None:
        nonlocal written, most_ahead
        async for result in aiter_batch(fn, requests(), concurrency=concurrency):
            response = cast("Any", result.response)
            record = {"custom_id": result.id, "content": response.choices[0].message.content}
            out.write(json.dumps(record) + "\n")
            written += 1
            most_ahead = max(most_ahead, generated - written)

    async def collect() -> None:
        nonlocal written
        results = await abatch(fn, requests(), concurrency=concurrency)
        written = len(results)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.jsonl"
        with path.open("w", encoding="utf-8") as out:
            asyncio.run(
                answer(messages=[{"role": "user", "content": "Say hello."}])
            )  # first-call work, before the baseline
            gc.collect()
            baseline = int(process.memory_info().rss)
            kernel_reset = _reset_kernel_peak()
            peak = baseline
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start = time.perf_counter()
            asyncio.run(collect() if hold else stream(out))
            seconds = time.perf_counter() - start
            sampling.set()
            sampler.join()
            peak = max(peak, int(process.memory_info().rss))
            kernel_peak = _kernel_peak() if kernel_reset else None
        file_bytes = path.stat().st_size
    report = {
        "lines": lines,
        "results": written,
        "seconds": seconds,
        "baseline": baseline,
        "peak_sampled": peak,
        "kernel_peak": kernel_peak,
        "most_ahead": most_ahead,
        "file_bytes": file_bytes,
    }
    print(json.dumps(report), flush=True)


def _reset_kernel_peak() -> bool:
    """Reset the kernel's peak RSS of this process (VmHWM) to its RSS now (Linux >= 4.0).

    ``getrusage``'s ``ru_maxrss`` cannot be reset and is no use here: it is the lifetime peak,
    imports included, and a child started by ``subprocess`` inherits its parent's high-water
    mark from the fork.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return _kernel_peak() is not None


def _kernel_peak() -> int | None:
    """The kernel's peak RSS of this process in bytes (VmHWM), or None where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        return None
    return None


# --- the report --------------------------------------------------------------------------------


def _report(
    result: SectionResult,
    config: RunConfig,
    sizes: Sizes,
    measured: Measured,
    streamed: dict[str, Any],
    held: dict[str, Any] | None,
) -> None:
    runs = measured.runs
    throughput = Table(
        ("contender", "requests/s", "min-max (rounds)", "wall s/batch", "client CPU ms/request",
         "failed requests"),
        title=f"Throughput: {sizes.requests:,} requests per batch at concurrency "
        f"{sizes.concurrency}, median over {sizes.rounds} round(s)",
    )  # fmt: skip
    for name, values in runs.items():
        rate = summarize([run.per_second for run in values])
        throughput.add(
            name,
            f"{rate.median:.0f}",
            f"{rate.low:.0f}-{rate.high:.0f}",
            f"{summarize([run.seconds for run in values]).median:.2f}",
            f"{summarize([run.cpu_seconds / run.requests for run in values]).median * 1e3:.2f}",
            str(sum(run.errors for run in values)),
        )
    ratios = Table(
        ("comparison", "ratio: median (min-max over rounds)", "bar", "result"),
        title="Ratios, paired round by round",
    )
    rates = {name: [run.per_second for run in values] for name, values in runs.items()}
    gathered = paired_ratios(rates[ABATCH], rates[GATHER])
    ratios.add(
        f"{ABATCH} / {GATHER}, requests/s",
        ratio(gathered),
        f"≥ {THROUGHPUT_BAR}",
        result.bar(
            config,
            "batch: abatch / gather requests/s",
            gathered.median >= THROUGHPUT_BAR,
            within_noise=gathered.unsure_about(THROUGHPUT_BAR),
        ),
    )
    if GRAPHRAG in rates:
        versus = paired_ratios(rates[BATCH_ON], rates[GRAPHRAG])
        verdict = result.bar(
            config,
            "batch: fixedmodel (batch_on) / graphrag-llm requests/s",
            versus.median >= GRAPHRAG_BAR,
            within_noise=versus.unsure_about(GRAPHRAG_BAR),
        )
        ratios.add(f"{BATCH_ON} / {GRAPHRAG}, requests/s", ratio(versus), f"≥ {GRAPHRAG_BAR}",
                   verdict)  # fmt: skip
        one_process = paired_ratios(rates[ABATCH], rates[GRAPHRAG])
        ratios.add(f"{ABATCH}, one process / {GRAPHRAG}, requests/s (information)",
                   ratio(one_process), "", "")  # fmt: skip
    else:
        verdict = result.bar(
            config, "batch: fixedmodel (batch_on) / graphrag-llm requests/s", False
        )
        ratios.add(f"{BATCH_ON} / {GRAPHRAG}, requests/s", "not measured", f"≥ {GRAPHRAG_BAR}",
                   verdict)  # fmt: skip
    walls = {name: [run.seconds for run in values] for name, values in runs.items()}
    slower = paired_ratios(walls[PROGRESS], walls[ABATCH])
    ratios.add(
        f"{PROGRESS} / {ABATCH}, wall time",
        ratio(slower),
        f"≤ {PROGRESS_BAR}",
        result.bar(
            config,
            "batch: progress bar on / off, wall time",
            slower.median <= PROGRESS_BAR,
            within_noise=slower.unsure_about(PROGRESS_BAR),
        ),
    )
    per_request = summarize([run.seconds / run.requests for run in runs[ABATCH]]).median
    decomposed = 1 + measured.bar_cost / per_request
    ratios.add(
        f"{PROGRESS} / {ABATCH}, decomposed: 1 + the bar's cost per item / wall time per request",
        f"{decomposed:.4f}",
        f"≤ {PROGRESS_BAR}",
        result.bar(config, "batch: progress bar, decomposed", decomposed <= PROGRESS_BAR),
    )
    # Client CPU per request is far less disturbed by other processes than wall time; each
    # row reads in the sense of the bar above it (> 1: abatch ahead; < 1 for the bar: cheap).
    cpu = {
        name: [run.cpu_seconds / run.requests for run in values] for name, values in runs.items()
    }
    pairs = ((GATHER, ABATCH), (GRAPHRAG, ABATCH), (BATCH_ON, ABATCH), (PROGRESS, ABATCH))
    for numerator, denominator in pairs:
        if numerator in cpu:
            ratios.add(
                f"{numerator} / {denominator}, client CPU per request (information)",
                ratio(paired_ratios(cpu[numerator], cpu[denominator])),
                "",
                "",
            )

    memory = Table(
        ("run", "lines", "seconds", "baseline RSS MB", "sampled peak above baseline MB",
         "kernel peak (VmHWM) above baseline MB", "most requests read ahead of the output",
         "bar", "result"),
        title="Peak memory of one batch in a fresh interpreter (baseline: after imports)",
    )  # fmt: skip
    rows = [("aiter_batch, each result written to a file as it comes", streamed, True)]
    if held is not None:
        rows.append(("control: abatch, every result held in its list", held, False))
    for label, report, bar in rows:
        kernel: int | None = report["kernel_peak"]
        peak = max(report["peak_sampled"], kernel or 0)
        above = _mb(peak - report["baseline"])
        verdict = ""
        if bar:
            verdict = result.bar(
                config, "batch: streamed peak RSS above baseline", above <= RSS_BAR_MB
            )
        memory.add(
            label,
            f"{report['lines']:,}",
            f"{report['seconds']:.1f}",
            f"{_mb(report['baseline']):.1f}",
            f"{_mb(report['peak_sampled'] - report['baseline']):.1f}",
            "n/a" if kernel is None else f"{_mb(kernel - report['baseline']):.1f}",
            str(report["most_ahead"]) if bar else "",
            f"≤ {RSS_BAR_MB:.0f}" if bar else "(information)",
            verdict,
        )
    result.tables += [throughput, ratios, memory]
    result.notes += _notes(sizes, measured, per_request, streamed)


def _notes(
    sizes: Sizes, measured: Measured, per_request: float, streamed: dict[str, Any]
) -> list[str]:
    notes = [
        f"Every request carries a new user message (model {MODEL!r}), so the full stack's "
        "memory cache misses every time (a new MemoryCacheStore per batch); its limiter's "
        "request budget never binds, its retries make one attempt (nothing fails). The "
        "bound object hands litellm api_base, api_key and custom_llm_provider; the raw calls "
        "pass api_base and api_key; each contender has its own API key (litellm caches its "
        "HTTP client per key). Requests are built before each batch's clock starts.",
        f"Rounds: {sizes.rounds}; the contenders' order rotates from round to round "
        "(reversed every other round), so each runs first and last. Warm-up: "
        f"{sizes.warm_up} requests per contender. The server is a separate process.",
        "Progress bar: `progress=True` makes a tqdm bar on sys.stderr, which "
        "contextlib.redirect_stderr points at /dev/null for the whole batch (the bar is "
        "formatted and written, a terminal's drawing is not counted). "
        f"Decomposed row: the bar's cost per item over a no-op callable, "
        f"{measured.bar_cost * 1e6:.1f} µs (abatch with the bar minus without, "
        f"{sizes.probe_items:,} items per block, median of 5 blocks each), over the wall time "
        f"per request of the measured abatch batches ({per_request * 1e6:.0f} µs).",
        f"abatch's own work per item over gather + semaphore, both over the same no-op: "
        f"{measured.runner_own * 1e6:.1f} µs (information).",
        f"batch_on: a ProcessPoolExecutor of {os.cpu_count()} spawned worker processes (the "
        "machine's CPU count), started and warmed up (litellm imported, the stack rebuilt) "
        "before the first round; each batch is cut into one chunk per worker, each worker "
        f"runs its chunk with abatch at concurrency {sizes.concurrency} // workers, so the "
        "requests in flight match the others'. Its stack is with_retries over the bound "
        "call (stateless: it is pickled to the workers). Its CPU figure is the workers' CPU "
        "(psutil) plus the parent's. graphrag-llm 3.x has no multi-process runner: its "
        "completion_batch runs threads in one process, bound to one core by the GIL, which "
        "is why the bar is checked on batch_on; abatch in one process is reported beside it.",
    ]
    if measured.graphrag_note:
        notes.append(measured.graphrag_note)
    else:
        notes.append(
            f"graphrag-llm {GRAPHRAG_VERSION} runs in its own venv "
            "(benchmarks/.venvs/graphrag, `pip install graphrag-llm==3.3.0`, which brings its "
            "own litellm) in a child process started once (_graphrag_batch.py): "
            "`create_completion(ModelConfig(model_provider='openai', model='gpt-4o-mini', "
            "api_base=<server>, api_key=..., retry=None, rate_limit=None))`, i.e. its "
            "LiteLLM completion type with its defaults otherwise (metrics on, no cache, "
            "drop_params=True), then `completion_batch(requests, "
            f"concurrency={sizes.concurrency})`: {sizes.concurrency} threads, each calling "
            "litellm.completion. The child times the completion_batch call only (thread "
            "pool start and join included) and reports its own CPU time (all its threads). "
            f"graphrag-llm {GRAPHRAG_VERSION} pins its litellm: it runs on litellm "
            f"{measured.graphrag_litellm}, the other contenders on litellm "
            f"{version('litellm')}."
        )
    notes.append(
        "Streamed memory: aiter_batch(concurrency="
        f"{sizes.concurrency}) over a lazy generator of {streamed['lines']:,} requests; the "
        "callable is a trivial async function that yields to the loop once and returns a "
        "new litellm ModelResponse per request (no server, no litellm call path), so the "
        "figure is the runner's own memory, not litellm's per-call state (the memory "
        "section measures that); a new response per request, not a shared one, so a runner "
        "holding on to its results would show (the control row holds them all). Each result "
        "is written to a temporary JSONL file as it comes "
        f"({_mb(streamed['file_bytes']):.1f} MB written). Baseline: RSS (psutil) in a fresh "
        "interpreter (`python -m benchmarks.batch --rss N`) after its imports, one warm-up "
        "call and gc.collect(). Peak: RSS sampled with psutil every 5 ms in a thread, and the "
        "kernel's own peak (VmHWM in /proc/self/status, reset to the baseline through "
        "/proc/self/clear_refs just before the batch, so it misses nothing between samples); "
        "the bar is on the larger of the two. Not ru_maxrss: it cannot be reset (it would "
        "count the imports' passing peak) and a subprocess inherits its parent's high-water "
        "mark. The control (full mode only) runs the same requests through abatch, which "
        "keeps every result in the list it returns."
    )
    return notes


def _mb(value: float) -> float:
    return value / 1_000_000


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The batch section's memory child.")
    parser.add_argument("--rss", type=int, required=True, metavar="LINES")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--hold", action="store_true", help="abatch, all results held")
    args = parser.parse_args(argv)
    _rss_main(args.rss, args.concurrency, args.hold)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    sys.exit(_main())
