"""graphrag-llm 3.x's ``completion_batch`` against a loopback server, batch after batch.

Run by the ``batch`` section with the Python of graphrag-llm's own venv
(``benchmarks/.venvs/graphrag``, see benchmarks/README.md), never with the project's: it
imports only graphrag-llm (and the standard library), not fixedmodel nor ``benchmarks``.

Usage: ``python _graphrag_batch.py BASE_URL PROVIDER/MODEL API_KEY TEXT CONCURRENCY``.

It builds one completion object with ``graphrag_llm.completion.create_completion`` from a
``ModelConfig`` pointing at ``BASE_URL`` (no retry, no rate limit, no cache: graphrag-llm's
defaults for those; its default metrics stay on), prints ``READY`` and the version of the
litellm it runs on, and then reads commands,
one a line, from stdin until it closes:

``run N PREFIX``: send N requests through ``completion_batch(..., concurrency=CONCURRENCY)``,
each with one user message ``"TEXT (PREFIX i)"`` (a new one every time), and print one JSON
line: ``{"requests": N, "seconds": wall, "cpu_seconds": cpu, "errors": count}``. Only the
``completion_batch`` call is timed (it starts and joins its thread pool itself); the requests
are built before it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from importlib.metadata import version
from typing import Any


def main(argv: list[str]) -> int:
    """Serve ``run`` commands from stdin; return the exit code."""
    base_url, model_id, api_key, text, concurrency_text = argv
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # Installed in graphrag-llm's venv only, not in the project's (where type checkers run):
    # imported by name, so that checkers see module attributes (Any), not a missing import.
    completion_module = importlib.import_module("graphrag_llm.completion")
    config_module = importlib.import_module("graphrag_llm.config")

    provider, model = model_id.split("/", 1)
    config = config_module.ModelConfig(
        model_provider=provider,
        model=model,
        api_base=base_url,
        api_key=api_key,
        retry=None,
        rate_limit=None,
    )
    completion = completion_module.create_completion(config)
    concurrency = int(concurrency_text)
    print(f"READY {version('litellm')}", flush=True)
    for line in sys.stdin:
        command, count_text, prefix = line.split()
        if command != "run":
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
            continue
        requests: list[Any] = [
            {"messages": [{"role": "user", "content": f"{text} ({prefix} {number})"}]}
            for number in range(int(count_text))
        ]
        cpu_start, start = time.process_time(), time.perf_counter()
        responses: list[object] = completion.completion_batch(requests, concurrency=concurrency)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        errors = sum(1 for response in responses if isinstance(response, Exception))
        first_error = next((repr(r) for r in responses if isinstance(r, Exception)), None)
        report = {
            "requests": len(responses),
            "seconds": seconds,
            "cpu_seconds": cpu,
            "errors": errors,
            "first_error": first_error,
        }
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
