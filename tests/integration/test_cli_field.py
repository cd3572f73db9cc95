"""The batch command line in the field: input checks, paid answers kept, resume, errors.

The command runs in-process (``main(argv)``) against the loopback server; only the tests
that need a second process (a lock held by another run, SIGKILL, SIGINT) start one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from fixedmodel.cli import EXIT_INTERRUPTED, EXIT_NOTHING_SENT, EXIT_OK, EXIT_SOME_FAILED, main
from fixedmodel.testing.server import Fault, OpenAIServer


def _line(number: int, **changes: Any) -> dict[str, Any]:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"question {number}"}],
        "max_tokens": 20,
    }
    line = {
        "custom_id": f"req-{number}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": body,
    }
    return {**line, **changes}


def _write(path: Path, lines: list[dict[str, Any]] | int) -> Path:
    rows = [_line(n) for n in range(1, lines + 1)] if isinstance(lines, int) else lines
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _counts(stderr: str) -> dict[str, int]:
    last = json.loads(stderr.strip().splitlines()[-1])
    counts: dict[str, int] = last["request_counts"]
    return counts


class _Run:
    """Runs the command in-process and keeps its exit code and stderr."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str]:
        code = main(list(argv))
        captured = self._capsys.readouterr()
        return code, captured.err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> _Run:
    return _Run(capsys)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "in.jsonl", tmp_path / "out.jsonl"


def _batch(server: OpenAIServer, source: Path, target: Path, *more: str) -> list[str]:
    return [
        "batch", "openai/gpt-4o-mini", str(source), str(target),
        "--api-base", server.base_url, "--no-progress", *more,
    ]  # fmt: skip


# Item 9: the whole input is checked before the first request.


def test_a_repeated_custom_id_is_refused_before_any_request(
    server: OpenAIServer, files: tuple[Path, Path], run: _Run
) -> None:
    source, target = files
    lines = [_line(n) for n in range(1, 11)]
    lines[6] = _line(7, custom_id="req-2")
    _write(source, lines)
    code, err = run(*_batch(server, source, target))
    assert code == EXIT_NOTHING_SENT
    assert "line 7: duplicate_custom_id: custom_id 'req-2' is also on line 2" in err
    assert server.request_count() == 0
    assert not target.exists()


def _bad(number: int, **changes: Any) -> dict[str, Any]:
    return _line(number, **changes)


_NO_METHOD = {k: v for k, v in _line(3).items() if k != "method"}
_NO_URL = {k: v for k, v in _line(3).items() if k != "url"}
_NO_BODY = {k: v for k, v in _line(3).items() if k != "body"}
_NO_ID = {k: v for k, v in _line(3).items() if k != "custom_id"}
_EMBEDDING = _line(3, url="/v1/embeddings", body={"input": "x"})
_TOO_DEEP = '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"  # past the recursion limit


