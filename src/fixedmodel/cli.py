"""The ``fixedmodel`` command line: try a model (``chat``) or run a JSONL batch (``batch``).

``fixedmodel batch MODEL INPUT OUTPUT`` reads the OpenAI Batch API's input lines::

    {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

checks the whole file before sending anything, and appends its output lines to OUTPUT, one
per line of INPUT, each written the moment its answer or error arrives (see
:mod:`fixedmodel._cli_batch` and :mod:`fixedmodel._cli_output` for the details, and
``docs/batch.md``). Format: https://platform.openai.com/docs/guides/batch

Exit codes: 0 every line of the job answered; 1 some lines failed or were not run (their
errors are in OUTPUT; a ``request_counts`` summary closes stderr), or ``chat`` got an error
from the provider; 2 nothing was sent (a bad option, a problem in INPUT, an unknown model,
missing credentials, OUTPUT in use by another run); 130 interrupted (what finished is in
OUTPUT; ``--resume`` continues).

Credentials come from the environment only (``OPENAI_API_KEY`` and litellm's other
variables), never from the command line, and are never printed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from fixedmodel._cli_common import (
    EXIT_INTERRUPTED,
    EXIT_NOTHING_SENT,
    EXIT_OK,
    EXIT_SOME_FAILED,
    UsageError,
    bound_defaults,
    is_credential,
    redact,
    redact_url,
)
from fixedmodel._cli_input import MAX_INPUT_MB, MAX_REQUESTS

__all__ = ["EXIT_INTERRUPTED", "EXIT_NOTHING_SENT", "EXIT_OK", "EXIT_SOME_FAILED", "main"]

_SHOWN_VALUE = 40  # characters of a bad value echoed back at most


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr that never echoes a secret."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            given = message.partition(":")[2].split()
            options = [word.split("=", 1)[0] for word in given if word.startswith("-")]
            hidden = len(given) - len(options)
            named = f"unknown option {', '.join(options)}" if options else "unexpected argument"
            message = named + (f" (and {hidden} more value(s), not shown)" if hidden else "")
            if any("key" in option or "token" in option for option in options):
                message += "; credentials come from the environment, e.g. OPENAI_API_KEY"
        raise UsageError(redact(message))


def _shown(value: str) -> str:
    text = redact(value)
    return repr(text if len(text) <= _SHOWN_VALUE else text[:_SHOWN_VALUE] + "...")


def _whole(low: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if number < low:
            msg = f"must be a whole number >= {low}, got {_shown(value)}"
            raise argparse.ArgumentTypeError(msg)
        return number

    return parse


def _number(low: float, *, above: bool) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < low or (above and number == low):
            bound = f"> {low:g}" if above else f">= {low:g}"
            msg = f"must be a number {bound}, got {_shown(value)}"
            raise argparse.ArgumentTypeError(msg)
        return number

    return parse


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        try:
            parts = urlsplit(value)
            _ = parts.port  # a port that is not a number raises here
            ok = parts.scheme in schemes and (bool(parts.hostname) or parts.scheme == "unix")
        except ValueError:
            ok = False
        if not ok:
            wanted = " or ".join(f"{scheme}://" for scheme in schemes)
            msg = f"must be a {wanted} URL with a host, got {redact_url(value)!r}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fixedmodel",
        description="Try a litellm model, or run an OpenAI Batch JSONL file through one.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    chat = commands.add_parser(
        "chat",
        allow_abbrev=False,
        help="send one prompt and print the answer",
        description="Send one prompt and print the answer: one request, never retried.",
    )
    chat.add_argument("model", metavar="MODEL", help="litellm model name, e.g. openai/gpt-4o-mini")
    chat.add_argument("prompt", metavar="PROMPT", help="the user message")
    chat.add_argument("--system", metavar="TEXT", help="a system message sent before the prompt")
    chat.add_argument(
        "--temperature", type=_number(0.0, above=False), metavar="T", help="sampling temperature"
    )
    chat.add_argument(
        "--max-tokens", type=_whole(1), metavar="N", help="tokens in the answer at most"
    )
    chat.add_argument("--stream", action="store_true", help="print the answer as it streams")
    chat.add_argument("--mock-response", metavar="TEXT", help="answer with TEXT, send nothing")
    chat.add_argument(
        "--api-base", type=_url(("http", "https")), metavar="URL", help="the provider's base URL"
    )
    chat.add_argument("--json", action="store_true", help="print the whole response as JSON")

    run = commands.add_parser(
        "batch",
        allow_abbrev=False,
        help="run an OpenAI Batch JSONL file through MODEL",
        description=(
            "Run an OpenAI Batch JSONL file through MODEL. The whole file is checked before "
            "anything is sent. A request that fails with a rate limit (429), a server error "
            "(5xx), a timeout or a dropped connection is tried again, up to --max-attempts "
            "requests in all, with exponential backoff (1 s, 2 s, 4 s, ... with jitter, "
            "Retry-After honoured)."
        ),
        epilog=(
            "Exit codes: 0 every line of the job answered; 1 some failed or have not run "
            "(a request_counts summary closes stderr); 2 nothing sent (a bad option or "
            "path, a problem in INPUT, OUTPUT in use by another run); 130 interrupted."
        ),
    )
    run.add_argument("model", metavar="MODEL", help="litellm model name, e.g. openai/gpt-4o-mini")
    run.add_argument("input", type=Path, metavar="INPUT", help="OpenAI Batch input JSONL")
    run.add_argument(
        "output", type=Path, metavar="OUTPUT", help="OpenAI Batch output JSONL (appended)"
    )
    run.add_argument(
        "--concurrency",
        type=_whole(1),
        default=16,
        metavar="N",
        help="requests in flight (default 16)",
    )
    run.add_argument(
        "--max-attempts",
        type=_whole(1),
        default=4,
        metavar="N",
        help="requests per line at most, retries included (default 4; 1 = no retries)",
    )
    run.add_argument("--rpm", type=_whole(1), metavar="N", help="requests per minute at most")
    run.add_argument("--tpm", type=_whole(1), metavar="N", help="tokens per minute at most")
    store = run.add_mutually_exclusive_group()
    store.add_argument("--cache", type=Path, metavar="DIR", help="a disk cache (resumable)")
    store.add_argument(
        "--redis-url",
        type=_url(("redis", "rediss", "unix")),
        metavar="URL",
        help="a Redis for the cache and the limits, shared",
    )
    run.add_argument(
        "--max-cost",
        type=_number(0.0, above=True),
        metavar="USD",
        help="start no line once the answers cost this much (calls in flight finish)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue OUTPUT: send the lines it has no answer for (never run, or failed)",
    )
    run.add_argument(
        "--ignore-body-model",
        action="store_true",
        help="run every line on MODEL whatever model its body names",
    )
    run.add_argument(
        "--max-requests",
        type=_whole(1),
        default=MAX_REQUESTS,
        metavar="N",
        help=f"lines in INPUT at most (default {MAX_REQUESTS:,}, as OpenAI's Batch API)",
    )
    run.add_argument(
        "--max-input-mb",
        type=_number(0.0, above=True),
        default=MAX_INPUT_MB,
        metavar="MB",
        help=f"size of INPUT at most, in MB of 10^6 bytes (default {MAX_INPUT_MB:g})",
    )
    run.add_argument(
        "--api-base", type=_url(("http", "https")), metavar="URL", help="the provider's base URL"
    )
    run.add_argument("--mock-response", metavar="TEXT", help="answer with TEXT, send nothing")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--provider-batch",
        action="store_true",
        help=(
            "send the lines as the provider's batch job (OpenAI, Azure: about half the price, "
            "answered within 24 h); --resume collects a job a killed run left"
        ),
    )
    run.add_argument(
        "--poll-interval",
        type=_number(0.0, above=False),
        default=30.0,
        metavar="SECONDS",
        help="with --provider-batch: seconds between looks at the job (default 30)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        args = _parser().parse_args(argv)
    except UsageError as problem:
        print(f"fixedmodel: {problem}", file=sys.stderr)
        return EXIT_NOTHING_SENT
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else EXIT_OK
    _quiet_litellm()
    try:
        if args.command == "chat":
            return _chat(args)
        from fixedmodel import _cli_batch

        return _cli_batch.run(args, _check_model)
    except UsageError as problem:
        print(f"fixedmodel: {redact(str(problem))}", file=sys.stderr)
        return EXIT_NOTHING_SENT
    except KeyboardInterrupt:
        print("fixedmodel: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a provider's answer to `chat`: one line, not a traceback
        first = str(error).splitlines()[0] if str(error) else ""
        print(f"fixedmodel: {type(error).__name__}: {redact(first)}", file=sys.stderr)
        return EXIT_SOME_FAILED


def _quiet_litellm() -> None:
    """Keep litellm's help banner ("Give Feedback / Get Help") off stdout.

    The library turns it off too when it imports litellm, unless
    ``FIXEDMODEL_LITELLM_BANNER=1`` asks to keep it; the command line is an application
    and owns its output (``chat --json`` must print JSON only), so it turns it off always.
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
        raise UsageError(msg) from None
    if mock or api_base is not None:
        return
    found: dict[str, Any] = litellm.validate_environment(model=model)
    # litellm also lists settings that are not credentials (OLLAMA_API_BASE,
    # VERTEXAI_PROJECT): only missing credentials stop the run before it starts.
    listed: list[object] = list(found.get("missing_keys") or [])
    missing = [name for name in listed if isinstance(name, str) and is_credential(name)]
    if missing:
        names = ", ".join(str(name) for name in missing)
        msg = f"missing credentials for {provider} model {model!r}: set {names}"
        raise UsageError(msg)


def _chat(args: argparse.Namespace) -> int:
    from fixedmodel import bind_completion, responses

    if args.stream and args.json:
        msg = "--json prints a whole response; it cannot be combined with --stream"
        raise UsageError(msg)
    _check_model(args.model, args.api_base, args.mock_response is not None)
    messages: list[dict[str, str]] = []
    if args.system is not None:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})
    # None is "not given": the request then carries no such field.
    temperature: float | None = args.temperature
    max_tokens: int | None = args.max_tokens
    with bind_completion(args.model, **bound_defaults(args.api_base, args.mock_response)) as chat:
        if args.stream:
            stream = chat(
                messages=messages, stream=True, temperature=temperature, max_tokens=max_tokens
            )
            for piece in responses.text_deltas(stream):
                print(piece, end="", flush=True)
            print()
            return EXIT_OK
        response = chat(messages=messages, temperature=temperature, max_tokens=max_tokens)
    if args.json:
        print(response.model_dump_json(indent=2))
    else:
        print(responses.text(response))
    return EXIT_OK
