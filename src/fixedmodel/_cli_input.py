"""Reading and checking a ``fixedmodel batch`` input file before anything is sent.

The whole file is checked first, streaming through it (only the ``custom_id`` values are
held, to find repeats), and any problem refuses the job before its first request, as
OpenAI's Batch API refuses an input file at validation. Problems carry the line number and
the error code OpenAI's Batch API uses for the same problem (``invalid_json_line``,
``duplicate_custom_id``, ``url_mismatch``, ``model_mismatch``, ``too_many_tasks``,
``empty_file``), or ``missing_required_parameter`` / ``invalid_request`` for a line that
lacks a field or has one of the wrong type. Limits are OpenAI's: 50,000 requests and
200 MB per file (https://platform.openai.com/docs/guides/batch), overridable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

ENDPOINTS = {"/v1/chat/completions": "completion", "/v1/embeddings": "embedding"}
MAX_REQUESTS = 50_000
MAX_INPUT_MB = 200.0
BYTES_PER_MB = 1_000_000
SHOWN_PROBLEMS = 20

# Body keys litellm takes as settings of the call, not of the request: where it is sent,
# with which credential, or whether it is sent at all. OpenAI's Batch API refuses them as
# unknown parameters; passed on, a line could send the run's credential to a host it names
# or write an answer no model gave. MODEL and the options choose these for every line. So do
# litellm's own fallbacks (other models, each with the hosts and keys it names), its retries
# (more requests than --max-attempts) and its per-call prices (what --max-cost counts).
_CALL_SETTINGS = frozenset(
    {
        "base_url",
        "client",
        "client_id",
        "client_secret",
        "context_window_fallback_dict",
        "custom_llm_provider",
        "deployment_id",
        "extra_headers",
        "fallbacks",
        "input_cost_per_second",
        "input_cost_per_token",
        "max_retries",
        "model_list",
        "num_retries",
        "organization",
        "output_cost_per_second",
        "output_cost_per_token",
        "shared_session",
        "ssl_verify",
        "tenant_id",
        "timeout",
    }
)
_CALL_SETTING_PREFIXES = ("api_", "aws_", "azure_", "litellm_", "mock_", "vertex_")


# Of the names litellm lists as its own settings (all_litellm_params), the ones OpenAI's
# Batch API also takes as request parameters.
_REQUEST_PARAMETERS = frozenset({"metadata"})

_settings: frozenset[str] | None = None


def _litellm_settings() -> frozenset[str]:
    """The names litellm takes as settings of a call rather than request parameters.

    litellm's own list (``all_litellm_params``, some 400 names in recent releases, more
    with each): ``ssl_verify`` (TLS checks off for the call), ``use_litellm_proxy``,
    ``headers``, timeouts, tiered prices, logging hosts and keys, files to read
    credentials from. Read from the installed litellm, so names a release adds are
    refused too; empty if it has no such list.
    """
    global _settings
    if _settings is None:
        try:
            from litellm.types.utils import all_litellm_params

            _settings = frozenset(str(name) for name in all_litellm_params)
        except Exception:  # a litellm without the list: the names above still hold
            _settings = frozenset()
    return _settings


@dataclass(frozen=True)
class Problem:
    """Why the input cannot be run: OpenAI's error code, the line (None: the file)."""

    code: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.code}: {self.message}"


@dataclass
class Plan:
    """What the checked input holds: its endpoint's kind and its custom_ids, in order."""

    kind: str = "completion"
    custom_ids: list[str] = field(default_factory=list[str])


@dataclass(frozen=True)
class Line:
    """One good input line: its number, custom_id and the keywords of its request."""

    number: int
    custom_id: str
    request: dict[str, Any]


class _LineError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _model_matches(body_model: str, model: str) -> bool:
    """Whether a body's ``model`` names MODEL, with or without its provider prefix."""
    return body_model in (model, model.split("/", 1)[-1])


