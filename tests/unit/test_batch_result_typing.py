"""Batch results narrow for mypy --strict and pyright strict, and un-narrowed use is reported.

Writes a good and a bad call-site file and runs both checkers on them against this
checkout's ``src`` (as tests/typing/test_type_checkers.py does for the shared call sites).
Good sites must be clean, with exact ``assert_type`` results; each bad line ending in
``# expect-error`` must be reported by both checkers, and no other line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
MARK = "# expect-error"

GOOD = """\
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

from typing_extensions import assert_type

from fixedmodel import (
    BatchFailure,
    BatchResult,
    BatchRun,
    BatchSuccess,
    CompletionRequest,
    EmbeddingResponse,
    ModelResponse,
    abatch,
    aiter_batch,
    batch,
    batch_on,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
)

REQUESTS: list[CompletionRequest] = [{"messages": [{"role": "user", "content": "Hi"}]}]


def narrow(result: BatchResult[ModelResponse]) -> ModelResponse | None:
    if result.ok is True:
        assert_type(result, BatchSuccess[ModelResponse])
        assert_type(result.response, ModelResponse)
    else:
        assert_type(result, BatchFailure)
        assert_type(result.error, BaseException)
    if result.error is None:
        assert_type(result.response, ModelResponse)
    if isinstance(result, BatchSuccess):
        assert_type(result.response, ModelResponse)
    match result:
        case BatchSuccess(response=response):
            assert_type(response, ModelResponse)
        case BatchFailure(error=error):
            assert_type(error, BaseException)
    assert_type(result.unwrap(), ModelResponse)
    assert_type(result.response, ModelResponse | None)
    return result.response


def reraise(failure: BatchFailure) -> ModelResponse:
    return failure.unwrap()


async def sites() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini")
    for result in await abatch(chat, REQUESTS, fail_fast=True):
        narrow(result)
    run = aiter_batch(chat, REQUESTS, on_progress=[print])
    assert_type(run, BatchRun[ModelResponse])
    async for item in run:
        if isinstance(item, BatchFailure):
            continue
        assert_type(item.response, ModelResponse)
    embed = bind_aembedding("openai/text-embedding-3-small")
    for vectors in await abatch(embed, [{"input": "a"}]):
        if vectors.ok is True:
            assert_type(vectors.response, EmbeddingResponse)
    for answered in batch(bind_completion("openai/gpt-4o-mini"), REQUESTS):
        narrow(answered)
    with ProcessPoolExecutor() as pool:
        for worked in batch_on(pool, chat, REQUESTS):
            narrow(worked)
"""

BAD = """\
from __future__ import annotations

from fixedmodel import BatchFailure, BatchResult, ModelResponse


def misuse(result: BatchResult[ModelResponse], failure: BatchFailure) -> None:
    answer: ModelResponse = result.response  # expect-error
    print(result.response.choices)  # expect-error
    error: BaseException = result.error  # expect-error
    if result.ok is False:
        lost: ModelResponse = result.response  # expect-error
        print(lost)
    print(failure.response.choices)  # expect-error
    del answer, error
"""


def _expected(text: str) -> set[int]:
    lines = text.splitlines()
    return {number for number, line in enumerate(lines, start=1) if line.endswith(MARK)}


def _mypy(paths: list[Path]) -> dict[str, set[int]]:
    environment = {**os.environ, "MYPYPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes"]
        + [str(path) for path in paths],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        check=False,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    pattern = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: ")
    found: dict[str, set[int]] = {}
    for line in result.stdout.splitlines():
        match = pattern.match(line)
        if match:
            found.setdefault(Path(match["file"]).name, set()).add(int(match["line"]))
    return found


def _pyright(paths: list[Path], directory: Path) -> dict[str, set[int]]:
    config = directory / "pyrightconfig.json"
    config.write_text(
        json.dumps(
            {
                "typeCheckingMode": "strict",
                "pythonVersion": "3.10",
                "reportMissingTypeStubs": False,
                "extraPaths": [str(ROOT / "src")],
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "-p", str(config)]
        + ["--pythonpath", sys.executable]
        + [str(path) for path in paths],
        capture_output=True,
        text=True,
        cwd=directory,
        check=False,
    )
    found: dict[str, set[int]] = {}
    for diagnostic in json.loads(result.stdout)["generalDiagnostics"]:
        if diagnostic["severity"] == "error":
            line = diagnostic["range"]["start"]["line"] + 1
            found.setdefault(Path(diagnostic["file"]).name, set()).add(line)
    return found


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    directory = tmp_path_factory.mktemp("batch_typing")
    good = directory / "batch_result_good.py"
    bad = directory / "batch_result_bad.py"
    good.write_text(GOOD)
    bad.write_text(BAD)
    return [good, bad], directory


def test_mypy_narrows_batch_results_and_reports_unnarrowed_use(
    sites: tuple[list[Path], Path],
) -> None:
    paths, _ = sites
    found = _mypy(paths)
    assert found.get("batch_result_good.py", set()) == set(), found
    assert found.get("batch_result_bad.py", set()) == _expected(BAD), found


def test_pyright_narrows_batch_results_and_reports_unnarrowed_use(
    sites: tuple[list[Path], Path],
) -> None:
    paths, directory = sites
    found = _pyright(paths, directory)
    assert found.get("batch_result_good.py", set()) == set(), found
    assert found.get("batch_result_bad.py", set()) == _expected(BAD), found