@pytest.mark.parametrize(
    ("third", "expected"),
    [
        ('{"custom_id": "x", "body": ', "line 3: invalid_json_line"),
        ("[1, 2]", "line 3: invalid_json_line"),
        pytest.param(_TOO_DEEP, "line 3: invalid_json_line: JSON nested", id="too-deep"),
        (_bad(3, body={"messages": [], "api_base": "http://x"}), "body key 'api_base'"),
        (_bad(3, body={"messages": [], "base_url": "http://x"}), "body key 'base_url'"),
        (_bad(3, body={"messages": [], "api_key": "sk-1"}), "body key 'api_key'"),
        (_bad(3, body={"messages": [], "mock_response": "hi"}), "body key 'mock_response'"),
        (_bad(3, body={"messages": [], "custom_llm_provider": "x"}), "body key 'custom_llm_"),
        (_bad(3, body={"messages": [], "aws_region_name": "x"}), "body key 'aws_region_name'"),
        # A line's own fallbacks went, with the run's key, to the host they named; its own
        # retries and prices added requests past --max-attempts and cost past --max-cost.
        (_bad(3, body={"messages": [], "fallbacks": [{"api_base": "http://x"}]}), "'fallbacks'"),
        (_bad(3, body={"messages": [], "num_retries": 9}), "body key 'num_retries'"),
        (_bad(3, body={"messages": [], "input_cost_per_token": 0}), "'input_cost_per_token'"),
        # Only a list of names kept by hand was refused; litellm's own list of its call
        # settings held some 400 more that went through: TLS checks off, another proxy,
        # headers, timeouts, tiered prices, files to read credentials from.
        (_bad(3, body={"messages": [], "ssl_verify": False}), "body key 'ssl_verify'"),
        (_bad(3, body={"messages": [], "use_litellm_proxy": True}), "'use_litellm_proxy'"),
        (_bad(3, body={"messages": [], "headers": {"x-a": "b"}}), "body key 'headers'"),
        (_bad(3, body={"messages": [], "extra_headers": {"x-a": "b"}}), "'extra_headers'"),
        (_bad(3, body={"messages": [], "timeout": 9999}), "body key 'timeout'"),
        (_bad(3, body={"messages": [], "request_timeout": 9999}), "'request_timeout'"),
        (_bad(3, body={"messages": [], "input_cost_per_token_above_200k_tokens": 0}), "_200k_"),
        (_bad(3, body={"messages": [], "base_model": "gpt-3.5-turbo"}), "'base_model'"),
        (_bad(3, body={"messages": [], "gcs_path_service_account": "/x"}), "'gcs_path_service"),
        (_NO_METHOD, "line 3: missing_required_parameter: no 'method'"),
        (_NO_URL, "line 3: missing_required_parameter: no 'url'"),
        (_NO_BODY, "line 3: missing_required_parameter: no 'body'"),
        (_NO_ID, "line 3: missing_required_parameter: no 'custom_id'"),
        (_bad(3, method="GET"), "line 3: invalid_request: method must be 'POST'"),
        (_bad(3, custom_id=7), "line 3: invalid_request: custom_id must be a string"),
        (_bad(3, url="/v1/completions"), "line 3: url_mismatch"),
        (_EMBEDDING, "line 3: url_mismatch: its endpoint differs from line 1's"),
        (_bad(3, body={"model": "gpt-4o", "messages": []}), "line 3: model_mismatch"),
        (_bad(3, body={"model": "gpt-4o-mini"}), "line 3: missing_required_parameter"),
        (_bad(3, body={"messages": [], "stream": True}), "line 3: invalid_request"),
    ],
)
def test_every_kind_of_bad_line_is_refused_before_any_request(
    server: OpenAIServer, files: tuple[Path, Path], run: _Run, third: object, expected: str
) -> None:
    source, target = files
    rows = [json.dumps(_line(n)) for n in range(1, 6)]
    rows[2] = third if isinstance(third, str) else json.dumps(third)
    source.write_text("\n".join(rows) + "\n")
    code, err = run(*_batch(server, source, target))
    assert code == EXIT_NOTHING_SENT, err
    assert expected in err
    assert server.request_count() == 0
    assert not target.exists()


def test_a_line_that_is_not_utf8_and_an_empty_file_are_refused(
    server: OpenAIServer, files: tuple[Path, Path], run: _Run
) -> None:
    source, target = files
    source.write_bytes(json.dumps(_line(1)).encode() + b'\n{"custom_id": "caf\xe9"}\n')
    code, err = run(*_batch(server, source, target))
    assert code == EXIT_NOTHING_SENT
    assert "line 2: invalid_json_line: not UTF-8 text" in err
    source.write_text("\n  \n")
    code, err = run(*_batch(server, source, target))
    assert code == EXIT_NOTHING_SENT
    assert "empty_file" in err
    assert server.request_count() == 0


def test_openai_limits_apply_and_options_raise_them(
    server: OpenAIServer, files: tuple[Path, Path], run: _Run
) -> None:
    source, target = files
    row = json.dumps({**_line(0), "custom_id": "{}"})
    with source.open("w") as sink:
        sink.writelines(row.replace('"{}"', f'"r{n}"') + "\n" for n in range(50_001))
    code, err = run(*_batch(server, source, target))
    assert code == EXIT_NOTHING_SENT
    assert "line 50001: too_many_tasks" in err
    _write(source, 4)
    code, err = run(*_batch(server, source, target, "--max-requests", "3"))
    assert code == EXIT_NOTHING_SENT
    assert "line 4: too_many_tasks" in err
    code, err = run(*_batch(server, source, target, "--max-input-mb", "0.0001"))
    assert code == EXIT_NOTHING_SENT
    assert "file_too_large" in err
    with source.open("r+b") as sink:
        sink.truncate(210_000_000)  # sparse: 210 MB on paper, nothing written
    code, err = run(*_batch(server, source, target))
    assert code == EXIT_NOTHING_SENT
    assert "file_too_large: the file is 210.0 MB, more than 200 MB" in err
    assert server.request_count() == 0
    _write(source, 4)
    code, err = run(*_batch(server, source, target, "--max-requests", "4"))
    assert code == EXIT_OK, err
    assert server.request_count() == 4


def test_the_body_model_must_be_model_unless_told_otherwise(
    server: OpenAIServer, files: tuple[Path, Path], run: _Run
) -> None:
    source, target = files
    _write(source, [_line(n, body={**_line(n)["body"], "model": "gpt-4o"}) for n in (1, 2)])
    code, err = run(*_batch(server, source, target))
    assert code == EXIT_NOTHING_SENT
    assert err.count("model_mismatch") == 1  # once, not once per line
    code, err = run(*_batch(server, source, target, "--ignore-body-model"))
    assert code == EXIT_OK, err
    assert {r.body["model"] for r in server.requests} == {"gpt-4o-mini"}


