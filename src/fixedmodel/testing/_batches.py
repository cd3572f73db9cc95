"""The loopback server's Files and Batches endpoints: a provider batch job, offline.

It follows OpenAI's Batch API (https://platform.openai.com/docs/api-reference/batch and
.../files): a JSONL file uploaded with ``purpose="batch"``, a batch made from it, polled
until it ends, and an output file and an error file read back. Each line is answered the
way the server answers the same request live, so a batch line and a live call give the same
body. Tests steer the job: how many polls it stays in progress, lines that fail, expiry and
cancellation.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from aiohttp import web

__all__ = ["BatchService", "LineAnswer"]

LineAnswer = tuple[int, dict[str, Any]]
"""What the server answers one request: HTTP status and JSON body."""

# OpenAI's endpoints, and Azure OpenAI's (no version prefix: the api-version is a query).
_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/chat/completions", "/embeddings")
_ENDED = ("completed", "failed", "expired", "cancelled")
_EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def card(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class _Batch:
    card: dict[str, Any]
    lines: list[dict[str, Any]]
    polls: int = 0
    answered: int = 0
    cancel_asked: bool = False
    outcome: list[tuple[str, dict[str, Any]]] = field(default_factory=lambda: [])


def _now() -> int:
    return int(time.time())


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class BatchService:
    """OpenAI's ``/v1/files`` and ``/v1/batches`` over an answering function.

    Attributes:
        polls_in_progress: Retrievals that see a batch ``in_progress`` before it ends; its
            ``request_counts.completed`` grows evenly over them.
        expire_after: Lines answered before a batch ends ``expired`` (the rest go to the
            error file with code ``batch_expired``); None: batches complete.
        fail_batches: End every new batch ``failed`` with this message (input validation
            failed at the provider), or None.
        failed_lines_in: Where a line answered with a non-2xx status is written: the
            ``"error"`` file (OpenAI's behaviour) or the ``"output"`` file.
    """

    def __init__(self, answer: Callable[[str, dict[str, Any]], LineAnswer]) -> None:
        """Serve batches whose lines ``answer(url, body)`` answers."""
        self._answer = answer
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self._calls: list[tuple[str, str, dict[str, str]]] = []
        self.polls_in_progress = 1
        self.expire_after: int | None = None
        self.fail_batches: str | None = None
        self.failed_lines_in: Literal["error", "output"] = "error"

    def add_routes(self, app: web.Application) -> None:
        """Add the Files and Batches routes to ``app``, under ``/v1`` and Azure's ``/openai``."""
        for prefix in ("/v1", "/openai"):
            app.router.add_post(f"{prefix}/files", self._upload)
            app.router.add_get(f"{prefix}/files", self._list_files)
            app.router.add_get(f"{prefix}/files/{{file_id}}", self._file)
            app.router.add_delete(f"{prefix}/files/{{file_id}}", self._delete_file)
            app.router.add_get(f"{prefix}/files/{{file_id}}/content", self._content)
            app.router.add_post(f"{prefix}/batches", self._create)
            app.router.add_get(f"{prefix}/batches", self._list_batches)
            app.router.add_get(f"{prefix}/batches/{{batch_id}}", self._retrieve_or_cancel)
            app.router.add_post(f"{prefix}/batches/{{batch_id}}/cancel", self._retrieve_or_cancel)

    def reset(self) -> None:
        """Forget every file and batch and restore the default settings."""
        with self._lock:
            self._files.clear()
            self._batches.clear()
            self._calls.clear()
        self.polls_in_progress = 1
        self.expire_after = None
        self.fail_batches = None
        self.failed_lines_in = "error"

    @property
    def uploads(self) -> list[dict[str, Any]]:
        """The uploaded files' cards (id, filename, purpose, bytes), oldest first."""
        with self._lock:
            return [f.card() for f in self._files.values() if f.purpose == "batch"]

    @property
    def batches(self) -> list[dict[str, Any]]:
        """The batches' current cards, oldest first."""
        with self._lock:
            return [dict(b.card) for b in self._batches.values()]

    @property
    def calls(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every Files and Batches request: method, path with query, lower-case headers."""
        with self._lock:
            return list(self._calls)

    def _note(self, request: web.Request) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self._calls.append((request.method, request.path_qs, headers))

    def file_lines(self, file_id: str) -> list[dict[str, Any]]:
        """The JSON lines of a stored file, e.g. to check what a batch was asked."""
        with self._lock:
            data = self._files[file_id].data
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def cancel_all(self) -> None:
        """Ask every running batch to cancel, as a user in the provider's console would."""
        with self._lock:
            for batch in self._batches.values():
                if batch.card["status"] not in _ENDED:
                    batch.cancel_asked = True

    # -- files ---------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        self._note(request)
        form = await request.post()
        upload = form.get("file")
        purpose = str(form.get("purpose", ""))
        if not isinstance(upload, web.FileField):
            return _error(400, "Missing file.", param="file")
        stored = _File(_new_id("file"), upload.filename, purpose, upload.file.read(), _now())
        with self._lock:
            self._files[stored.id] = stored
        return web.json_response(stored.card())

    async def _list_files(self, request: web.Request) -> web.Response:
        self._note(request)
        purpose = request.query.get("purpose")
        with self._lock:
            cards = [f.card() for f in self._files.values() if purpose in (None, f.purpose)]
        return web.json_response({"object": "list", "data": cards, "has_more": False})

    def _find_file(self, request: web.Request) -> _File | None:
        with self._lock:
            return self._files.get(request.match_info["file_id"])

    async def _file(self, request: web.Request) -> web.Response:
        self._note(request)
        found = self._find_file(request)
        if found is None:
            return _error(404, "No such file.", param="file_id")
        return web.json_response(found.card())

    async def _delete_file(self, request: web.Request) -> web.Response:
        self._note(request)
        file_id = request.match_info["file_id"]
        with self._lock:
            found = self._files.pop(file_id, None)
        if found is None:
            return _error(404, "No such file.", param="file_id")
        return web.json_response({"id": file_id, "object": "file", "deleted": True})

    async def _content(self, request: web.Request) -> web.Response:
        self._note(request)
        found = self._find_file(request)
        if found is None:
            return _error(404, "No such file.", param="file_id")
        return web.Response(body=found.data, content_type="application/octet-stream")

    # -- batches -------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        self._note(request)
        body = cast("dict[str, Any]", await request.json())
        endpoint = str(body.get("endpoint", ""))
        if endpoint not in _ENDPOINTS:
            return _error(400, f"Unsupported endpoint {endpoint!r}.", param="endpoint")
        with self._lock:
            source = self._files.get(str(body.get("input_file_id", "")))
        if source is None:
            return _error(404, "No such input file.", param="input_file_id")
        lines = [json.loads(line) for line in source.data.splitlines() if line.strip()]
        card: dict[str, Any] = {
            "id": _new_id("batch"),
            "object": "batch",
            "endpoint": endpoint,
            "errors": None,
            "input_file_id": source.id,
            "completion_window": str(body.get("completion_window", "24h")),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": _now(),
            "in_progress_at": None,
            "expires_at": _now() + 24 * 3600,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        batch = _Batch(card, lines)
        with self._lock:
            self._batches[card["id"]] = batch
            if self.fail_batches is not None:
                self._end(batch, "failed", failure=self.fail_batches)
        return web.json_response(card)

    async def _list_batches(self, request: web.Request) -> web.Response:
        self._note(request)
        with self._lock:
            cards = [dict(b.card) for b in reversed(self._batches.values())]
        return web.json_response({"object": "list", "data": cards, "has_more": False})

    async def _retrieve_or_cancel(self, request: web.Request) -> web.Response:
        """GET a batch (a poll: it advances) or POST its ``/cancel``; answer its card."""
        self._note(request)
        with self._lock:
            batch = self._batches.get(request.match_info["batch_id"])
            if batch is None:
                return _error(404, "No such batch.", param="batch_id")
            if request.method in ("GET", "HEAD"):
                self._advance(batch)
            elif batch.card["status"] not in _ENDED:
                batch.cancel_asked = True
                batch.card["status"] = "cancelling"
                batch.card["cancelling_at"] = _now()
            return web.json_response(dict(batch.card))

    def _advance(self, batch: _Batch) -> None:
        """One poll: answer the next share of lines; end the batch once its time is up."""
        card = batch.card
        if card["status"] in _ENDED:
            return
        if batch.cancel_asked:
            self._end(batch, "cancelled")
            return
        batch.polls += 1
        total = len(batch.lines)
        polls = max(self.polls_in_progress, 0)
        target = total if batch.polls > polls else total * batch.polls // (polls + 1)
        if self.expire_after is not None:
            target = min(target, self.expire_after)
        while batch.answered < target:
            self._answer_line(batch, batch.lines[batch.answered])
            batch.answered += 1
        if card["in_progress_at"] is None:
            card["in_progress_at"] = _now()
        card["status"] = "in_progress"
        if batch.polls > polls:
            self._end(batch, "completed" if batch.answered == total else "expired")

    def _answer_line(self, batch: _Batch, line: dict[str, Any]) -> None:
        body = cast("dict[str, Any]", line.get("body") or {})
        status, answer = self._answer(str(line.get("url", batch.card["endpoint"])), body)
        response = {"status_code": status, "request_id": _new_id("req"), "body": answer}
        record = {
            "id": _new_id("batch_req"),
            "custom_id": line.get("custom_id"),
            "response": response,
            "error": None,
        }
        ok = 200 <= status < 300
        where = "output" if ok or self.failed_lines_in == "output" else "error"
        batch.outcome.append((where, record))
        counts = batch.card["request_counts"]
        counts["completed" if ok else "failed"] += 1

    def _end(self, batch: _Batch, status: str, failure: str | None = None) -> None:
        card = batch.card
        if status == "expired":
            for line in batch.lines[batch.answered :]:
                error = {"code": "batch_expired", "message": _EXPIRED_MESSAGE}
                record = {"id": _new_id("batch_req"), "custom_id": line.get("custom_id")}
                batch.outcome.append(("error", {**record, "response": None, "error": error}))
                card["request_counts"]["failed"] += 1
        if failure is not None:
            card["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": failure, "line": None}],
            }
        for where in ("output", "error"):
            rows = [json.dumps(r) for w, r in batch.outcome if w == where]
            if rows:
                stored = _File(
                    _new_id("file"),
                    f"batch_{card['id']}_{where}.jsonl",
                    f"batch_{where}",
                    ("\n".join(rows) + "\n").encode(),
                    _now(),
                )
                self._files[stored.id] = stored
                card[f"{where}_file_id"] = stored.id
        card["status"] = status
        card[f"{status}_at"] = _now()


def _error(status: int, message: str, *, param: str | None = None) -> web.Response:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return web.json_response({"error": error}, status=status)
