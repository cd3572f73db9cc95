"""The ``fixedmodel`` command line: try a model (``chat``) or run a JSONL batch (``batch``).

``fixedmodel batch`` reads the OpenAI Batch API's input lines::

    {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

and writes its output lines, one per input line, appended and flushed as each finishes::

    {"id": "batch_req_...", "custom_id": "r1",
     "response": {"status_code": 200, "request_id": "...", "body": {...}}, "error": null}

A provider error becomes ``response.status_code`` with an OpenAI error ``body``; a line that
cannot be read or sent becomes ``"response": null`` with ``"error": {"code", "message"}``.
The ``model`` in each body is not used: the job runs on the MODEL given on the command line
(which is what lets one file move between OpenAI Batch and any litellm provider). Format:
https://platform.openai.com/docs/guides/batch

Exit codes: 0 every line answered; 1 some lines failed (their errors are in OUTPUT), or
``chat`` got an error from the provider;
2 nothing was sent (bad arguments, unreadable input, an unknown model, missing credentials);
130 interrupted (what finished is in OUTPUT; ``--resume`` continues).

Credentials come from the environment only (``OPENAI_API_KEY`` and litellm's other
variables), never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

if TYPE_CHECKING:
    from fixedmodel._batch import CompletionRequest
    from fixedmodel._bind import BoundACompletion, BoundAEmbedding
    from fixedmodel._protocols import AFixedModelCompletion

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_NOTHING_SENT = 2
EXIT_INTERRUPTED = 130

_ENDPOINTS = {"/v1/chat/completions": "completion", "/v1/embeddings": "embedding"}


class _UsageError(Exception):
    """A problem found before anything was sent: one line on stderr, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fixedmodel",
        description="Try a litellm model, or run an OpenAI Batch JSONL file through one.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    chat = commands.add_parser("chat", help="send one prompt and print the answer")
    chat.add_argument("model", help="litellm model name, e.g. openai/gpt-4o-mini")
    chat.add_argument("prompt", help="the user message")
    chat.add_argument("--stream", action="store_true", help="print the answer as it streams")
    chat.add_argument("--mock-response", metavar="TEXT", help="answer with TEXT, send nothing")
    chat.add_argument("--api-base", metavar="URL", help="the provider's base URL")
    chat.add_argument("--json", action="store_true", help="print the whole response as JSON")

    run = commands.add_parser("batch", help="run an OpenAI Batch JSONL file through MODEL")
    run.add_argument("model", help="litellm model name; the bodies' own model is not used")
    run.add_argument("input", type=Path, help="OpenAI Batch input JSONL")
    run.add_argument("output", type=Path, help="OpenAI Batch output JSONL (appended)")
    run.add_argument("--concurrency", type=int, default=16, metavar="N")
    run.add_argument("--rpm", type=int, metavar="N", help="requests per minute at most")
    run.add_argument("--tpm", type=int, metavar="N", help="tokens per minute at most")
    store = run.add_mutually_exclusive_group()
    store.add_argument("--cache", type=Path, metavar="DIR", help="a disk cache (resumable)")
    store.add_argument(
        "--redis-url", metavar="URL", help="a Redis for the cache and the limits, shared"
    )
    run.add_argument("--max-cost", type=float, metavar="USD", help="stop before spending more")
    run.add_argument("--resume", action="store_true", help="skip custom_ids already in OUTPUT")
    run.add_argument("--api-base", metavar="URL", help="the provider's base URL")
    run.add_argument("--mock-response", metavar="TEXT", help="answer with TEXT, send nothing")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    args = _parser().parse_args(argv)
    _quiet_litellm()
    try:
        if args.command == "chat":
            return _chat(args)
        return asyncio.run(_batch(args))
    except _UsageError as problem:
        print(f"fixedmodel: {problem}", file=sys.stderr)
        return EXIT_NOTHING_SENT
    except KeyboardInterrupt:
        print("fixedmodel: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a provider's answer to `chat`: one line, not a traceback
        first = str(error).splitlines()[0] if str(error) else ""
        print(f"fixedmodel: {type(error).__name__}: {first}", file=sys.stderr)
        return EXIT_SOME_FAILED


def _quiet_litellm() -> None:
    """Keep litellm's help banner ("Give Feedback / Get Help") off stdout.

    A global litellm setting, which the library never changes; the command line is an
    application and owns its output (``chat --json`` must print JSON only).
    """
    from fixedmodel._litellm import litellm_module

    # litellm boundary: the module's attributes are untyped.
    litellm: Any = litellm_module()
    litellm.suppress_debug_info = True


def _check_model(model: str, api_base: str | None, mock: bool) -> None:
    """Refuse a model litellm does not know, or one whose credentials are missing."""
    from fixedmodel._litellm import litellm_module

    litellm = litellm_module()
    try:
        provider = litellm.get_llm_provider(model=model, api_base=api_base)[1]
    except Exception as error:
        msg = f"unknown model {model!r}: {str(error).splitlines()[0]}"
        raise _UsageError(msg) from None
    if mock or api_base is not None:
        return
    found: dict[str, Any] = litellm.validate_environment(model=model)
    # litellm also lists settings that are not credentials (OLLAMA_API_BASE,
    # VERTEXAI_PROJECT): only missing credentials stop the run before it starts.
    listed: list[object] = list(found.get("missing_keys") or [])
    missing = [name for name in listed if isinstance(name, str) and _is_credential(name)]
    if missing:
        names = ", ".join(str(name) for name in missing)
        msg = f"missing credentials for {provider} model {model!r}: set {names}"
        raise _UsageError(msg)


def _is_credential(variable: str) -> bool:
    name = variable.upper()
    return any(part in name for part in ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"))


def _defaults(args: argparse.Namespace) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    if args.api_base is not None:
        defaults["api_base"] = args.api_base
        # A local OpenAI-compatible server takes any key; the SDK wants one.
        if not os.environ.get("OPENAI_API_KEY"):
            defaults["api_key"] = "unused"
    if args.mock_response is not None:
        defaults["mock_response"] = args.mock_response
    return defaults


def _chat(args: argparse.Namespace) -> int:
    from fixedmodel import bind_completion, responses

    if args.stream and args.json:
        msg = "--json prints a whole response; it cannot be combined with --stream"
        raise _UsageError(msg)
    _check_model(args.model, args.api_base, args.mock_response is not None)
    messages = [{"role": "user", "content": args.prompt}]
    with bind_completion(args.model, **_defaults(args)) as chat:
        if args.stream:
            stream = chat(messages=messages, stream=True)
            for piece in responses.text_deltas(stream):
                print(piece, end="", flush=True)
            print()
            return EXIT_OK
        response = chat(messages=messages)
    if args.json:
        print(response.model_dump_json(indent=2))
    else:
        print(responses.text(response))
    return EXIT_OK


@dataclass(frozen=True)
class _Line:
    """One input line: its number, custom_id and request, or why it cannot be sent."""

    number: int
    custom_id: str
    request: dict[str, Any] | None
    problem: str | None


def _read_lines(path: Path, kind: list[str], skip: set[str]) -> Iterator[_Line]:
    """The input's lines, lazily; ``kind`` receives the endpoint's kind of the first line.

    A line that is not UTF-8 becomes an error line of its own; a byte-order mark at the
    start of the file is ignored; a ``custom_id`` seen before is an error line too (OpenAI
    Batch refuses duplicates).
    """
    seen: dict[str, int] = {}
    with path.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                problem = f"line {number}: not UTF-8 text ({error.reason} at byte {error.start})"
                yield _Line(number, f"line-{number}", None, problem)
                continue
            if not text.strip():
                continue
            line = _parse(number, text, kind)
            first = seen.setdefault(line.custom_id, number)
            if first != number and line.request is not None:
                problem = f"line {number}: custom_id {line.custom_id!r} repeats line {first}"
                line = _Line(number, line.custom_id, None, problem)
            if line.custom_id not in skip:
                yield line


def _parse(number: int, text: str, kind: list[str]) -> _Line:
    fallback_id = f"line-{number}"
    try:
        data: object = json.loads(text)
    except json.JSONDecodeError as error:
        return _Line(number, fallback_id, None, f"line {number}: not JSON ({error.msg})")
    if not isinstance(data, dict):
        return _Line(number, fallback_id, None, f"line {number}: not a JSON object")
    fields = cast("dict[str, Any]", data)
    custom_id = fields.get("custom_id")
    if custom_id is None or custom_id == "":
        return _Line(number, fallback_id, None, f"line {number}: no custom_id")
    if not isinstance(custom_id, str):
        kind_name = type(custom_id).__name__
        return _Line(
            number, fallback_id, None, f"line {number}: custom_id must be a string, got {kind_name}"
        )
    url = fields.get("url")
    body = fields.get("body")
    endpoint = _ENDPOINTS.get(str(url))
    if endpoint is None:
        known = ", ".join(_ENDPOINTS)
        return _Line(number, custom_id, None, f"line {number}: url {url!r} is not one of {known}")
    if not kind:
        kind.append(endpoint)
    if endpoint != kind[0]:
        problem = f"line {number}: url {url!r} differs from the first line's endpoint"
        return _Line(number, custom_id, None, problem)
    if not isinstance(body, dict):
        return _Line(number, custom_id, None, f"line {number}: body is not a JSON object")
    request = {k: v for k, v in cast("dict[str, Any]", body).items() if k != "model"}
    needed = "messages" if endpoint == "completion" else "input"
    if needed not in request:
        return _Line(number, custom_id, None, f"line {number}: body has no {needed!r}")
    if request.get("stream"):
        return _Line(number, custom_id, None, f"line {number}: a batch line cannot stream")
    return _Line(number, custom_id, request, None)


def _done_ids(path: Path) -> set[str]:
    """The custom_ids an earlier run already wrote to ``path``."""
    done: set[str] = set()
    if not path.exists():
        return done
    with path.open(encoding="utf-8") as previous:
        for text in previous:
            try:
                record: object = json.loads(text)
            except json.JSONDecodeError:
                continue  # a line cut short by an interruption: that item runs again
            if isinstance(record, dict):
                custom_id = cast("dict[str, Any]", record).get("custom_id")
                if isinstance(custom_id, str):
                    done.add(custom_id)
    return done


def _check_output(source: Path, target: Path, *, resume: bool) -> None:
    """Refuse an OUTPUT that cannot take the answers, before anything is sent."""
    if target.exists() and source.exists() and target.samefile(source):
        msg = f"OUTPUT {target} is the INPUT file: choose another file for the answers"
        raise _UsageError(msg)
    if target.is_dir():
        msg = f"OUTPUT {target} is a directory: give a file path"
        raise _UsageError(msg)
    if not resume and target.exists() and target.stat().st_size > 0:
        msg = f"{target} is not empty: pass --resume to continue it, or choose another"
        raise _UsageError(msg)
    try:
        with target.open("ab") as sink:
            # An interrupted run may have left half a line: end it, so the next record
            # starts on its own line (the torn one is not JSON, so its item runs again).
            if sink.tell() > 0:
                with target.open("rb") as previous:
                    previous.seek(-1, os.SEEK_END)
                    if previous.read(1) != b"\n":
                        sink.write(b"\n")
    except OSError as error:
        msg = f"cannot write {target}: {error.strerror}"
        raise _UsageError(msg) from None


def _first_kind(path: Path) -> str:
    kind: list[str] = []
    try:
        for line in _read_lines(path, kind, set()):
            if kind or line.request is not None:
                break
    except OSError as error:
        msg = f"cannot read {path}: {error.strerror}"
        raise _UsageError(msg) from None
    return kind[0] if kind else "completion"


def _stack(
    args: argparse.Namespace, kind: str
) -> tuple[BoundACompletion | BoundAEmbedding, AFixedModelCompletion]:
    """The bound callable, and it under retries, limits and cache, as the arguments ask.

    An embedding stack is typed as a completion one here: the lines are untyped JSON, and
    the runner treats both kinds alike.
    """
    from fixedmodel import (
        RateLimit,
        RateLimiter,
        bind_acompletion,
        bind_aembedding,
        with_cache,
        with_rate_limit,
        with_retries,
    )

    for name in ("concurrency", "rpm", "tpm"):
        value = getattr(args, name)
        if value is not None and value < 1:
            msg = f"--{name} must be at least 1, got {value}"
            raise _UsageError(msg)
    if args.max_cost is not None and not args.max_cost > 0:
        msg = f"--max-cost must be a positive number of USD, got {args.max_cost}"
        raise _UsageError(msg)
    defaults = _defaults(args)
    bound = (
        bind_acompletion(args.model, **defaults)
        if kind == "completion"
        else bind_aembedding(args.model, **defaults)
    )
    chat = cast("AFixedModelCompletion", bound)
    if args.rpm is not None or args.tpm is not None:
        store: Any = None
        if args.redis_url is not None:
            from fixedmodel import RedisLimiterStore

            store = RedisLimiterStore(args.redis_url)
        limit = RateLimit(requests=args.rpm, tokens=args.tpm, period=60.0)
        chat = with_rate_limit(chat, RateLimiter(limit, store=store, key=args.model))
    chat = with_retries(chat)
    if args.cache is not None:
        from fixedmodel import DiskCacheStore

        try:
            store = DiskCacheStore(args.cache)
        except Exception as error:  # diskcache's own errors (a file in the way, no access)
            msg = f"cannot use {args.cache} as a cache directory: {error}"
            raise _UsageError(msg) from None
        chat = with_cache(chat, store)
    elif args.redis_url is not None:
        from fixedmodel import RedisCacheStore

        chat = with_cache(chat, RedisCacheStore(args.redis_url))
    return bound, chat


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) and 400 <= status <= 599 else None


def _output(custom_id: str, response: object, error: BaseException | None) -> dict[str, Any]:
    record_id = f"batch_req_{uuid.uuid4().hex}"
    if error is None:
        dump: Any = getattr(response, "model_dump", None)
        body = dump() if callable(dump) else response
        request_id = str(getattr(response, "id", "") or record_id)
        return {
            "id": record_id,
            "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": request_id, "body": body},
            "error": None,
        }
    status = _status(error)
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if status is None:
        return {
            "id": record_id,
            "custom_id": custom_id,
            "response": None,
            "error": {"code": type(error).__name__, "message": message},
        }
    code = getattr(error, "code", None)
    body = {"error": {"message": message, "type": type(error).__name__, "code": code}}
    return {
        "id": record_id,
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": record_id, "body": body},
        "error": None,
    }