# Item 5: answers received are written, whatever stops the job.


def test_the_cost_cap_lets_calls_in_flight_finish_and_writes_them(
    server: OpenAIServer, files: tuple[Path, Path], run: _Run
) -> None:
    source, target = files
    _write(source, 12)
    # Line 1 answers at once and reaches the cap; lines 2-6 are still in flight then.
    server.fault_rule = lambda body: (
        None if body["messages"][0]["content"] == "question 1" else Fault.delay(0.4)
    )
    code, err = run(*_batch(server, source, target, "--concurrency", "6", "--max-cost", "1e-12"))
    assert code == EXIT_SOME_FAILED, err
    assert "cost cap" in err
    sent = server.request_count()
    assert sent == 6  # the six in flight when the first answer reached the cap
    records = _records(target)
    assert len(records) == sent  # every paid answer is written
    assert all(r["response"]["status_code"] == 200 for r in records)
    assert _counts(err) == {"total": 12, "completed": 6, "failed": 0}
    server.reset()
    code, err = run(*_batch(server, source, target, "--resume"))
    assert code == EXIT_OK, err
    assert server.request_count() == 6  # only the lines never answered
    assert sorted(r["custom_id"] for r in _records(target)) == sorted(
        f"req-{n}" for n in range(1, 13)
    )


# Item 6: resume retries failed lines; the exit code counts the whole job.


def _fail_questions(*numbers: int) -> Any:
    def rule(body: dict[str, Any]) -> Fault | None:
        text = str(body.get("messages", [{}])[0].get("content", ""))
        wanted = {f"question {n}" for n in numbers}
        return Fault.status(400, message="refused by the test") if text in wanted else None

    return rule


def test_resume_retries_failed_lines_and_keeps_one_record_per_line(
    server: OpenAIServer, files: tuple[Path, Path], run: _Run
) -> None:
    source, target = files
    _write(source, 8)
    server.fault_rule = _fail_questions(3, 5)
    code, err = run(*_batch(server, source, target))
    assert code == EXIT_SOME_FAILED
    assert _counts(err) == {"total": 8, "completed": 6, "failed": 2}
    server.reset()
    server.fault_rule = _fail_questions(5)  # line 5 fails again
    code, err = run(*_batch(server, source, target, "--resume"))
    assert server.request_count() == 2
    assert code == EXIT_SOME_FAILED  # the job still has a failed line
    assert _counts(err) == {"total": 8, "completed": 7, "failed": 1}
    server.reset()
    code, err = run(*_batch(server, source, target, "--resume"))
    assert server.request_count() == 1
    assert code == EXIT_OK, err
    records = _records(target)
    assert sorted(r["custom_id"] for r in records) == [f"req-{n}" for n in range(1, 9)]
    assert all(r["response"]["status_code"] == 200 for r in records)
    code, err = run(*_batch(server, source, target, "--resume"))  # nothing left to do
    assert (code, server.request_count()) == (EXIT_OK, 1)


# Item 8: the provider's error object and status, and a request_counts summary.


class _ProviderError(BaseHTTPRequestHandler):
    answer: ClassVar[dict[str, Any]] = {
        "error": {
            "message": "max_tokens is too large: 999999.",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": None,
        }
    }

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(self.answer).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-request-id", "req_provider_1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def provider_error_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ProviderError)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def test_an_error_line_holds_the_providers_error_object(
    provider_error_url: str, files: tuple[Path, Path], run: _Run
) -> None:
    source, target = files
    _write(source, 1)
    code, err = run(
        "batch", "openai/gpt-4o-mini", str(source), str(target),
        "--api-base", provider_error_url, "--no-progress",
    )  # fmt: skip
    assert code == EXIT_SOME_FAILED
    (record,) = _records(target)
    assert record["error"] is None
    assert record["response"]["status_code"] == 400
    assert record["response"]["request_id"] == "req_provider_1"
    assert record["response"]["body"] == _ProviderError.answer
    assert _counts(err) == {"total": 1, "completed": 0, "failed": 1}


class _EchoingProviderError(_ProviderError):
    """A proxy's 401 that echoes the request's credential beyond the message."""

    answer: ClassVar[dict[str, Any]] = {
        "error": {
            "message": "Incorrect API key provided: sk-echoed-9a8b7c6d5e",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
            "metadata": {
                "raw": "upstream said: Authorization: Bearer sk-echoed-9a8b7c6d5e",
                "upstream": "https://proxy:sk-echoed-9a8b7c6d5e@upstream.test/v1?key=k",
                "tried": ["sk-echoed-9a8b7c6d5e"],
            },
        }
    }


