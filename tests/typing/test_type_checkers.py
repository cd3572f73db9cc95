"""Run mypy --strict and pyright over the call-site files and check what they report.

Good call sites (``tests/typing/good`` and ``examples/migrating.py``) must produce no error
at all. Each line of a bad call site file (``tests/typing/bad``) that ends in
``# expect-error`` must be reported by both checkers at that line, and no other line may be
reported, so an error cannot hide behind
another one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
# The migration guide's "after" snippets (docs/migrating.md) are checked as good call sites.
GOOD = [*sorted((HERE / "good").glob("*.py")), ROOT / "examples" / "migrating.py"]
BAD = sorted((HERE / "bad").glob("*.py"))
MARK = "# expect-error"


def _expected_lines(path: Path) -> set[int]:
    lines = path.read_text().splitlines()
    return {number for number, line in enumerate(lines, start=1) if line.rstrip().endswith(MARK)}


@cache
def _mypy(paths: tuple[Path, ...]) -> dict[Path, dict[int, list[str]]]:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes"]
        + [str(path) for path in paths],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    pattern = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*)$")
    found: dict[Path, dict[int, list[str]]] = {}
    for line in result.stdout.splitlines():
        match = pattern.match(line)
        if match:
            file = (ROOT / match["file"]).resolve()
            found.setdefault(file, {}).setdefault(int(match["line"]), []).append(match["message"])
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return found


@cache
def _pyright(paths: tuple[Path, ...]) -> dict[Path, dict[int, list[str]]]:
    result = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson"] + [str(path) for path in paths],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    report = json.loads(result.stdout)
    found: dict[Path, dict[int, list[str]]] = {}
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] != "error":
            continue
        file = Path(diagnostic["file"]).resolve()
        line = diagnostic["range"]["start"]["line"] + 1
        found.setdefault(file, {}).setdefault(line, []).append(diagnostic["message"])
    return found


CHECKERS = {"mypy": _mypy, "pyright": _pyright}


@pytest.mark.parametrize("checker", sorted(CHECKERS))
def test_good_call_sites_are_clean(checker: str) -> None:
    found = CHECKERS[checker](tuple(GOOD))
    assert found == {}, f"{checker} reported errors on good call sites: {found}"


@pytest.mark.parametrize("checker", sorted(CHECKERS))
@pytest.mark.parametrize("path", BAD, ids=lambda path: path.name)
def test_each_bad_call_site_is_reported_at_its_line(checker: str, path: Path) -> None:
    expected = _expected_lines(path)
    assert expected, f"{path.name} marks no line with {MARK!r}"
    reported = CHECKERS[checker](tuple(BAD)).get(path.resolve(), {})
    missed = sorted(expected - set(reported))
    unexpected = {line: reported[line] for line in sorted(set(reported) - expected)}
    assert not missed, f"{checker} did not report lines {missed} of {path.name}"
    assert not unexpected, f"{checker} reported unmarked lines of {path.name}: {unexpected}"


def test_the_bad_call_sites_cover_at_least_ten_misuses() -> None:
    assert sum(len(_expected_lines(path)) for path in BAD) >= 10


def test_mypy_suggests_the_right_keyword_for_a_typo() -> None:
    path = HERE / "bad" / "core_misuse.py"
    lines = path.read_text().splitlines()
    typo_line = next(n for n, line in enumerate(lines, 1) if "temprature=0.2" in line)
    messages = _mypy(tuple(BAD))[path.resolve()][typo_line]
    assert any('did you mean "temperature"' in message for message in messages), messages


def test_annotating_with_fixedmodel_names_needs_no_litellm_stubs(tmp_path: Path) -> None:
    # The project config silences reportMissingTypeStubs for litellm; a user's does not.
    # Importing litellm's classes from litellm.types.utils is then an error, from fixedmodel not.
    config = tmp_path / "pyrightconfig.json"
    config.write_text(
        json.dumps(
            {"typeCheckingMode": "strict", "pythonVersion": "3.10", "reportMissingTypeStubs": True}
        )
    )
    direct = tmp_path / "direct.py"
    direct.write_text("from litellm.types.utils import Message\n\nMESSAGE: Message | None = None\n")
    corpus = sorted((HERE / "good").glob("corpus_*.py"))
    result = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "-p", str(config)]
        + [str(path) for path in [*corpus, direct]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    errors = [
        d for d in json.loads(result.stdout)["generalDiagnostics"] if d["severity"] == "error"
    ]
    assert {Path(d["file"]).name for d in errors} == {"direct.py"}, errors
    assert all(d["rule"] == "reportMissingTypeStubs" for d in errors), errors
