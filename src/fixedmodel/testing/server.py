"""A loopback OpenAI-compatible HTTP server, for tests of code that calls a model.

The aiohttp app runs on a private event loop in a daemon thread, so one server serves sync
tests, async tests on another loop and benchmark scripts alike. It records every request and
injects faults queued with ``OpenAIServer.enqueue``, chosen by ``OpenAIServer.fault_rule`` or
drawn by ``OpenAIServer.random_faults``. Without a fault, ``OpenAIServer.responder`` (a
function of the recorded request) may give each request its own answer; otherwise every chat
completion says ``reply_text``.

Standalone (no pytest)::

    with OpenAIServer() as server:
        server.responder = lambda request: f"{len(request.messages)} message(s)"
        chat = bind_completion("openai/test", api_base=server.base_url, api_key="k")
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import inspect
import json
import random
import re
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast

from aiohttp import web
from typing_extensions import Self

from fixedmodel.testing._batches import BatchService
from fixedmodel.testing._script import Reply

FaultKind = Literal["status", "delay", "drop", "malformed", "truncated_stream"]
DEFAULT_REPLY = "Hello from the loopback server."
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


@dataclass(frozen=True)
class Fault:
    """A failure injected into one request; build it with the class methods.

    Attributes:
        kind: What goes wrong: an HTTP error status, a delay before a normal answer, a dropped
            connection, a 200 with invalid JSON, or a response cut off before its end.
        status_code: HTTP status of ``"status"`` faults.
        headers: Extra response headers of ``"status"`` faults, as ``(name, value)`` pairs.
        message: Message of the OpenAI-style error body.
        seconds: Sleep of ``"delay"`` faults before the normal answer.
        chunks_before_close: Chunks that ``"truncated_stream"`` faults send before closing.
    """

    kind: FaultKind
    status_code: int = 500
    headers: tuple[tuple[str, str], ...] = ()
    message: str = "Injected fault from the loopback server."
    seconds: float = 0.0
    chunks_before_close: int = 2

    @classmethod
    def status(
        cls,
        code: int,
        *,
        retry_after: float | None = None,
        retry_after_ms: int | None = None,
        headers: Mapping[str, str] | None = None,
        message: str | None = None,
    ) -> Fault:
        """Builds an HTTP error answer with an OpenAI-style JSON error body.

        Args:
            code: HTTP status code, e.g. 429 or 500.
            retry_after: Seconds for a ``Retry-After`` header, if any.
            retry_after_ms: Milliseconds for a ``retry-after-ms`` header, if any.
            headers: Further response headers.
            message: Error message; a generic one when omitted.
        """
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            extra["retry-after-ms"] = str(retry_after_ms)
        text = message or f"Injected HTTP {code} from the loopback server."
        return cls("status", status_code=code, headers=tuple(extra.items()), message=text)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Builds a fault that sleeps ``seconds`` and then answers normally."""
        return cls("delay", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Builds a fault that closes the connection without sending any response."""
        return cls("drop")

    @classmethod
    def malformed(cls) -> Fault:
        """Builds a fault that answers 200 with a body that is not valid JSON."""
        return cls("malformed")

    @classmethod
    def truncated_stream(cls, chunks_before_close: int = 2) -> Fault:
        """Builds a fault that sends part of the answer, then closes without ``[DONE]``."""
        return cls("truncated_stream", chunks_before_close=chunks_before_close)


@dataclass(frozen=True)
class RecordedRequest:
    """One request received by the server.

    Attributes:
        method: HTTP method.
        path: Request path, e.g. ``/v1/chat/completions``.
        headers: Request headers with lower-case names.
        body: Parsed JSON body; empty when absent or not a JSON object.
        arrived_at: ``time.monotonic()`` at arrival.
        fault: The fault applied to the request, if any.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    arrived_at: float
    fault: Fault | None = None

    @property
    def endpoint(self) -> Literal["chat", "embeddings", "models"]:
        """Which endpoint was called: ``"chat"``, ``"embeddings"`` or ``"models"``."""
        if self.path.endswith("/chat/completions"):
            return "chat"
        return "embeddings" if self.path.endswith("/embeddings") else "models"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat request's messages (``[]`` for other endpoints)."""
        given: object = self.body.get("messages")
        if not isinstance(given, list):
            return []
        items = cast("list[object]", given)
        return [cast("dict[str, Any]", m) for m in items if isinstance(m, dict)]

    @property
    def prompt(self) -> str:
        """The text content of the last message (``""`` when there is none or it is not text)."""
        content: object = self.messages[-1].get("content") if self.messages else None
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts = cast("list[object]", content)
            texts = [cast("dict[str, Any]", p).get("text") for p in parts if isinstance(p, dict)]
            return "".join(t for t in texts if isinstance(t, str))
        return ""

    @property
    def inputs(self) -> list[str]:
        """The embedding request's inputs as texts (token lists as JSON text)."""
        return _embedding_texts(self.body)

    @property
    def stream(self) -> bool:
        """Whether the chat request asked for a stream."""
        return bool(self.body.get("stream"))


ServerAnswer: TypeAlias = "str | Reply | Sequence[float] | Sequence[Sequence[float]] | Fault | None"
"""What a responder returns for one request.

- ``str``: the chat answer's text (streamed word by word when the request streams).
- :class:`~fixedmodel.testing.Reply`: a full chat answer: text or JSON, tool calls, how a
  stream is chunked, the usage reported, the finish reason.
- a vector, or one vector per input: the embedding answer.
- :class:`Fault`: that fault, as if it had been queued.
- ``None``: the server's usual answer (``reply_text``, or the embedding of each input).
"""

Responder: TypeAlias = "Callable[[RecordedRequest], ServerAnswer | Awaitable[ServerAnswer]]"
"""A function (or coroutine function) from the recorded request to its answer."""


def embedding_vector(text: str, dim: int = 8) -> list[float]:
    """Returns the unit-length vector served for ``text``; its floats are exact float32."""
    digest = hashlib.shake_256(text.encode("utf-8")).digest(2 * dim)
    raw = [v / 32767.5 - 1.0 for v in struct.unpack(f"<{dim}H", digest)]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *(v / norm for v in raw))))


