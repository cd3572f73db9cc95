"""Import cost: ``python -c "import fixedmodel"`` against ``python -c "import litellm"``.

Each command runs in a fresh interpreter, the commands taking turns in an order that rotates
from round to round; a bare interpreter start (``pass``) is timed alongside for reference.
fixedmodel promises not to import litellm until a bound object is made, which is checked too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks._report import RunConfig, SectionResult, Table
from benchmarks._server import REPO_ROOT
from benchmarks._stats import ms, ms_range, paired_ratios, rotated, summarize, time_command

TITLE = "Import time: import fixedmodel vs import litellm"

BAR_FRACTION = 20
"""``import fixedmodel`` may take at most 1/20 of the time of ``import litellm``."""

STATEMENTS = {
    "import fixedmodel": "import fixedmodel",
    "import litellm": "import litellm",
    "python startup only": "pass",
}

# Packages worth knowing about when they load with ``import fixedmodel``.
_HEAVY = ("litellm", "openai", "aiohttp", "httpx", "tiktoken", "pydantic", "tenacity")


def run(config: RunConfig) -> SectionResult:
    """Time the imports and check that ``import fixedmodel`` leaves litellm unimported."""
    result = SectionResult(TITLE)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    rounds = 1 if config.quick else 4
    times: dict[str, list[float]] = {label: [] for label in STATEMENTS}
    for round_index in range(rounds):
        for label in rotated(list(STATEMENTS), round_index):
            argv = [sys.executable, "-c", STATEMENTS[label]]
            times[label].append(time_command(argv, env=env, cwd=str(REPO_ROOT)))

    table = Table(
        ("command", "median ms", "min-max ms", "runs"),
        title="Wall time of `python -c ...` in a fresh interpreter",
    )
    for label, values in times.items():
        summary = summarize(values)
        table.add(f"`{label}`", ms(summary.median), ms_range(summary), str(summary.count))
    fraction = paired_ratios(times["import fixedmodel"], times["import litellm"])
    checks = Table(("check", "measured", "bar", "result"), title="Bars")
    checks.add(
        "import fixedmodel / import litellm",
        f"{fraction.median:.4f} (1/{1 / fraction.median:.0f}); "
        f"range {fraction.low:.4f}-{fraction.high:.4f}",
        f"≤ 1/{BAR_FRACTION}",
        result.bar(
            config,
            "import fixedmodel / import litellm",
            fraction.median <= 1 / BAR_FRACTION,
            within_noise=fraction.unsure_about(1 / BAR_FRACTION),
        ),
    )
    loaded = _loaded_with_fixedmodel(env)
    litellm_loaded = [name for name in loaded if name.partition(".")[0] == "litellm"]
    checks.add(
        "litellm in sys.modules after `import fixedmodel`",
        f"{len(litellm_loaded)} litellm modules" if litellm_loaded else "absent",
        "absent",
        result.bar(config, "litellm absent after import fixedmodel", not litellm_loaded),
    )
    result.tables += [table, checks, _largest_imports(env)]
    heavy = sorted({name.partition(".")[0] for name in loaded} & set(_HEAVY))
    result.notes.append(
        "Packages among "
        + ", ".join(_HEAVY)
        + " loaded by `import fixedmodel`: "
        + (", ".join(heavy) if heavy else "none")
        + "."
    )
    return result


def _loaded_with_fixedmodel(env: dict[str, str]) -> list[str]:
    code = "import json, sys, fixedmodel; print(json.dumps(sorted(sys.modules)))"
    completed = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=str(REPO_ROOT),
        check=True,
        capture_output=True,
        text=True,
    )
    names: list[str] = json.loads(completed.stdout)
    return names


def _largest_imports(env: dict[str, str], count: int = 8) -> Table:
    """The modules with the largest cumulative import time under ``import fixedmodel``."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import fixedmodel"],
        env=env,
        cwd=str(REPO_ROOT),
        check=True,
        capture_output=True,
        text=True,
    )
    # Lines read "import time: <self us> | <cumulative us> | <indented module name>", each
    # printed when its import ends, so a module comes after what it imported.
    rows: list[tuple[int, str]] = []
    for line in completed.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    largest = sorted(range(len(rows)), key=lambda index: rows[index][0])[-count:]
    table = Table(
        ("module (indented by import depth)", "cumulative ms"),
        title="Largest imports under `import fixedmodel` (one `python -X importtime` run)",
    )
    for index in sorted(largest, reverse=True):  # Reversed: each module above its imports.
        cumulative, name = rows[index]
        depth = (len(name) - len(name.lstrip())) // 2
        table.add("· " * depth + name.strip(), f"{cumulative / 1e3:.1f}")
    return table
