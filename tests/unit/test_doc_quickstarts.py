"""The quickstart snippets of README.md and docs/quickstart.md run offline as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Starts other interpreters or engines; run at the newest litellm only (see scripts/test.sh).
pytestmark = pytest.mark.heavy

ROOT = Path(__file__).parents[2]


def _first_python_block(path: Path, after: str) -> str:
    text = path.read_text()
    start = text.index(after)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no python block after {after!r} in {path.name}"
    return match.group(1)


@pytest.mark.parametrize(
    ("page", "heading"),
    [("README.md", "## Quickstart"), ("docs/quickstart.md", "## Bind a model and call it")],
)
def test_quickstart_runs_offline(page: str, heading: str) -> None:
    code = _first_python_block(ROOT / page, heading)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_API_KEY")  # no credentials: it must not need a provider
    }
    env["PYTHONWARNINGS"] = "error::ResourceWarning"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip()
    assert "Traceback" not in result.stderr, result.stderr


def test_the_headline_middleware_snippet_names_the_extra_it_needs() -> None:
    text = (ROOT / "README.md").read_text()
    snippet_at = text.index("DiskCacheStore(")
    lead_in = text[text.index("## Middleware") : snippet_at]
    assert "fixedmodel[disk]" in lead_in


def test_the_observe_example_prints_no_litellm_line_twice() -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "observe.py")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    litellm_lines = [line for line in lines if "LiteLLM" in line]
    assert len(litellm_lines) == len(set(litellm_lines)), litellm_lines
    assert any(line.startswith("fixedmodel INFO") for line in lines)
