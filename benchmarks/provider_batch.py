"""Provider batch: building and uploading the lines, and reading the answers back.

Two timed parts, each against the least the job could do by hand for the same lines:

- ``build and upload``: fixedmodel reads the requests into lines (litellm's parameter
  mapping, cache keys off), writes the part file and uploads it; the floor is
  ``json.dumps`` of the same lines, one write, and the same upload through the same client.
- ``parse``: fixedmodel turns an output file's lines into results (custom ids matched, each
  body rebuilt as a live answer and priced at the batch rate); the floor is ``json.loads``
  of each line plus litellm's own conversion of its body (``convert_to_model_response_object``,
  what litellm does to a live answer).

Then one whole job (``provider_batch``) of the same size runs in a fresh interpreter against
the loopback server in another process, for its peak memory above the interpreter after
imports, and its cost is checked against litellm's batch price for gpt-4o-mini.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import RunConfig, SectionResult, Table
from benchmarks._server import REPO_ROOT, ServerProcess
from benchmarks._stats import paired_ratios

TITLE = "Provider batch: building, uploading and parsing 50,000 lines; peak memory; batch price"

BAR_RATIO = 1.5
"""Each part may take at most 1.5 times its floor."""
BAR_MEMORY_MB = 150.0
"""A whole job's peak RSS may be at most 150 MB above the interpreter after imports."""

MODEL = "openai/gpt-4o-mini"
_JOB = Path(__file__).resolve().parent / "_provider_batch_job.py"


def _requests(n: int) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": f"Summarise document {i}: " + "word " * 40}]}
        for i in range(n)
    ]


async def _build(base_url: str, n: int, folder: Path) -> tuple[float, float]:
    """Seconds of fixedmodel's build+upload and of the floor, for ``n`` requests."""
    from fixedmodel import bind_acompletion
    from fixedmodel._batch_api import BatchAPI
    from fixedmodel._batch_lines import LineFormat
    from fixedmodel._provider_batch import _Job, _Stack  # pyright: ignore[reportPrivateUsage]

    chat = bind_acompletion(MODEL, api_base=base_url, api_key="sk-bench", temperature=0.2)
    stack = _Stack(chat)
    lines = LineFormat(stack.bound, stack.kind)
    api = BatchAPI(lines.provider, lines.connection)
    requests = _requests(n)
    try:
        started = time.perf_counter()
        job = _Job(stack, lines, api, folder / "job.json", 0.0, 1)
        items = await job.read(requests, None)
        state = job._open(items)  # pyright: ignore[reportPrivateUsage]
        job._add_round(state, items, (n + 1, 1 << 40))  # pyright: ignore[reportPrivateUsage]
        [part] = state.rounds[0]
        await api.upload(part.name, state.part_path(folder / "job.json", part))
        fixedmodel = time.perf_counter() - started

        started = time.perf_counter()
        raw = [
            {
                "custom_id": str(i),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "temperature": 0.2, **request},
            }
            for i, request in enumerate(requests)
        ]
        path = folder / "floor.jsonl"
        path.write_bytes("".join(json.dumps(line) + "\n" for line in raw).encode())
        await api.upload("floor.jsonl", path)
        floor = time.perf_counter() - started
    finally:
        await api.aclose()
    return fixedmodel, floor


def _output_lines(n: int) -> list[bytes]:
    body = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A summary. " * 20, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 60, "completion_tokens": 40, "total_tokens": 100},
        "system_fingerprint": None,
    }
    out = []
    for i in range(n):
        line = {
            "id": f"batch_req_{i}",
            "custom_id": str(i),
            "response": {"status_code": 200, "request_id": f"req_{i}", "body": body},
            "error": None,
        }
        out.append(json.dumps(line).encode())
    return out


