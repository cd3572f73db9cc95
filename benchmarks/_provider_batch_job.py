"""One whole provider batch job in a fresh interpreter: its peak memory and its cost.

Run by ``benchmarks/provider_batch.py`` as ``python benchmarks/_provider_batch_job.py
BASE_URL N``; prints one JSON line: baseline and peak RSS in MB, seconds, the summed cost of
the answers, and what litellm's batch and live prices give for the same usage.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(base_url: str, n: int) -> None:
    import litellm
    from litellm.cost_calculator import batch_cost_calculator

    from fixedmodel import bind_acompletion, provider_batch

    chat = bind_acompletion("openai/gpt-4o-mini", api_base=base_url, api_key="sk-bench")
    requests = (
        {"messages": [{"role": "user", "content": f"Summarise document {i}: " + "word " * 40}]}
        for i in range(n)
    )
    baseline = _rss_mb()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        results = await provider_batch(
            chat, requests, state=os.path.join(folder, "job.json"), poll_interval=0.05
        )
    seconds = time.perf_counter() - started
    peak = _rss_mb()
    cost = batch = live = 0.0
    info = litellm.get_model_info("gpt-4o-mini", "openai")
    for result in results:
        response = result.response
        assert response is not None, result.error
        cost += response._hidden_params["response_cost"]
        usage = response.usage  # type: ignore[attr-defined]
        prompt, completion = batch_cost_calculator(usage, "gpt-4o-mini", "openai")
        batch += prompt + completion
        live += usage.prompt_tokens * info["input_cost_per_token"]
        live += usage.completion_tokens * info["output_cost_per_token"]
    report = {
        "baseline_mb": baseline,
        "peak_mb": peak,
        "seconds": seconds,
        "cost": cost,
        "batch_price": batch,
        "live_price": live,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
