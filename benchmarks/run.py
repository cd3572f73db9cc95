"""Run the fixedmodel benchmarks, print the results and write them as markdown.

Usage: ``python benchmarks/run.py [--quick] [--strict] [--only NAME,...] [--output FILE.md]``

``--quick`` runs every section small, in well under a minute, and checks no bars (the test
command runs it so that the benchmarks keep working). Full mode checks the bars and reports
them as PASS/FAIL; the exit code is 0 unless ``--strict`` is given and a bar failed. See
benchmarks/README.md.

To add a section: write a module with ``TITLE`` and ``run(config) -> SectionResult`` (see
``overhead.py``) and list it in ``SECTIONS`` below.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# Run as a script, this file's folder is on sys.path; the repository root must be, so that
# ``benchmarks`` and ``tests.support`` import as packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Before anything imports litellm: otherwise it fetches its price list from the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from benchmarks import (
    batch,
    cache_hit,
    import_time,
    limiter,
    litellm_profile,
    memory,
    overhead,
    provider_batch,
    redis_limiter,
    routing,
    stack,
    tracing,
)
from benchmarks._report import Check, RunConfig, SectionResult, render_report, render_section
from benchmarks._stats import load_average

Section = Callable[[RunConfig], SectionResult]

SECTIONS: dict[str, Section] = {
    "overhead": overhead.run,
    "import": import_time.run,
    "profile": litellm_profile.run,
    "limiter": limiter.run,
    "redis-limiter": redis_limiter.run,
    "stack": stack.run,
    "cache-hit": cache_hit.run,
    "memory": memory.run,
    "tracing": tracing.run,
    "batch": batch.run,
    "routing": routing.run,
    "provider-batch": provider_batch.run,
}
"""The sections, by the name ``--only`` takes, in the order they run."""

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.md"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected sections; return the process exit code."""
    args = _parser().parse_args(argv)
    names = list(SECTIONS) if args.only is None else args.only.split(",")
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        msg = f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
        raise SystemExit(msg)
    config = RunConfig(quick=args.quick)
    facts = _facts(config)
    started = time.perf_counter()
    rendered: list[str] = []
    checks: list[Check] = []
    for name in names:
        print(f"== {name} ...", file=sys.stderr, flush=True)
        section_started = time.perf_counter()
        section = SECTIONS[name](config)
        section.seconds = time.perf_counter() - section_started
        checks += section.checks
        rendered.append(render_section(section))
        print(rendered[-1] + "\n", flush=True)
    bars = _bars_summary(config, checks)
    facts += [
        ("wall time", f"{time.perf_counter() - started:.1f} s"),
        ("load average (1 min) at the end", load_average()),
        ("bars", bars),
    ]
    report = render_report("fixedmodel benchmarks", facts, rendered)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(f"wrote {args.output}; bars: {bars}")
    failed = any(not check.passed for check in checks)
    return 1 if args.strict and failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="run everything small; check no bars")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a bar fails")
    parser.add_argument(
        "--only", metavar="NAME,...", help=f"sections to run: {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, metavar="FILE.md", help="markdown report"
    )
    return parser


def _facts(config: RunConfig) -> list[tuple[str, str]]:
    packages = ", ".join(f"{name} {_version(name)}" for name in ("litellm", "openai", "aiohttp"))
    return [
        ("mode", "quick (bars not checked)" if config.quick else "full"),
        ("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("python", f"{platform.python_version()} ({platform.system()} {platform.machine()})"),
        ("packages", packages),
        ("CPUs", str(os.cpu_count())),
        ("load average (1 min) at the start", load_average()),
    ]


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _bars_summary(config: RunConfig, checks: Sequence[Check]) -> str:
    if config.quick:
        return "not checked (quick mode)"
    failed = [f"{check.name}: {check.verdict}" for check in checks if not check.passed]
    if not failed:
        return f"all {len(checks)} PASS"
    return f"{len(failed)} of {len(checks)} FAIL ({'; '.join(failed)})"


if __name__ == "__main__":
    sys.exit(main())