def _parse(n: int) -> tuple[float, float]:
    """Seconds of fixedmodel's parsing of ``n`` output lines and of the floor."""
    from litellm import ModelResponse
    from litellm.litellm_core_utils.llm_response_utils.convert_dict_to_response import (
        convert_to_model_response_object,
    )

    from fixedmodel import BatchSuccess, bind_acompletion
    from fixedmodel._batch_lines import LineFormat, read_line

    lines = LineFormat(bind_acompletion(MODEL), "completion")
    raw = _output_lines(n)
    index = {str(i): i for i in range(n)}

    started = time.perf_counter()
    results: list[Any] = [None] * n
    for line in raw:
        outcome = read_line(line)
        position = index[outcome.custom_id]
        assert outcome.ok and outcome.body is not None
        results[position] = BatchSuccess(position, outcome.custom_id, lines.answer(outcome.body))
    fixedmodel = time.perf_counter() - started
    del results

    started = time.perf_counter()
    floor_results = [
        convert_to_model_response_object(
            response_object=json.loads(line)["response"]["body"],
            model_response_object=ModelResponse(),
        )
        for line in raw
    ]
    floor = time.perf_counter() - started
    del floor_results
    return fixedmodel, floor


def _whole_job(base_url: str, n: int) -> dict[str, Any]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    completed = subprocess.run(
        [sys.executable, str(_JOB), base_url, str(n)],
        env=env,
        cwd=str(REPO_ROOT),
        check=False,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        msg = f"the provider batch job failed:\n{completed.stderr[-3000:]}"
        raise RuntimeError(msg)
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def run(config: RunConfig) -> SectionResult:
    """Time the build and the parse against their floors; measure a whole job's memory."""
    result = SectionResult(TITLE)
    n = 500 if config.quick else 50_000
    rounds = 1 if config.quick else 3
    build: list[tuple[float, float]] = []
    parse: list[tuple[float, float]] = []
    with ServerProcess() as server:
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as folder:
                build.append(asyncio.run(_build(server.base_url, n, Path(folder))))
            parse.append(_parse(n))
        job = _whole_job(server.base_url, n)

    table = Table(
        ("part", "fixedmodel s", "floor s", "ratio (median)", "bar", "result"),
        title=f"{n:,} lines, {rounds} rounds (medians)",
    )
    for name, pairs in (("build and upload", build), ("parse into results", parse)):
        ratios = paired_ratios([p[0] for p in pairs], [p[1] for p in pairs])
        mine = sorted(p[0] for p in pairs)[len(pairs) // 2]
        floor = sorted(p[1] for p in pairs)[len(pairs) // 2]
        verdict = result.bar(
            config,
            f"provider batch {name} / floor",
            ratios.median <= BAR_RATIO,
            within_noise=ratios.unsure_about(BAR_RATIO),
        )
        table.add(
            name, f"{mine:.2f}", f"{floor:.2f}", f"{ratios.median:.2f}", f"≤ {BAR_RATIO}", verdict
        )
    checks = Table(("check", "measured", "bar", "result"), title="Whole job, fresh interpreter")
    growth = float(job["peak_mb"]) - float(job["baseline_mb"])
    checks.add(
        f"peak RSS above baseline, {n:,}-line job",
        f"{growth:.0f} MB (baseline {job['baseline_mb']:.0f} MB, {job['seconds']:.1f} s)",
        f"≤ {BAR_MEMORY_MB:.0f} MB",
        result.bar(config, "provider batch peak memory", growth <= BAR_MEMORY_MB),
    )
    checks.add(
        "cost = litellm's batch price (gpt-4o-mini)",
        f"{job['cost']:.6f} USD vs {job['batch_price']:.6f} (live {job['live_price']:.6f})",
        "equal, and below live",
        result.bar(
            config,
            "provider batch cost at the batch price",
            abs(job["cost"] - job["batch_price"]) <= 1e-9 * max(1.0, job["batch_price"])
            and job["cost"] < job["live_price"],
        ),
    )
    result.tables += [table, checks]
    return result