def split_reply(text: str) -> list[str]:
    """Splits ``text`` into the streamed pieces: words with their trailing whitespace."""
    return [piece for piece in re.findall(r"\S*\s*", text) if piece]


def _count_words(value: object) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, Mapping):
        mapping = cast("Mapping[object, object]", value)
        return sum(_count_words(v) for k, v in mapping.items() if k in ("content", "text"))
    if isinstance(value, list):
        return sum(_count_words(v) for v in cast("list[object]", value))
    return 0


def _error_body(fault: Fault) -> dict[str, Any]:
    """The OpenAI-style JSON error body of a ``"status"`` fault."""
    default = "server_error" if fault.status_code >= 500 else "invalid_request_error"
    kind, code = _ERROR_KINDS.get(fault.status_code, (default, None))
    return {"error": {"message": fault.message, "type": kind, "param": None, "code": code}}


def _sse(payload: Mapping[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


class OpenAIServer:
    """OpenAI-compatible server on ``127.0.0.1`` with request recording and fault injection.

    Attributes:
        reply_text: Assistant reply of chat completions.
        usage_completion_tokens: Reported completion tokens; ``None`` counts reply words.
        latency: Seconds slept before each answer, to simulate model time.
        embedding_dim: Length of embedding vectors.
        models: Model ids listed by ``GET /v1/models``.
        fault_rule: A function of each request's JSON body that returns the fault to inject
            into it, or None for a normal answer; consulted after the queued faults.
        responder: A function of each :class:`RecordedRequest` that returns its answer (see
            :data:`ServerAnswer`), called on the server's thread for every request that no
            queued, rule or random fault serves; None answers every chat with ``reply_text``.
            It may be a coroutine function (e.g. to sleep per request). An exception it raises,
            or an answer of the wrong kind (vectors for a chat, text for an embedding), is
            answered with HTTP 500 and a message that says so (recorded as that fault).
        batches: The Files and Batches endpoints (OpenAI's Batch API): their uploads, their
            batches, and the settings that steer a batch job (see :class:`BatchService`).
            A batch line is answered as the same request live, ``fault_rule`` included.
    """

    def __init__(
        self,
        *,
        reply_text: str = DEFAULT_REPLY,
        embedding_dim: int = 8,
        responder: Responder | None = None,
        port: int = 0,
    ) -> None:
        """Creates a stopped server with the given reply text, embedding size and responder.

        ``port`` fixes the TCP port on 127.0.0.1 (0: a free one, chosen at start). A fixed
        port keeps ``base_url`` the same from run to run, which a persistent cache needs:
        ``api_base`` is part of every cache key.
        """
        given = cast("object", port)  # untyped callers pass anything
        if isinstance(given, bool) or not isinstance(given, int) or not 0 <= given <= 65535:
            msg = f"port must be an int in 0..65535, got {port!r}"
            raise ValueError(msg)
        self._wanted_port = port
        self.reply_text = reply_text
        self.responder: Responder | None = responder
        self.usage_completion_tokens: int | None = None
        self.latency = 0.0
        self.embedding_dim = embedding_dim
        self.models = ["test", "text-embedding-3-small"]
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: deque[Fault] = deque()
        self._rng = random.Random(0)
        self._random: tuple[float, tuple[int, ...], float | None] | None = None
        self.fault_rule: Callable[[dict[str, Any]], Fault | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0
        self.batches = BatchService(self._line_answer)

    def start(self) -> Self:
        """Starts the server thread, returning itself once the socket listens."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(loop,), daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._setup(), loop).result()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops serving, closes every socket and joins the thread; does nothing if stopped."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """TCP port of the listening socket (0 before the first start)."""
        return self._port

    @property
    def base_url(self) -> str:
        """Base URL for OpenAI clients: ``http://127.0.0.1:PORT/v1``."""
        if self._thread is None:
            raise RuntimeError("server is not running")
        return f"http://127.0.0.1:{self._port}/v1"

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_forever()
        loop.run_until_complete(self._teardown())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    async def _setup(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/embeddings", self._handle)
        app.router.add_get("/v1/models", self._handle)
        self.batches.add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self._wanted_port, backlog=2048).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def _teardown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of the recorded requests, oldest first (safe from any thread)."""
        with self._lock:
            return list(self._requests)

    def request_count(self, path_suffix: str = "/chat/completions") -> int:
        """Counts recorded requests whose path ends with ``path_suffix``."""
        with self._lock:
            return sum(1 for r in self._requests if r.path.endswith(path_suffix))

    def enqueue(self, *faults: Fault) -> None:
        """Queues faults; each later request, on any endpoint, consumes one in FIFO order."""
        with self._lock:
            self._faults.extend(faults)

    def random_faults(
        self,
        rate: float = 0.2,
        statuses: Sequence[int] = (429, 503),
        seed: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Fails a seeded random fraction of the requests that no queued fault serves.

        Args:
            rate: Probability in [0, 1] that a request fails.
            statuses: HTTP statuses to pick from uniformly.
            seed: Seed of the private random generator, for repeatable runs.
            retry_after: Seconds for a ``Retry-After`` header on each failure, if any.
        """
        with self._lock:
            self._rng = random.Random(seed)
            self._random = (rate, tuple(statuses), retry_after) if statuses else None

    def clear_faults(self) -> None:
        """Drops queued faults and turns random faults off."""
        with self._lock:
            self._faults.clear()
            self._random = None

    def clear_requests(self) -> None:
        """Forgets the recorded requests (a long-running server stays small)."""
        with self._lock:
            self._requests.clear()

    def reset(self) -> None:
        """Clears recorded requests and all faults, the fault rule and the responder included."""
        self.clear_faults()
        self.fault_rule = None
        self.batches.reset()
        self.responder = None
        with self._lock:
            self._requests.clear()

    def _injected_fault(self, body: dict[str, Any]) -> Fault | None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            if fault is None and self.fault_rule is not None:
                fault = self.fault_rule(body)
            if fault is None and self._random and self._rng.random() < self._random[0]:
                code = self._rng.choice(self._random[1])
                fault = Fault.status(code, retry_after=self._random[2])
            return fault

    async def _record(
        self, request: web.Request, body: dict[str, Any]
    ) -> tuple[Fault | None, ServerAnswer]:
        """Decide the request's fault or answer, and record the request with its fault."""
        fault = self._injected_fault(body)
        headers = {k.lower(): v for k, v in request.headers.items()}
        recorded = RecordedRequest(
            request.method, request.path, headers, body, time.monotonic(), fault
        )
        with self._lock:  # recorded on arrival, so the list stays in arrival order
            self._requests.append(recorded)
        answer: ServerAnswer = None
        responder = self.responder
        if fault is None and responder is not None:
            try:
                given = responder(recorded)
                answer = await given if inspect.isawaitable(given) else given
                if isinstance(answer, Fault):
                    pass
                elif recorded.endpoint == "chat":
                    self._chat_reply(answer)  # raises for an answer that does not fit
                elif recorded.endpoint == "embeddings":
                    _answer_vectors(answer, len(recorded.inputs))
            except Exception as error:
                answer = Fault.status(500, message=f"the responder failed: {error!r}")
            if isinstance(answer, Fault):
                fault, answer = answer, None
                self._set_fault(recorded, fault)
        return fault, answer

    def _set_fault(self, recorded: RecordedRequest, fault: Fault) -> None:
        """Replace ``recorded`` in the list by a copy that names the responder's fault."""
        with self._lock:
            for index in range(len(self._requests) - 1, -1, -1):
                if self._requests[index] is recorded:
                    self._requests[index] = dataclasses.replace(recorded, fault=fault)
                    return

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            parsed = json.loads(await request.read()) if request.can_read_body else None
        except ValueError:
            parsed = None
        body = cast("dict[str, Any]", parsed) if isinstance(parsed, dict) else {}
        fault, answer = await self._record(request, body)
        if fault is not None and fault.kind != "delay":
            return await self._fault_response(request, body, fault)
        await asyncio.sleep((fault.seconds if fault else 0.0) + self.latency)
        if request.path.endswith("/chat/completions"):
            reply = self._chat_reply(answer)
            if body.get("stream"):
                events = self._stream_events(body, reply)
                return await self._send(request, events, truncate=False)
            return web.json_response(self._completion(body, reply))
        if request.path.endswith("/embeddings"):
            return web.json_response(self._embeddings(body, answer))
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "me"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _fault_response(
        self, request: web.Request, body: dict[str, Any], fault: Fault
    ) -> web.StreamResponse:
        if fault.kind == "status":
            headers = dict(fault.headers)
            error = _error_body(fault)
            return web.json_response(error, status=fault.status_code, headers=headers)
        if fault.kind == "malformed":
            text = '{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{'
            return web.Response(text=text, content_type="application/json")
        if fault.kind == "truncated_stream":
            if request.path.endswith("/chat/completions") and body.get("stream"):
                events = self._stream_events(body)[: len(split_reply(self.reply_text)) + 1]
            else:  # Not streamed: send the first half of the JSON body, in 16-byte pieces.
                raw = json.dumps(self._completion(body)).encode()
                events = [raw[i : i + 16] for i in range(0, len(raw) // 2, 16)]
            return await self._send(request, events[: fault.chunks_before_close], truncate=True)
        # "drop": abort before any byte is written; aiohttp then fails to send the returned
        # response and handles that as a client disconnect.
        if request.transport is not None:
            request.transport.abort()
        return web.Response()

    def _line_answer(self, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A batch line's status and body: what the same request gets live.

        ``fault_rule``'s status faults and a (synchronous) ``responder`` apply; the queued
        and random faults, and faults that break a connection, concern live requests only.
        """
        with self._lock:
            fault = self.fault_rule(body) if self.fault_rule is not None else None
        answer: ServerAnswer = None
        responder = self.responder
        if fault is None and responder is not None:
            recorded = RecordedRequest("POST", url, {}, body, time.monotonic(), None)
            try:
                given = responder(recorded)
                if inspect.isawaitable(given):
                    if inspect.iscoroutine(given):
                        given.close()
                    msg = "a batch line is answered on the server's thread: give a sync responder"
                    raise TypeError(msg)
                answer = given
            except Exception as error:
                answer = Fault.status(500, message=f"the responder failed: {error!r}")
            if isinstance(answer, Fault):
                fault, answer = answer, None
        if fault is not None and fault.kind == "status":
            return fault.status_code, _error_body(fault)
        try:
            if url.endswith("/embeddings"):
                return 200, self._embeddings(body, answer)
            return 200, self._completion(body, self._chat_reply(answer))
        except Exception as error:  # an answer of the wrong kind, as live
            failed = Fault.status(500, message=f"the responder failed: {error!r}")
            return 500, _error_body(failed)

    async def _send(
        self, request: web.Request, events: Sequence[bytes], *, truncate: bool
    ) -> web.StreamResponse:
        sse = not events or events[0].startswith(b"data:")
        response = web.StreamResponse()
        response.content_type = "text/event-stream" if sse else "application/json"
        await response.prepare(request)
        for event in events:
            await response.write(event)
        if truncate and request.transport is not None:
            request.transport.abort()  # No terminating chunk: the client sees a cut-off body.
        else:
            await response.write_eof()
        return response

    def _chat_reply(self, answer: ServerAnswer) -> Reply:
        if answer is None:
            return Reply(text=self.reply_text)
        if isinstance(answer, str):
            return Reply(text=answer)
        if isinstance(answer, Reply):
            return answer
        msg = f"a responder answered a chat request with {answer!r}: give a str or a Reply"
        raise TypeError(msg)

    def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, int]:
        if reply.usage is not None:
            prompt, done = reply.usage.prompt_tokens, reply.usage.completion_tokens
        else:
            prompt = max(1, _count_words(body.get("messages", [])))
            default = self.usage_completion_tokens
            done = len((reply.content or "").split()) if default is None else default
        return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}

    def _envelope(self, body: dict[str, Any], obj: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": obj,
            "created": int(time.time()),
            "model": str(body.get("model", "test")),
            "system_fingerprint": None,
        }

    def _completion(self, body: dict[str, Any], reply: Reply | None = None) -> dict[str, Any]:
        reply = reply or Reply(text=self.reply_text)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [call.as_openai() for call in reply.tool_calls]
        finish = _finish_reason(reply)
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        envelope = self._envelope(body, "chat.completion")
        return {**envelope, "choices": [choice], "usage": self._usage(body, reply)}

    def _stream_events(self, body: dict[str, Any], reply: Reply | None = None) -> list[bytes]:
        """SSE events: role, one chunk per reply piece, tool calls, finish, usage, ``[DONE]``."""
        reply = reply or Reply(text=self.reply_text)
        base = self._envelope(body, "chat.completion.chunk")
        split = reply.chunks if reply.chunks is not None else split_reply(reply.content or "")
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": piece} for piece in split]
        if reply.tool_calls:
            calls = [call.as_openai() for call in reply.tool_calls]
            deltas.append({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
        choices: list[list[dict[str, Any]]] = [
            [{"index": 0, "delta": d, "finish_reason": None}] for d in deltas
        ]
        choices.append([{"index": 0, "delta": {}, "finish_reason": _finish_reason(reply)}])
        events = [_sse({**base, "choices": c}) for c in choices]
        options: object = body.get("stream_options")
        if isinstance(options, dict) and cast("dict[str, object]", options).get("include_usage"):
            events.append(_sse({**base, "choices": [], "usage": self._usage(body, reply)}))
        return [*events, b"data: [DONE]\n\n"]

    def _embeddings(self, body: dict[str, Any], answer: ServerAnswer = None) -> dict[str, Any]:
        texts = _embedding_texts(body)
        vectors = _answer_vectors(answer, len(texts))
        data: list[dict[str, Any]] = []
        for index, text in enumerate(texts):
            vector: Any = embedding_vector(text, self.embedding_dim) if vectors is None else None
            if vectors is not None:
                vector = vectors[index]
            if body.get("encoding_format") == "base64":  # The openai SDK asks for this.
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = max(1, sum(len(t.split()) for t in texts))
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        model = str(body.get("model", "text-embedding-3-small"))
        return {"object": "list", "data": data, "model": model, "usage": usage}


def _finish_reason(reply: Reply) -> str:
    if reply.finish_reason is not None:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _embedding_texts(body: Mapping[str, Any]) -> list[str]:
    given: object = body.get("input", "")
    items: list[object] = cast("list[object]", given) if isinstance(given, list) else [given]
    if isinstance(given, list) and items and all(type(x) is int for x in items):
        items = [given]  # One pre-tokenised input.
    return [x if isinstance(x, str) else json.dumps(x) for x in items]


def _answer_vectors(answer: ServerAnswer, inputs: int) -> list[list[float]] | None:
    """The vectors a responder's answer gives ``inputs`` inputs; None for the usual ones."""
    if answer is None:
        return None
    if isinstance(answer, (str, Reply, Fault)):
        msg = f"a responder answered an embedding request with {answer!r}: give vectors"
        raise TypeError(msg)
    items = list(cast("Sequence[object]", answer))
    if items and all(isinstance(item, (int, float)) for item in items):
        return [[float(cast("float", x)) for x in items] for _ in range(inputs)]
    vectors = [[float(x) for x in cast("Sequence[float]", item)] for item in items]
    if len(vectors) != inputs:
        msg = f"a responder gave {len(vectors)} vectors for {inputs} embedding inputs"
        raise ValueError(msg)
    return vectors
