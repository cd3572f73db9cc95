"""The output file of ``fixedmodel batch``: its records, its state, its lock.

Records are OpenAI Batch output lines (https://platform.openai.com/docs/guides/batch)::

    {"id": "batch_req_...", "custom_id": "r1",
     "response": {"status_code": 200, "request_id": "...", "body": {...}}, "error": null}

A provider's HTTP error keeps its status and the provider's own error object (``message``,
``type``, ``param``, ``code``) as the ``body``, as OpenAI's batch output does; litellm keeps
that object in the exception's ``body`` (OpenAI-compatible providers) or its ``response``
(others). A failure with no HTTP answer (a timeout, a dropped connection, a refusal by a
local layer) is ``"response": null`` with ``"error": {"code", "message"}``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

from fixedmodel._cli_common import redact, secrets
from fixedmodel.middleware._errors import answer_headers

_LITELLM_PREFIX = re.compile(r"^(litellm\.\w+:\s*)?(\w+Error:\s*)?(\w+Exception\s*-\s*)?")


def _record_id() -> str:
    return f"batch_req_{uuid.uuid4().hex}"


def answer_record(custom_id: str, response: object) -> dict[str, Any]:
    """The output line of an answered request."""
    dump: Any = getattr(response, "model_dump", None)
    body = dump() if callable(dump) else response
    record_id = _record_id()
    request_id = str(getattr(response, "id", "") or record_id)
    return {
        "id": record_id,
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": None,
    }


def error_record(custom_id: str, error: BaseException) -> dict[str, Any]:
    """The output line of a failed request: the provider's status and error, if it answered."""
    record_id = _record_id()
    status = _http_status(error)
    if status is None:
        return {
            "id": record_id,
            "custom_id": custom_id,
            "response": None,
            "error": {"code": _error_code(error), "message": _message(error)},
        }
    headers = answer_headers(error)
    request_id = _header(headers, "x-request-id") or _header(headers, "request-id")
    return {
        "id": record_id,
        "custom_id": custom_id,
        "response": {
            "status_code": status,
            "request_id": request_id or record_id,
            "body": {"error": _provider_error(error, status)},
        },
        "error": None,
    }


def _http_status(error: BaseException) -> int | None:
    """The HTTP status the provider answered with; None when no answer came back.

    Only the openai SDK's status errors (which litellm's own HTTP error classes extend)
    can carry an answer, and litellm also raises them for failures that had none: a
    dropped connection becomes an ``InternalServerError`` (500) whose stand-in response
    has no headers. A real answer always has some (see ``answer_headers``).
    """
    import openai

    if not isinstance(error, openai.APIStatusError):
        return None
    if not answer_headers(error):
        return None
    status: int = error.status_code
    return status if 400 <= status <= 599 else None


def _error_code(error: BaseException) -> str:
    import openai

    if isinstance(error, openai.APITimeoutError):
        return "request_timeout"
    if isinstance(error, openai.APIConnectionError | openai.InternalServerError):
        return "connection_error"  # an InternalServerError here had no answer (above)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def _message(error: BaseException) -> str:
    """The error's text without litellm's ``litellm.X: ProviderException -`` prefix."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return redact(_LITELLM_PREFIX.sub("", first) or first)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    try:
        value: object = headers.get(name) if headers is not None else None
    except Exception:  # a mock response without real headers
        return None
    return value if isinstance(value, str) and value else None


def _error_object(data: object) -> dict[str, Any] | None:
    """The provider's error object out of a parsed body (``{"error": {...}}`` or the object)."""
    if not isinstance(data, dict):
        return None
    fields = cast("dict[str, Any]", data)
    inner = fields.get("error")
    if isinstance(inner, dict):
        return dict(cast("dict[str, Any]", inner))
    if isinstance(inner, str):
        return {"message": inner}
    if "message" in fields:
        return dict(fields)
    return None


def _provider_error(error: BaseException, status: int) -> dict[str, Any]:
    found = _error_object(getattr(error, "body", None))
    if found is None:
        response: Any = getattr(error, "response", None)
        try:
            found = _error_object(response.json())
        except Exception:  # no response, or one whose body is not JSON
            found = None
    given = cast("dict[str, Any]", _redacted(found or {}))
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    return {
        **given,
        "message": redact(str(given.get("message") or _message(error))),
        "type": given.get("type") or getattr(error, "type", None) or default_type,
        "param": given.get("param", getattr(error, "param", None)),
        "code": given.get("code", getattr(error, "code", None)),
    }


# Levels of a provider's error object redacted; what lies deeper is replaced whole.
_MAX_DEPTH = 32