def test_a_credential_a_provider_echoes_in_its_error_object_is_hidden(
    files: tuple[Path, Path], run: _Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the error's message was redacted: the key the run sent, echoed by a proxy in
    # the error object's other fields (metadata.raw, a URL, a list), was written to OUTPUT.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-echoed-9a8b7c6d5e")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingProviderError)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    source, target = files
    _write(source, 1)
    try:
        code, err = run(
            "batch", "openai/gpt-4o-mini", str(source), str(target), "--no-progress",
            "--api-base", f"http://127.0.0.1:{server.server_port}/v1", "--max-attempts", "1",
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert code == EXIT_SOME_FAILED, err
    written = target.read_text()
    assert "sk-echoed-9a8b7c6d5e" not in written and "sk-echoed-9a8b7c6d5e" not in err
    (record,) = _records(target)
    error = record["response"]["body"]["error"]
    assert error["message"] == "Incorrect API key provided: ***"
    if "metadata" in error:  # older litellm releases keep only message, type, param, code
        assert error["metadata"]["raw"] == "upstream said: Authorization: Bearer ***"
        assert error["metadata"]["upstream"] == "https://***@upstream.test/v1?***"


def test_server_errors_and_lost_connections_are_written_as_openai_does(
    server: OpenAIServer, files: tuple[Path, Path], run: _Run
) -> None:
    source, target = files
    _write(source, 2)
    server.fault_rule = lambda body: (
        Fault.status(503, message="overloaded")
        if "question 1" in json.dumps(body)
        else Fault.drop()
    )
    code, err = run(*_batch(server, source, target, "--max-attempts", "1"))
    assert code == EXIT_SOME_FAILED
    by_id = {r["custom_id"]: r for r in _records(target)}
    overloaded = by_id["req-1"]["response"]
    assert overloaded["status_code"] == 503
    assert overloaded["body"]["error"]["message"] == "overloaded"  # no litellm prefix
    assert overloaded["body"]["error"]["type"] == "server_error"
    dropped = by_id["req-2"]
    assert dropped["response"] is None
    assert dropped["error"] == {"code": "connection_error", "message": "Connection error."}
    assert _counts(err) == {"total": 2, "completed": 0, "failed": 2}


# Item 10: every option's bad value is one line naming it, with no credential in it.

_SECRET = "hunter2-s3cret"
_BAD_OPTIONS: list[tuple[list[str], str]] = [
    (["--concurrency", "0"], "--concurrency"),
    (["--concurrency", "many"], "--concurrency"),
    (["--max-attempts", "0"], "--max-attempts"),
    (["--rpm", "-5"], "--rpm"),
    (["--tpm", "1.5"], "--tpm"),
    (["--max-cost", "0"], "--max-cost"),
    (["--max-cost", "nan"], "--max-cost"),
    (["--max-cost", "inf"], "--max-cost"),
    (["--max-requests", "0"], "--max-requests"),
    (["--max-input-mb", "-1"], "--max-input-mb"),
    (["--api-base", f"http://user:{_SECRET}@host:notaport/v1"], "--api-base"),
    (["--api-base", f"ftp://user:{_SECRET}@host/v1"], "--api-base"),
    (["--api-base", "127.0.0.1:8000"], "--api-base"),
    (["--redis-url", f"http://:{_SECRET}@localhost:6379"], "--redis-url"),
    (["--redis-url", f"redis://:{_SECRET}@localhost:xx"], "--redis-url"),
    (["--cache", "{file}"], "--cache"),
    (["--api-key", _SECRET], "--api-key"),
    ([f"--api-key={_SECRET}"], "--api-key"),
    (["--rpm"], "--rpm"),
]


@pytest.mark.parametrize(("option", "name"), _BAD_OPTIONS)
def test_a_bad_batch_option_is_one_line_that_names_it(
    files: tuple[Path, Path], run: _Run, option: list[str], name: str
) -> None:
    source, target = files
    _write(source, 1)
    option = [value.replace("{file}", str(source)) for value in option]
    code, err = run(
        "batch", "openai/gpt-4o-mini", str(source), str(target), "--mock-response", "x", *option
    )
    assert code == EXIT_NOTHING_SENT
    assert len(err.strip().splitlines()) == 1, err
    assert name in err
    assert _SECRET not in err
    assert not target.exists()


@pytest.mark.parametrize(
    ("paths", "name"),
    [
        (["{missing}", "{out}"], "INPUT"),
        (["{dir}", "{out}"], "INPUT"),
        (["{in}", "{dir}"], "OUTPUT"),
        (["{in}", "{in}"], "OUTPUT"),
        (["{in}", "{missing}/out.jsonl"], "OUTPUT"),
    ],
)
def test_a_bad_path_is_one_line_that_names_it(
    tmp_path: Path, files: tuple[Path, Path], run: _Run, paths: list[str], name: str
) -> None:
    source, target = files
    _write(source, 1)
    names = {"{missing}": str(tmp_path / "absent"), "{dir}": str(tmp_path)}
    names |= {"{in}": str(source), "{out}": str(target)}
    given = [names.get(path, path) for path in paths]
    given = [given[0], given[1].replace("{missing}", str(tmp_path / "absent"))]
    code, err = run("batch", "openai/gpt-4o-mini", *given, "--mock-response", "x")
    assert code == EXIT_NOTHING_SENT
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"fixedmodel: {name}")


@pytest.mark.parametrize(
    ("option", "name"),
    [
        (["--temperature", "hot"], "--temperature"),
        (["--temperature", "-0.5"], "--temperature"),
        (["--temperature", "nan"], "--temperature"),
        (["--max-tokens", "0"], "--max-tokens"),
        (["--api-base", f"https://me:{_SECRET}@host:99999"], "--api-base"),
        (["--api-key", _SECRET], "--api-key"),
        (["--stream", "--json"], "--json"),
    ],
)
def test_a_bad_chat_option_is_one_line_that_names_it(
    run: _Run, option: list[str], name: str
) -> None:
    code, err = run("chat", "openai/gpt-4o-mini", "Hi", "--mock-response", "x", *option)
    assert code == EXIT_NOTHING_SENT
    assert len(err.strip().splitlines()) == 1, err
    assert name in err
    assert _SECRET not in err


def test_a_credential_in_an_error_message_is_hidden(
    run: _Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", _SECRET)
    # Nothing listens on port 9: the connection error names the URL it tried.
    code, err = run(
        "chat", "openai/gpt-4o-mini", "Hi", "--api-base", f"http://u:{_SECRET}@127.0.0.1:9/v1"
    )
    assert code == EXIT_SOME_FAILED
    assert _SECRET not in err


# The first day: retries shown and configurable; chat's common options.


def test_retries_are_documented_and_max_attempts_sets_them(
    server: OpenAIServer, files: tuple[Path, Path], run: _Run, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "--help"]) == EXIT_OK
    shown = " ".join(capsys.readouterr().out.split())
    assert "--max-attempts N" in shown
    assert "(5xx)" in shown
    assert "1 = no retries" in shown
    source, target = files
    _write(source, 3)
    server.fault_rule = lambda body: Fault.status(503)
    code, _ = run(*_batch(server, source, target, "--max-attempts", "1"))
    assert (code, server.request_count()) == (EXIT_SOME_FAILED, 3)
    server.reset()
    server.fault_rule = lambda body: Fault.status(503, retry_after=0.0)
    target.unlink()
    code, _ = run(*_batch(server, source, target, "--max-attempts", "2"))
    assert (code, server.request_count()) == (EXIT_SOME_FAILED, 6)


def test_chat_sends_system_temperature_and_max_tokens(
    server: OpenAIServer, run: _Run, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([
        "chat", "openai/gpt-4o-mini", "Hi", "--api-base", server.base_url,
        "--system", "Be brief.", "--temperature", "0.25", "--max-tokens", "7",
    ])  # fmt: skip
    assert code == EXIT_OK
    assert capsys.readouterr().out.strip() == server.reply_text
    (request,) = server.requests
    assert request.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert request.body["temperature"] == 0.25
    assert request.body["max_tokens"] == 7


# Items 6 and 7: a second run on one OUTPUT is refused; a killed run leaves no lock.


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return {**env, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def _wait_for(condition: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.heavy  # Kills a child interpreter; run at the newest litellm only.
def test_a_second_run_is_refused_and_a_killed_run_leaves_no_lock(
    server: OpenAIServer, files: tuple[Path, Path], run: _Run
) -> None:
    source, target = files
    _write(source, 40)
    server.latency = 0.2
    command = [sys.executable, "-m", "fixedmodel"]
    command += _batch(server, source, target, "--concurrency", "4")
    first = subprocess.Popen(command, env=_env(), stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: target.exists() and len(target.read_text().splitlines()) >= 8)
        code, err = run(*_batch(server, source, target, "--resume"))
        assert code == EXIT_NOTHING_SENT
        assert "in use by another fixedmodel run" in err
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    answered = set[str]()
    for text in target.read_text().splitlines():
        try:
            answered.add(json.loads(text)["custom_id"])
        except json.JSONDecodeError:  # a line the kill cut short: its line runs again
            continue
    assert 8 <= len(answered) < 40
    server.reset()
    code, err = run(*_batch(server, source, target, "--resume", "--concurrency", "8"))
    assert code == EXIT_OK, err
    assert server.request_count() == 40 - len(answered)
    records = _records(target)
    assert sorted(r["custom_id"] for r in records) == sorted(f"req-{n}" for n in range(1, 41))


@pytest.mark.heavy  # Interrupts a child interpreter; run at the newest litellm only.
def test_ctrl_c_lets_calls_in_flight_finish_and_writes_them(
    server: OpenAIServer, files: tuple[Path, Path]
) -> None:
    source, target = files
    _write(source, 40)
    server.latency = 0.5
    command = [sys.executable, "-m", "fixedmodel"]
    command += _batch(server, source, target, "--concurrency", "4")
    process = subprocess.Popen(command, env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: server.request_count() >= 6)  # a second wave is in flight
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == EXIT_INTERRUPTED, err
    sent = server.request_count()
    assert len(_records(target)) == sent  # every paid answer is written
    assert _counts(err) == {"total": 40, "completed": sent, "failed": 0}
    server.reset()
    server.latency = 0.0
    code = main(_batch(server, source, target, "--resume"))
    assert code == EXIT_OK
    assert server.request_count() == 40 - sent  # nothing answered is sent twice


def test_a_symbolic_link_to_output_takes_its_targets_lock_and_stays_a_link(
    server: OpenAIServer, tmp_path: Path, run: _Run
) -> None:
    # The lock sat beside the path given: a run on a link and one on its target each took
    # a lock of their own and sent every line twice; the final rewrite replaced the link
    # with a file and left the target as it was.
    from fixedmodel._cli_output import OutputLock

    source = _write(tmp_path / "in.jsonl", 3)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.jsonl"
    link = tmp_path / "link.jsonl"
    first = json.dumps({"custom_id": "req-1", "response": None, "error": {"code": "x"}})
    target.write_text(first + '\n{"custom_id": "req-1", "resp')  # a failure, a torn line
    link.symlink_to(target)
    held = OutputLock(target)
    assert held.acquire()
    try:
        code, err = run(*_batch(server, source, link, "--resume"))
    finally:
        held.release()
    assert code == EXIT_NOTHING_SENT
    assert "in use by another fixedmodel run" in err
    assert server.request_count() == 0
    code, err = run(*_batch(server, source, link, "--resume"))
    assert code == EXIT_OK, err
    assert link.is_symlink()
    records = _records(target)
    assert sorted(record["custom_id"] for record in records) == ["req-1", "req-2", "req-3"]


def test_the_largest_limits_a_number_can_give_are_accepted(
    server: OpenAIServer, files: tuple[Path, Path], run: _Run
) -> None:
    # --max-input-mb 1e308 passed the option's check, then its bytes overflowed to infinity
    # and int() raised: "OverflowError", exit code 1, nothing said about the option.
    source, target = files
    _write(source, 2)
    code, err = run(*_batch(server, source, target, "--max-input-mb", "1e308"))
    assert code == EXIT_OK, err
    assert server.request_count() == 2


def _file_size_limit(size: int) -> Any:
    import resource  # here, not in the forked child, where an import could deadlock

    def limit() -> None:  # in the child, before it runs: writes past `size` fail
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


@pytest.mark.heavy  # A child interpreter under a file size limit.
@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_an_output_that_cannot_be_written_stops_the_run(
    server: OpenAIServer, files: tuple[Path, Path]
) -> None:
    # A full disk (here: a file size limit) failed every write, yet every line was still
    # sent and paid for: 40 requests for 5 records, one cut short, then "OSError" and no
    # summary. Now no line starts once OUTPUT cannot be written, and --resume finishes it.
    source, target = files
    _write(source, 40)
    command = [sys.executable, "-m", "fixedmodel"]
    command += _batch(server, source, target, "--concurrency", "2")
    limit = _file_size_limit(3000)  # only an rlimit and a signal between fork and exec
    done = subprocess.run(
        command, env=_env(), capture_output=True, text=True, timeout=120, preexec_fn=limit
    )
    assert done.returncode == EXIT_SOME_FAILED, done.stderr
    assert "cannot write OUTPUT" in done.stderr
    written = len(_records(target))
    assert 1 <= written < 8
    assert server.request_count() <= written + 2  # only the calls in flight were lost
    counts = _counts(done.stderr)
    assert counts == {"total": 40, "completed": written, "failed": 0}
    server.reset()
    code = main(_batch(server, source, target, "--resume"))
    assert code == EXIT_OK
    assert sorted(r["custom_id"] for r in _records(target)) == sorted(
        f"req-{n}" for n in range(1, 41)
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.timeout(60)  # reading a named pipe a second time waited for a writer forever
@pytest.mark.parametrize("lines", [5, 300])
def test_an_input_read_from_a_pipe_is_checked_and_sent(
    server: OpenAIServer, tmp_path: Path, run: _Run, lines: int
) -> None:
    # INPUT is read twice, once to check and once to send: a pipe (/dev/stdin, <(...))
    # was used up by the check, so nothing was sent and the run ended with exit code 1 and
    # "completed": 0, without a word; a named pipe hung at the second read. It is now
    # copied once to a temporary file.
    pipe = tmp_path / "in.fifo"
    os.mkfifo(pipe)
    target = tmp_path / "out.jsonl"
    text = "".join(json.dumps(_line(n)) + "\n" for n in range(1, lines + 1))

    def feed() -> None:
        with pipe.open("w") as sink:
            sink.write(text)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    code, err = run(*_batch(server, pipe, target, "--concurrency", "32"))
    feeder.join(10)
    assert code == EXIT_OK, err
    assert _counts(err) == {"total": lines, "completed": lines, "failed": 0}
    assert server.request_count() == lines
    assert not list(tmp_path.glob("fixedmodel-*"))


@pytest.mark.heavy  # A child interpreter, stopped by a signal.
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_sigterm_while_a_pipe_is_copied_leaves_no_copy_behind(
    server: OpenAIServer, tmp_path: Path
) -> None:
    # SIGTERM's default action ended the process where it stood: a run stopped while it
    # copied a pipe INPUT (or while it rewrote OUTPUT at the end) left the temporary copy
    # behind. SIGTERM now unwinds like Ctrl-C outside the requests too: exit code 130 and
    # nothing left in the temporary directory.
    pipe = tmp_path / "in.fifo"
    os.mkfifo(pipe)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    target = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "fixedmodel", *_batch(server, pipe, target)]
    child = subprocess.Popen(
        command,
        env={**_env(), "TMPDIR": str(scratch)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with pipe.open("w") as sink:  # opened once the child opens it to copy
            sink.write(json.dumps(_line(1)) + "\n")
            sink.flush()
            deadline = time.monotonic() + 60
            while not list(scratch.glob("fixedmodel-*/input.jsonl")):
                assert child.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            child.send_signal(signal.SIGTERM)  # the copy waits for more of the pipe
            _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == EXIT_INTERRUPTED, err
    assert "interrupted" in err
    assert not list(scratch.iterdir())
    assert server.request_count() == 0


class _Stopped(Exception):
    pass


def _stop(number: int, frame: object) -> None:
    raise _Stopped


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and per-thread signals: POSIX")
def test_a_signal_that_lands_outside_the_pipes_read_still_stops_the_copy(tmp_path: Path) -> None:
    # A signal Python sees between two reads (here: delivered to another thread, so the
    # main thread's read is not interrupted) waited for the pipe's next bytes: the run under
    # SIGTERM hung as long as the writer kept the pipe open and quiet (one in three runs of
    # the SIGTERM test above on a loaded machine). The copy wakes now and then to let it in.
    import contextlib

    from fixedmodel._cli_batch import _regular_input  # pyright: ignore[reportPrivateUsage]

    pipe = tmp_path / "in.fifo"
    os.mkfifo(pipe)
    quiet_for = 5.0

    def writer() -> None:
        with pipe.open("w") as sink:
            sink.write(json.dumps(_line(1)) + "\n")
            sink.flush()
            time.sleep(0.3)  # the copy is reading the quiet pipe now
            signal.raise_signal(signal.SIGUSR1)  # to this thread: no read is interrupted
            time.sleep(quiet_for)

    previous = signal.signal(signal.SIGUSR1, _stop)
    thread = threading.Thread(target=writer)
    thread.start()
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as cleanup, pytest.raises(_Stopped):
            _regular_input(pipe, 1e6, cleanup)
        assert time.monotonic() - started < quiet_for / 2
    finally:
        thread.join()
        signal.signal(signal.SIGUSR1, previous)


def test_a_cost_cap_stops_at_the_first_answer_without_a_price(
    server: OpenAIServer, tmp_path: Path, run: _Run
) -> None:
    # litellm prices an unknown model's answers at nothing, so --max-cost never stopped the
    # run: a cap of $0.0000001 let all 20 lines through. An answer without a price now stops
    # the run as the cap does (the calls in flight finish); --resume continues it.
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [_line(n) for n in range(1, 21)]
    for line in lines:
        line["body"]["model"] = "my-unpriced-finetune"
    _write(source, lines)
    argv = _batch(server, source, target, "--max-cost", "0.0000001", "--concurrency", "1")
    argv[1] = "openai/my-unpriced-finetune"
    code, err = run(*argv)
    assert code == EXIT_SOME_FAILED, err
    assert "--max-cost: litellm has no price for the answer to line 'req-1'" in err
    assert server.request_count() == 1
    assert _counts(err) == {"total": 20, "completed": 1, "failed": 0}
    # Without a cap, nothing needs a price.
    code, err = run(*[a for a in argv if a not in ("--max-cost", "0.0000001")], "--resume")
    assert code == EXIT_OK, err
    assert server.request_count() == 20
    # A priced model: the cap stops the run on what it spent.
    server.reset()
    target.unlink()
    _write(source, 20)
    argv[1] = "openai/gpt-4o-mini"
    code, err = run(*argv)
    assert code == EXIT_SOME_FAILED, err
    assert "cost cap is reached" in err
    assert server.request_count() == 1


_SIGTERM_AS_THE_RUN_HANDS_IT_BACK = """
import os, signal, sys
from fixedmodel.cli import main

set_handler = signal.signal
changes = 0

def set_then_terminate(number, handler):
    # SIGTERM's handler changes three times: the run's, the requests', the run's again
    # (given back once the requests end). A SIGTERM lands right after the third change.
    global changes
    previous = set_handler(number, handler)
    if number == signal.SIGTERM:
        changes += 1
        if changes == 3:
            os.kill(os.getpid(), signal.SIGTERM)
    return previous

signal.signal = set_then_terminate
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the loop takes signals on POSIX only")
def test_sigterm_as_the_requests_hand_it_back_still_unwinds(tmp_path: Path) -> None:
    # The requests took SIGTERM with the loop's add_signal_handler, whose
    # remove_signal_handler sets the default action before the run's handler is given
    # back: a SIGTERM landing in between (forced here) ended the process where it stood
    # (-15), leaving the copy of a pipe INPUT behind. The handlers are now swapped at once,
    # and the signal unwinds like Ctrl-C.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    target = tmp_path / "out.jsonl"
    argv = [
        "batch", "openai/gpt-4o-mini", "/dev/stdin", str(target),
        "--mock-response", "hi", "--no-progress",
    ]  # fmt: skip
    child = subprocess.run(
        [sys.executable, "-c", _SIGTERM_AS_THE_RUN_HANDS_IT_BACK, *argv],
        input="".join(json.dumps(_line(n)) + "\n" for n in (1, 2)),
        env={**_env(), "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == EXIT_INTERRUPTED, child.stderr
    assert not list(scratch.iterdir())
    assert len(_records(target)) == 2  # the answers were written before the signal


def test_a_long_echoed_error_object_reads_the_credentials_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every string of a provider's error object is redacted; each string read the whole
    # environment again, so a proxy echoing a conversation of 50,000 messages took 7 s per
    # error line, with the event loop (every call in flight) waiting. Read once per object.
    from fixedmodel import _cli_common
    from fixedmodel._cli_output import _redacted  # pyright: ignore[reportPrivateUsage]

    secret = "sk-echoed-" + "7" * 30
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    reads = 0
    is_credential = _cli_common.is_credential

    def counted(variable: str) -> bool:
        nonlocal reads
        reads += 1
        return is_credential(variable)

    monkeypatch.setattr(_cli_common, "is_credential", counted)
    echoed = [{"role": "user", "content": f"line {n} Bearer {secret}"} for n in range(2_000)]
    body = {"message": "bad request", "metadata": {"raw": echoed}}
    shown = json.dumps(_redacted(body))
    assert secret not in shown and shown.count("***") == 2_000
    assert reads <= len(os.environ)  # the environment read once, not once per string


@pytest.mark.skipif(sys.platform == "win32", reason="pipes read through /dev/fd: POSIX")
def test_a_pipe_read_past_selects_descriptor_range_is_still_copied(tmp_path: Path) -> None:
    # The copy waits for the pipe with select, which refuses a descriptor of 1024 or more
    # (ValueError): in a process with that many files open (main() called from a server),
    # a pipe INPUT could no longer be read at all.
    import contextlib
    import resource

    from fixedmodel._cli_batch import _regular_input  # pyright: ignore[reportPrivateUsage]

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip("needs 1200 open files")
    read_end, write_end = os.pipe()
    text = json.dumps(_line(1)) + "\n"
    os.write(write_end, text.encode())
    os.close(write_end)
    filler = [os.dup(read_end) for _ in range(1100)]  # the next file opened gets fd >= 1024
    try:
        with contextlib.ExitStack() as cleanup:
            copy = _regular_input(Path(f"/dev/fd/{read_end}"), 1e6, cleanup)
            assert copy.read_text() == text
    finally:
        for fd in [read_end, *filler]:
            os.close(fd)