class _Stopped(Exception):
    """The cost cap was reached: no further line is started."""


async def _batch(args: argparse.Namespace) -> int:
    from fixedmodel._batch import aiter_batch
    from fixedmodel._progress import response_cost

    kind = _first_kind(args.input)
    _check_model(args.model, args.api_base, args.mock_response is not None)
    _check_output(args.input, args.output, resume=args.resume)
    skip: set[str] = _done_ids(args.output) if args.resume else set()
    bound, chat = _stack(args, kind)
    failed = 0
    spent = 0.0
    lines = _read_lines(args.input, [kind], skip)
    unsendable: list[_Line] = []
    custom_ids: dict[int, str] = {}  # by the runner's index of the request
    sent = 0

    async def requests() -> AsyncIterator[CompletionRequest]:
        # Lines that cannot be sent are kept aside (written as errors) and skipped.
        for line in lines:
            if line.request is None:
                unsendable.append(line)
                continue
            if args.max_cost is not None and spent >= args.max_cost:
                raise _Stopped
            nonlocal sent
            custom_ids[sent] = line.custom_id
            sent += 1
            yield cast("CompletionRequest", line.request)

    output: TextIO
    with args.output.open("a", encoding="utf-8") as output:
        try:
            async with bound:
                results = aiter_batch(
                    chat,
                    requests(),
                    concurrency=args.concurrency,
                    ordered=False,
                    progress=False if args.no_progress else None,
                )
                async for result in results:
                    failed += _flush_errors(unsendable, output)
                    custom_id = custom_ids.pop(result.index)
                    record = _output(custom_id, result.response, result.error)
                    failed += result.error is not None
                    spent += response_cost(result.response)
                    output.write(json.dumps(record, default=str) + "\n")
                    output.flush()
        except _Stopped:
            print(f"fixedmodel: stopped at the cost cap (spent ${spent:.6g})", file=sys.stderr)
            _flush_errors(unsendable, output)
            return EXIT_SOME_FAILED
        failed += _flush_errors(unsendable, output)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _flush_errors(lines: list[_Line], output: TextIO) -> int:
    for line in lines:
        record = {
            "id": f"batch_req_{uuid.uuid4().hex}",
            "custom_id": line.custom_id,
            "response": None,
            "error": {"code": "invalid_line", "message": line.problem},
        }
        output.write(json.dumps(record) + "\n")
        print(f"fixedmodel: {line.problem}", file=sys.stderr)
    output.flush()
    count = len(lines)
    lines.clear()
    return count
