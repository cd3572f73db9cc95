"""``fixedmodel batch --provider-batch``: the same input and output files, the Batch API between."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fixedmodel.cli import EXIT_NOTHING_SENT, EXIT_OK, EXIT_SOME_FAILED, main
from fixedmodel.testing.server import Fault, OpenAIServer


def _write_input(path: Path, count: int) -> None:
    with path.open("w") as sink:
        for number in range(1, count + 1):
            line = {
                "custom_id": f"req-{number}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"question {number}"}],
                    "max_tokens": 20,
                },
            }
            sink.write(json.dumps(line) + "\n")


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _argv(server: OpenAIServer, source: Path, target: Path, *more: str) -> list[str]:
    return [
        "batch", "openai/gpt-4o-mini", str(source), str(target), "--api-base", server.base_url,
        "--provider-batch", "--poll-interval", "0", "--no-progress", *more,
    ]  # fmt: skip


def test_a_provider_batch_writes_the_same_records_with_one_upload_and_no_live_call(
    server: OpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 30)
    server.fault_rule = lambda body: (
        Fault.status(400, message="bad max_tokens")
        if body["messages"][0]["content"] == "question 7"
        else None
    )
    code = main(_argv(server, source, target))
    err = capsys.readouterr().err
    assert code == EXIT_SOME_FAILED, err
    assert json.loads(err.splitlines()[-1]) == {
        "request_counts": {"total": 30, "completed": 29, "failed": 1}
    }
    assert len(server.batches.uploads) == 1 and len(server.batches.batches) == 1
    assert server.request_count() == 0
    records = {r["custom_id"]: r for r in _records(target)}
    assert set(records) == {f"req-{n}" for n in range(1, 31)}
    answer = records["req-1"]["response"]
    assert answer["status_code"] == 200
    assert answer["body"]["choices"][0]["message"]["content"] == server.reply_text
    failed = records["req-7"]["response"]
    assert failed["status_code"] == 400
    assert failed["body"]["error"]["message"] == "bad max_tokens"

    # --resume sends exactly the failed line again, in a new job.
    server.fault_rule = None
    assert main(_argv(server, source, target, "--resume")) == EXIT_OK
    assert len(server.batches.batches) == 2
    second = server.batches.file_lines(server.batches.batches[1]["input_file_id"])
    assert [line["custom_id"] for line in second] == ["req-7"]
    assert {r["custom_id"] for r in _records(target)} == {f"req-{n}" for n in range(1, 31)}


def test_options_that_cannot_apply_are_refused(
    server: OpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 2)
    assert main(_argv(server, source, target, "--max-cost", "1")) == EXIT_NOTHING_SENT
    assert "--max-cost" in capsys.readouterr().err
    assert main(_argv(server, source, target, "--poll-interval", "-1")) == EXIT_NOTHING_SENT
    assert "--poll-interval" in capsys.readouterr().err
    assert not server.batches.uploads


@pytest.mark.heavy  # Kills a child interpreter; run at the newest litellm only.
async def test_resume_after_a_kill_collects_the_same_job(
    server: OpenAIServer, tmp_path: Path
) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 12)
    server.batches.polls_in_progress = 10_000
    argv = [sys.executable, "-m", "fixedmodel", *_argv(server, source, target)]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    child = await asyncio.create_subprocess_exec(*argv, env=env)
    state = tmp_path / "out.jsonl.provider-batch.json"
    deadline = time.monotonic() + 120
    try:
        while not (state.exists() and "batch-" in state.read_text()):
            assert child.returncode is None and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert len(server.batches.uploads) == 1 and len(server.batches.batches) == 1

    # A run without --resume is refused while the job is under way.
    assert await asyncio.to_thread(main, _argv(server, source, target)) == EXIT_NOTHING_SENT
    server.batches.polls_in_progress = 1
    code = await asyncio.to_thread(main, _argv(server, source, target, "--resume"))
    assert code == EXIT_OK
    assert len(server.batches.uploads) == 1 and len(server.batches.batches) == 1
    assert sorted(r["custom_id"] for r in _records(target)) == sorted(
        f"req-{n}" for n in range(1, 13)
    )


def test_a_job_left_under_way_is_found_through_a_link_to_output(
    server: OpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The state sat beside the path given: a job a killed run left on out.jsonl went
    # unseen by a run given a link to it, which started (and paid for) a second job.
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 2)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    (tmp_path / "out.jsonl.provider-batch.json").write_text("{}")  # what a killed run left
    assert main(_argv(server, source, link)) == EXIT_NOTHING_SENT
    assert "has a provider batch job under way" in capsys.readouterr().err
    assert not server.batches.uploads


def test_a_job_an_earlier_release_left_beside_a_link_is_still_found(
    server: OpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Earlier releases kept the state beside the path given, a link included: after an
    # upgrade mid-job, a run looking only beside the link's target started a second job.
    source, target = tmp_path / "in.jsonl", tmp_path / "real" / "out.jsonl"
    _write_input(source, 2)
    target.parent.mkdir()
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    (tmp_path / "link.jsonl.provider-batch.json").write_text("{}")  # where it was left
    assert main(_argv(server, source, link)) == EXIT_NOTHING_SENT
    assert "has a provider batch job under way" in capsys.readouterr().err
    assert not server.batches.uploads


def test_an_output_that_cannot_be_written_keeps_the_job_for_resume(
    server: OpenAIServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # OUTPUT stopped taking writes (a full disk) while the answers were read back: the run
    # ended in "fixedmodel: OSError: [Errno 28] ...", with no word of the job kept and no
    # request_counts. Now it says what happened and that --resume collects the same job.
    import errno

    from fixedmodel import _cli_output

    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 6)
    real_write = _cli_output.RecordWriter.write
    written: list[int] = []

    def full_after_two(self: _cli_output.RecordWriter, record: dict[str, Any]) -> None:
        if len(written) >= 2:
            error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.failed = error
            raise error
        written.append(1)
        real_write(self, record)

    monkeypatch.setattr(_cli_output.RecordWriter, "write", full_after_two)
    code = main(_argv(server, source, target))
    err = capsys.readouterr().err
    assert code == EXIT_SOME_FAILED, err
    assert "Traceback" not in err and "OSError" not in err
    assert f"cannot write OUTPUT {target}: No space left on device" in err
    assert "--resume" in err
    assert json.loads(err.splitlines()[-1]) == {
        "request_counts": {"total": 6, "completed": 2, "failed": 0}
    }
    assert (tmp_path / "out.jsonl.provider-batch.json").exists()  # the job is kept

    monkeypatch.undo()
    assert main(_argv(server, source, target, "--resume")) == EXIT_OK
    assert len(server.batches.uploads) == 1 and len(server.batches.batches) == 1
    assert sorted(r["custom_id"] for r in _records(target)) == sorted(
        f"req-{n}" for n in range(1, 7)
    )


def test_a_job_whose_line_list_cannot_be_written_is_not_started(
    server: OpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The list of the job's lines could not be written beside OUTPUT: "fixedmodel:
    # IsADirectoryError: ..." and exit code 1, as if lines had failed. Nothing was sent, so
    # it is the usage exit code with a line naming the file.
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 2)
    (tmp_path / "out.jsonl.provider-batch.ids").mkdir()
    assert main(_argv(server, source, target)) == EXIT_NOTHING_SENT
    err = capsys.readouterr().err
    assert "OUTPUT: cannot write" in err and "out.jsonl.provider-batch.ids" in err
    assert "IsADirectoryError" not in err
    assert not server.batches.uploads


@pytest.mark.heavy  # Stops a child interpreter with a signal; run at the newest litellm only.
async def test_sigterm_while_the_job_runs_says_how_to_collect_it(
    server: OpenAIServer, tmp_path: Path
) -> None:
    # SIGTERM (a scheduler's stop, `kill`) ended the run without a word: exit -15 and
    # nothing said of the job left running. Like Ctrl-C, it now says how to collect it.
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 3)
    server.batches.polls_in_progress = 10_000
    argv = [sys.executable, "-m", "fixedmodel", *_argv(server, source, target)]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    child = await asyncio.create_subprocess_exec(*argv, env=env, stderr=asyncio.subprocess.PIPE)
    state = tmp_path / "out.jsonl.provider-batch.json"
    deadline = time.monotonic() + 120
    try:
        while not (state.exists() and "batch-" in state.read_text()):
            assert child.returncode is None and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        child.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(child.communicate(), 60)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    err = err_bytes.decode()
    assert child.returncode == 130, err
    assert "the provider batch keeps running" in err and "--resume" in err, err
    assert state.exists()
    server.batches.polls_in_progress = 1
    code = await asyncio.to_thread(main, _argv(server, source, target, "--resume"))
    assert code == EXIT_OK
    assert len(server.batches.uploads) == 1 and len(server.batches.batches) == 1


def test_a_live_run_on_an_output_with_a_job_under_way_is_refused(
    server: OpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A job a killed --provider-batch run left under way, then `--resume` without
    # --provider-batch: every line the job holds (and is paid for) was sent again live.
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 3)
    (tmp_path / "out.jsonl.provider-batch.json").write_text("{}")  # what a killed run left
    live = [
        "batch", "openai/gpt-4o-mini", str(source), str(target),
        "--api-base", server.base_url, "--no-progress",
    ]  # fmt: skip
    for more in ([], ["--resume"]):
        assert main([*live, *more]) == EXIT_NOTHING_SENT
        err = capsys.readouterr().err
        assert "has a provider batch job under way" in err and "--provider-batch" in err, err
    assert server.request_count() == 0


def _job_started_while_waiting_for_the_lock(
    monkeypatch: pytest.MonkeyPatch, state: Path, job: dict[str, Any]
) -> None:
    """The other run starts a job (and is killed) between this run's checks and its lock."""
    from fixedmodel import _cli_output

    taken = _cli_output.OutputLock.acquire

    def acquire(self: _cli_output.OutputLock) -> bool:
        if not state.exists():
            state.write_text(json.dumps(job))
        return taken(self)

    monkeypatch.setattr(_cli_output.OutputLock, "acquire", acquire)


@pytest.mark.parametrize("mode", ["live", "live --resume", "provider"])
def test_a_job_started_before_the_lock_is_taken_is_still_seen(
    server: OpenAIServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    # The job under way was looked for before OUTPUT's lock was taken: a --provider-batch
    # run holding the lock could start its job (and be killed) in between, and this run then
    # sent every line again live, or started a second job over the first one's state,
    # paying twice. It is looked for once the lock is held.
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 3)
    state = tmp_path / "out.jsonl.provider-batch.json"
    job = {"batch_id": "batch_other_run", "input_file_id": "file-other"}
    _job_started_while_waiting_for_the_lock(monkeypatch, state, job)
    if mode == "provider":
        argv = _argv(server, source, target)
    else:
        argv = [
            "batch", "openai/gpt-4o-mini", str(source), str(target),
            "--api-base", server.base_url, "--no-progress", *mode.split()[1:],
        ]  # fmt: skip
    assert main(argv) == EXIT_NOTHING_SENT
    err = capsys.readouterr().err
    assert "has a provider batch job under way" in err, err
    assert server.request_count("") == 0  # no live call, no upload, no second job
    assert json.loads(state.read_text()) == job  # the other run's job, kept to collect