def _redacted(value: object, depth: int = 0, hidden: Sequence[str] | None = None) -> object:
    """``value`` (a parsed error body) with every string in it redacted.

    Providers and proxies echo more than the message: a ``metadata.raw`` holding the
    upstream answer, a header, a URL with its key. Containers nested deeper than 32
    levels are replaced by a placeholder instead of recursed into. The credentials to hide
    are read from the environment once per body, not once per string: a proxy echoing a
    long conversation took seconds per error line, the event loop (and every call in
    flight) waiting.
    """
    values = secrets() if hidden is None else hidden
    if isinstance(value, str):
        return redact(value, values)
    if isinstance(value, dict | list):
        if depth >= _MAX_DEPTH:
            return "<nested too deep>"
        if isinstance(value, list):
            return [_redacted(item, depth + 1, values) for item in cast("list[object]", value)]
        pairs = cast("dict[object, object]", value).items()
        return {redact(str(key), values): _redacted(item, depth + 1, values) for key, item in pairs}
    return value


def is_answer(record: dict[str, Any]) -> bool:
    """Whether an output record is a successful answer."""
    response: object = record.get("response")
    if record.get("error") is not None or not isinstance(response, dict):
        return False
    return cast("dict[str, Any]", response).get("status_code") == 200


@dataclass
class OutputState:
    """What an OUTPUT holds, by each custom_id's last record."""

    answered: set[str] = field(default_factory=set[str])
    failed: set[str] = field(default_factory=set[str])
    untidy: bool = False  # a custom_id written twice, or a line cut short


def _records(path: Path) -> Iterable[tuple[int, dict[str, Any] | None]]:
    with path.open(encoding="utf-8", errors="replace") as previous:
        for number, text in enumerate(previous):
            if not text.strip():
                continue
            try:
                record: object = json.loads(text)
            except json.JSONDecodeError:
                yield number, None  # a line cut short by a killed run: its item runs again
                continue
            custom_id = (
                cast("dict[str, Any]", record).get("custom_id")
                if isinstance(record, dict)
                else None
            )
            yield number, cast("dict[str, Any]", record) if isinstance(custom_id, str) else None


def read_state(path: Path) -> OutputState:
    """The state of ``path`` (empty when it does not exist)."""
    state = OutputState()
    if not path.exists():
        return state
    for _, record in _records(path):
        if record is None:
            state.untidy = True
            continue
        custom_id: str = record["custom_id"]
        if custom_id in state.answered or custom_id in state.failed:
            state.untidy = True
        state.answered.discard(custom_id)
        state.failed.discard(custom_id)
        (state.answered if is_answer(record) else state.failed).add(custom_id)
    return state


def tidy(path: Path) -> None:
    """Rewrite ``path`` with one record per custom_id (its last) and no torn lines.

    Streams the file twice (only line numbers are held) and replaces it atomically, so a
    kill during the rewrite leaves the old file whole. A symbolic link is followed: the
    file it names is rewritten and the link stays.
    """
    path = Path(os.path.realpath(path))
    last: dict[str, int] = {}
    for number, record in _records(path):
        if record is not None:
            last[record["custom_id"]] = number
    keep = set(last.values())
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with (
            path.open(encoding="utf-8", errors="replace") as source,
            temporary.open("w", encoding="utf-8") as target,
        ):
            for number, text in enumerate(source):
                if number in keep:
                    target.write(text if text.endswith("\n") else text + "\n")
            target.flush()
            os.fsync(target.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)  # a full disk: leave no half copy behind
        raise


class RecordWriter:
    """Appends records to OUTPUT, each flushed as soon as it is written.

    After a write fails (a full disk, a file size limit) every later write is refused with
    the same error: the line the failure may have cut short stays the last one, where
    ``--resume`` drops it, instead of being glued to the next record.
    """

    def __init__(self, path: Path) -> None:
        self._sink: TextIO = path.open("a", encoding="utf-8")
        self.failed: OSError | None = None

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record``. Raises OSError when OUTPUT cannot take it (now or before)."""
        if self.failed is not None:
            raise self.failed
        try:
            self._sink.write(json.dumps(record, default=str) + "\n")
            self._sink.flush()
        except OSError as error:
            self.failed = error
            raise

    def close(self) -> None:
        try:
            self._sink.close()
        except OSError:
            if self.failed is None:
                raise
            # The buffer still holds what could not be written: drop it with the file.


class OutputLock:
    """An exclusive lock on OUTPUT for one run: ``OUTPUT.lock`` next to it, held with flock.

    The operating system releases it when the process ends, however it ends (a killed run
    leaves no stale lock). The lock file itself stays: removing it would let two runs lock
    two different files of one name. It sits beside the file OUTPUT names once symbolic
    links are followed, so two runs given two paths to one file (a link and its target)
    take the same lock.
    """

    def __init__(self, output: Path) -> None:
        real = Path(os.path.realpath(output))
        self.path = real.with_name(real.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another run holds it. Raises OSError if it cannot."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
