"""The fixedmodel command line, run in-process (``main(argv)``) against loopback.

The tests that need a second process (SIGINT, SIGKILL, a lock held by another run) are in
test_cli_field.py.
"""

from __future__ import annotations

import json
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


def test_chat_with_a_mock_response_works_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "openai/gpt-4o-mini", "Hi", "--mock-response", "Hello offline"]) == 0
    assert capsys.readouterr().out.strip() == "Hello offline"
    assert main(["chat", "openai/gpt-4o-mini", "Hi", "--mock-response", "x", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["choices"][0]["message"]["content"] == "x"


def test_a_batch_answers_every_line_on_model(
    server: OpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 200)
    server.fault_rule = lambda body: (
        Fault.status(400) if body["messages"][0]["content"] == "question 57" else None
    )
    code = main([
        "batch", "openai/gpt-4o-mini", str(source), str(target),
        "--api-base", server.base_url, "--concurrency", "8", "--no-progress",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_SOME_FAILED, err
    assert json.loads(err.splitlines()[-1]) == {
        "request_counts": {"total": 200, "completed": 199, "failed": 1}
    }
    records = _records(target)
    assert len(records) == 200
    answered = [r for r in records if r["response"]["status_code"] == 200]
    assert {r["custom_id"] for r in answered} == {f"req-{n}" for n in range(1, 201) if n != 57}
    body = answered[0]["response"]["body"]
    assert body["choices"][0]["message"]["content"] == server.reply_text
    assert server.request_count() == 200
    assert {request.body["model"] for request in server.requests} == {"gpt-4o-mini"}


def test_refusing_before_sending_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 3)
    assert main(["batch", "openai/gpt-4o-mini", str(source), str(target)]) == EXIT_NOTHING_SENT
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["chat", "no-such-provider/model", "Hi"]) == EXIT_NOTHING_SENT
    assert "unknown model" in capsys.readouterr().err
    absent = str(tmp_path / "absent.jsonl")
    assert main(["batch", "openai/x", absent, str(target)]) == EXIT_NOTHING_SENT
    assert "cannot read" in capsys.readouterr().err
    assert not target.exists()


@pytest.mark.parametrize("flag", ["--concurrency", "--rpm"])
def test_bad_numbers_are_refused(
    tmp_path: Path, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    _write_input(source, 1)
    code = main([
        "batch", "openai/x", str(source), str(tmp_path / "o.jsonl"), "--mock-response", "x",
        flag, "0",
    ])  # fmt: skip
    assert code == EXIT_NOTHING_SENT
    assert f"{flag}: must be a whole number >= 1" in capsys.readouterr().err


def test_a_byte_order_mark_is_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    good = {"method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}}
    lines = [
        b"\xef\xbb\xbf" + json.dumps({"custom_id": "bom", **good}).encode(),
        json.dumps({"custom_id": "b", **good}).encode(),
    ]
    source.write_bytes(b"\n".join(lines) + b"\n")
    code = main(["batch", "openai/gpt-4o-mini", str(source), str(target), "--mock-response", "ok"])
    assert code == EXIT_OK, capsys.readouterr().err
    assert sorted(r["custom_id"] for r in _records(target)) == ["b", "bom"]


def test_resume_after_a_torn_last_line_keeps_every_record_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(source, 4)
    args = ["batch", "openai/gpt-4o-mini", str(source), str(target), "--mock-response", "ok"]
    assert main(args) == EXIT_OK
    whole = target.read_text().splitlines()
    target.write_text("\n".join(whole[:2]) + "\n" + whole[2][:40])  # cut mid-record
    assert main([*args, "--resume"]) == EXIT_OK, capsys.readouterr().err
    lines = target.read_text().splitlines()
    assert lines[:2] == whole[:2]  # the torn line is gone, every line is a whole record
    records = [json.loads(line) for line in lines]
    assert sorted(r["custom_id"] for r in records) == [f"req-{n}" for n in range(1, 5)]


@pytest.mark.parametrize("case", ["directory", "same file", "stream json"])
def test_more_refusals_before_anything_is_sent(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    _write_input(source, 1)
    if case == "stream json":
        code = main(["chat", "openai/x", "Hi", "--mock-response", "x", "--stream", "--json"])
        expected = "cannot be combined"
    else:
        target = tmp_path if case == "directory" else source
        code = main(["batch", "openai/x", str(source), str(target), "--mock-response", "x",
                     "--resume"])  # fmt: skip
        expected = "is a directory" if case == "directory" else "is the INPUT file"
    assert code == EXIT_NOTHING_SENT
    assert expected in capsys.readouterr().err


def test_only_missing_credentials_stop_a_run() -> None:
    from fixedmodel._cli_common import is_credential

    assert is_credential("OPENAI_API_KEY") and is_credential("AWS_SECRET_ACCESS_KEY")
    assert not is_credential("OLLAMA_API_BASE") and not is_credential("VERTEXAI_PROJECT")
