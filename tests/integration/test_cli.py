"""The fixedmodel command line, run as a user runs it (a subprocess) against loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fixedmodel.cli import EXIT_INTERRUPTED, EXIT_NOTHING_SENT, EXIT_OK, EXIT_SOME_FAILED
from fixedmodel.testing.server import OpenAIServer


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return {**env, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **extra}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fixedmodel", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env or _env(),
        check=False,
    )


def _write_input(path: Path, count: int, *, broken: int | None = None) -> None:
    with path.open("w") as sink:
        for number in range(1, count + 1):
            if number == broken:
                sink.write('{"custom_id": "oops", "body": \n')
                continue
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


def test_chat_with_a_mock_response_works_offline() -> None:
    result = _cli("chat", "openai/gpt-4o-mini", "Hi", "--mock-response", "Hello offline")
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.strip() == "Hello offline"
    as_json = _cli("chat", "openai/gpt-4o-mini", "Hi", "--mock-response", "x", "--json")
    assert json.loads(as_json.stdout)["choices"][0]["message"]["content"] == "x"


def test_a_batch_with_a_malformed_line_answers_the_rest(
    server: OpenAIServer, tmp_path: Path
) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 200, broken=57)
    result = _cli(
        "batch", "openai/test", str(source), str(target),
        "--api-base", server.base_url, "--concurrency", "8",
    )  # fmt: skip
    assert result.returncode == EXIT_SOME_FAILED, result.stderr
    assert "line 57" in result.stderr
    records = _records(target)
    assert len(records) == 200
    answered = [r for r in records if r["response"] and r["response"]["status_code"] == 200]
    assert len(answered) == 199
    (failed,) = [r for r in records if r["error"] is not None]
    assert "line 57" in failed["error"]["message"]
    assert {r["custom_id"] for r in answered} == {f"req-{n}" for n in range(1, 201) if n != 57}
    body = answered[0]["response"]["body"]
    assert body["choices"][0]["message"]["content"] == server.reply_text
    assert server.request_count() == 199
    # The bodies' own model is not used: the command line's model is.
    assert {request.body["model"] for request in server.requests} == {"test"}


def test_an_interrupted_batch_resumes_without_paying_twice(
    server: OpenAIServer, tmp_path: Path
) -> None:
    server.latency = 0.05
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 120)
    command = [
        sys.executable, "-m", "fixedmodel", "batch", "openai/test", str(source), str(target),
        "--api-base", server.base_url, "--concurrency", "4", "--no-progress",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (not target.exists() or len(target.read_text().splitlines()) < 30) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    first = {r["custom_id"] for r in _records(target)}
    assert 30 <= len(first) < 120
    sent_first = server.request_count()
    time.sleep(0.2)  # requests cancelled in flight may still be landing
    sent_first = server.request_count()
    server.reset()
    result = _cli(
        "batch", "openai/test", str(source), str(target),
        "--api-base", server.base_url, "--concurrency", "4", "--resume",
    )  # fmt: skip
    assert result.returncode == EXIT_OK, result.stderr
    records = _records(target)
    assert sorted(r["custom_id"] for r in records) == sorted(f"req-{n}" for n in range(1, 121))
    resent = {str(r.body["messages"][0]["content"]) for r in server.requests}
    assert len(resent) == server.request_count() == 120 - len(first)
    assert sent_first - len(first) <= 4  # at most the requests in flight at the interrupt


def test_refusing_before_sending_anything(tmp_path: Path) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 3)
    missing_key = _cli("batch", "openai/gpt-4o-mini", str(source), str(target))
    assert missing_key.returncode == EXIT_NOTHING_SENT
    assert "OPENAI_API_KEY" in missing_key.stderr
    assert len(missing_key.stderr.strip().splitlines()) == 1
    unknown = _cli("chat", "no-such-provider/model", "Hi")
    assert unknown.returncode == EXIT_NOTHING_SENT
    assert "unknown model" in unknown.stderr
    absent = _cli("batch", "openai/x", str(tmp_path / "absent.jsonl"), str(target))
    assert absent.returncode == EXIT_NOTHING_SENT
    assert "cannot read" in absent.stderr
    assert not target.exists()


@pytest.mark.parametrize("flag", ["--concurrency", "--rpm"])
def test_bad_numbers_are_refused(tmp_path: Path, flag: str) -> None:
    source = tmp_path / "in.jsonl"
    _write_input(source, 1)
    result = _cli(
        "batch", "openai/x", str(source), str(tmp_path / "o.jsonl"), "--mock-response", "x",
        flag, "0",
    )  # fmt: skip
    assert result.returncode == EXIT_NOTHING_SENT
    assert f"{flag} must be at least 1" in result.stderr


def test_odd_lines_become_error_lines_and_the_rest_is_answered(tmp_path: Path) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    good = {"method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}}
    lines = [
        b"\xef\xbb\xbf" + json.dumps({"custom_id": "bom", **good}).encode(),  # a BOM first
        json.dumps({"custom_id": "a", **good}).encode(),
        b'{"custom_id": "caf\xe9"}',  # Latin-1, not UTF-8
        json.dumps({"custom_id": "a", **good}).encode(),  # a repeated custom_id
        json.dumps({"custom_id": 7, **good}).encode(),
        json.dumps({"custom_id": "b", **good}).encode(),
    ]
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = _cli(
        "batch", "openai/gpt-4o-mini", str(source), str(target), "--mock-response", "ok"
    )  # fmt: skip
    assert result.returncode == EXIT_SOME_FAILED, result.stderr
    records = _records(target)
    answered = sorted(r["custom_id"] for r in records if r["response"])
    assert answered == ["a", "b", "bom"]
    problems = sorted(r["error"]["message"] for r in records if r["error"])
    assert problems == [
        "line 3: not UTF-8 text (invalid continuation byte at byte 18)",
        "line 4: custom_id 'a' repeats line 2",
        "line 5: custom_id must be a string, got int",
    ]


def test_resume_after_a_torn_last_line_keeps_every_record_whole(tmp_path: Path) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 4)
    args = ("batch", "openai/gpt-4o-mini", str(source), str(target), "--mock-response", "ok")
    assert _cli(*args).returncode == EXIT_OK
    whole = target.read_text().splitlines()
    target.write_text("\n".join(whole[:2]) + "\n" + whole[2][:40])  # cut mid-record
    assert _cli(*args, "--resume").returncode == EXIT_OK
    lines = target.read_text().splitlines()
    assert lines[2] == whole[2][:40]  # the torn line stays on a line of its own
    records = [json.loads(line) for line in lines[:2] + lines[3:]]
    assert sorted(r["custom_id"] for r in records) == [f"req-{n}" for n in range(1, 5)]


@pytest.mark.parametrize("case", ["directory", "same file", "stream json"])
def test_more_refusals_before_anything_is_sent(tmp_path: Path, case: str) -> None:
    source = tmp_path / "in.jsonl"
    _write_input(source, 1)
    if case == "stream json":
        result = _cli("chat", "openai/x", "Hi", "--mock-response", "x", "--stream", "--json")
        expected = "cannot be combined"
    else:
        target = tmp_path if case == "directory" else source
        result = _cli("batch", "openai/x", str(source), str(target), "--mock-response", "x",
                      "--resume")  # fmt: skip
        expected = "is a directory" if case == "directory" else "is the INPUT file"
    assert result.returncode == EXIT_NOTHING_SENT, result.stderr
    assert expected in result.stderr


def test_only_missing_credentials_stop_a_run() -> None:
    from fixedmodel.cli import _is_credential

    assert _is_credential("OPENAI_API_KEY") and _is_credential("AWS_SECRET_ACCESS_KEY")
    assert not _is_credential("OLLAMA_API_BASE") and not _is_credential("VERTEXAI_PROJECT")