def _parse(text: str, model: str | None) -> tuple[str, str, dict[str, Any]]:
    """One line's custom_id, endpoint kind and request; raises _LineError."""
    try:
        data: object = json.loads(text)
    except json.JSONDecodeError as error:
        raise _LineError("invalid_json_line", f"not JSON ({error.msg})") from None
    except RecursionError:  # JSON nested deeper than Python's recursion limit
        raise _LineError("invalid_json_line", "JSON nested too deeply to read") from None
    if not isinstance(data, dict):
        raise _LineError("invalid_json_line", "not a JSON object")
    fields = cast("dict[str, Any]", data)
    for name in ("custom_id", "method", "url", "body"):
        if fields.get(name) in (None, ""):
            raise _LineError("missing_required_parameter", f"no {name!r}")
    custom_id, method, url, body = (fields[k] for k in ("custom_id", "method", "url", "body"))
    if not isinstance(custom_id, str):
        got = type(custom_id).__name__
        raise _LineError("invalid_request", f"custom_id must be a string, got {got}")
    if method != "POST":
        raise _LineError("invalid_request", f"method must be 'POST', got {method!r}")
    kind = ENDPOINTS.get(url) if isinstance(url, str) else None
    if kind is None:
        known = ", ".join(ENDPOINTS)
        raise _LineError("url_mismatch", f"url {url!r} is not one of {known}")
    if not isinstance(body, dict):
        raise _LineError("invalid_request", "body is not a JSON object")
    request = dict(cast("dict[str, Any]", body))
    body_model = request.pop("model", None)
    if model is not None and body_model is not None and not _model_matches(str(body_model), model):
        msg = (
            f"body model {body_model!r} is not MODEL {model!r} "
            "(--ignore-body-model runs it on MODEL anyway)"
        )
        raise _LineError("model_mismatch", msg)
    needed = "messages" if kind == "completion" else "input"
    if needed not in request:
        raise _LineError("missing_required_parameter", f"body has no {needed!r}")
    if request.get("stream"):
        raise _LineError("invalid_request", "a batch line cannot stream")
    settings = _litellm_settings()
    for name in request:
        if (
            name in _CALL_SETTINGS
            or name.startswith(_CALL_SETTING_PREFIXES)
            or (name in settings and name not in _REQUEST_PARAMETERS)
        ):
            msg = (
                f"body key {name!r} is a setting of the call, not a request parameter "
                "(MODEL and the options choose where lines go and with which credentials)"
            )
            raise _LineError("invalid_request", msg)
    return custom_id, kind, request


def _texts(path: Path) -> Iterator[tuple[int, str | None]]:
    """The file's non-blank lines as (number, text); text None for a line not UTF-8."""
    with path.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                yield number, None
                continue
            if text.strip():
                yield number, text


def check(
    path: Path, model: str | None, *, max_requests: int, max_bytes: float
) -> tuple[Plan, list[Problem]]:
    """Read the whole input once; return its plan and every problem found (at most ~20).

    ``model`` is MODEL, or None when the bodies' own model is not checked. Raises OSError
    when the file cannot be read.
    """
    size = path.stat().st_size
    if size > max_bytes:
        mb = size / BYTES_PER_MB
        limit = max_bytes / BYTES_PER_MB
        msg = f"the file is {mb:.1f} MB, more than {limit:g} MB (--max-input-mb raises it)"
        return Plan(), [Problem("file_too_large", msg)]
    plan = Plan()
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    first_url_line = 0
    mismatched = False  # one model_mismatch is reported, not one per line
    for number, text in _texts(path):
        if len(seen) >= max_requests:
            msg = f"more than {max_requests} requests (--max-requests raises the limit)"
            problems.append(Problem("too_many_tasks", msg, number))
            break
        try:
            if text is None:
                raise _LineError("invalid_json_line", "not UTF-8 text")
            custom_id, kind, _ = _parse(text, model)
        except _LineError as error:
            if error.code == "model_mismatch":
                if mismatched:
                    continue
                mismatched = True
            problems.append(Problem(error.code, str(error), number))
            if len(problems) > SHOWN_PROBLEMS:
                break
            continue
        if not first_url_line:
            plan.kind, first_url_line = kind, number
        elif kind != plan.kind:
            msg = f"its endpoint differs from line {first_url_line}'s"
            problems.append(Problem("url_mismatch", msg, number))
        first = seen.setdefault(custom_id, number)
        if first != number:
            msg = f"custom_id {custom_id!r} is also on line {first}"
            problems.append(Problem("duplicate_custom_id", msg, number))
        else:
            plan.custom_ids.append(custom_id)
        if len(problems) > SHOWN_PROBLEMS:
            break
    if not problems and not plan.custom_ids:
        problems.append(Problem("empty_file", "the file has no request lines"))
    return plan, problems


def lines(path: Path, model: str | None) -> Iterator[Line]:
    """The input's requests, lazily, for a file that :func:`check` passed."""
    for number, text in _texts(path):
        if text is None:
            continue
        try:
            custom_id, _, request = _parse(text, model)
        except _LineError:
            continue  # the file changed since it was checked; the summary counts it unrun
        yield Line(number, custom_id, request)
