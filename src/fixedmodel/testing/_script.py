"""What a fake answers: scripted replies and failures, turned into real litellm objects.

A fake's script is a sequence of entries, one per call. A chat entry is a ``str`` (the
answer's text), a :class:`Reply` (text, tool calls, JSON, usage, how a stream is chunked), a
:class:`Fail` (an HTTP error as the provider would send it) or an exception instance (raised
as it is). An embedding entry is a vector, a list of vectors, a ``Fail`` or an exception.
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from fixedmodel._litellm import litellm_module

if TYPE_CHECKING:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    from litellm.types.utils import EmbeddingResponse, ModelResponse

__all__ = [
    "ChatEntry",
    "EmbeddingEntry",
    "Fail",
    "FakeToolCall",
    "FakeUsage",
    "Reply",
]


@dataclass(frozen=True)
class FakeUsage:
    """Token counts a scripted answer reports.

    Attributes:
        prompt_tokens: Input tokens (>= 0).
        completion_tokens: Output tokens (>= 0; 0 for embeddings).
    """

    prompt_tokens: int
    completion_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "completion_tokens"):
            value: object = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                msg = f"FakeUsage.{name} must be an int >= 0, got {value!r}"
                raise ValueError(msg)


@dataclass(frozen=True)
class FakeToolCall:
    """One tool call in a scripted answer.

    Attributes:
        name: The function's name.
        arguments: Its arguments, as a JSON object or as the JSON text itself.
        id: The call's id; a fresh ``call_...`` id when None.
    """

    name: str
    arguments: Mapping[str, object] | str = field(default_factory=dict[str, object])
    id: str | None = None

    def as_openai(self) -> dict[str, object]:
        """The call as an OpenAI ``tool_calls`` item."""
        arguments = (
            self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)
        )
        return {
            "id": self.id or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": self.name, "arguments": arguments},
        }


@dataclass(frozen=True)
class Reply:
    """One scripted chat answer.

    Attributes:
        text: The answer's content, or None (e.g. an answer made only of tool calls).
        tool_calls: Tool calls the answer makes.
        json: A value sent as the answer's JSON text instead of ``text`` (what a model
            answers under ``response_format``); a pydantic model is dumped with
            ``model_dump_json``.
        chunks: How a stream splits the text, in order; when None, a stream sends the text
            word by word. Joined, the chunks must equal the text.
        usage: The usage the answer reports; when None, words are counted (the request's
            text for the prompt, the answer's for the completion).
        finish_reason: Why the answer ended; ``"tool_calls"`` when there are tool calls,
            otherwise ``"stop"``, when None.
    """

    text: str | None = None
    tool_calls: Sequence[FakeToolCall] = ()
    json: object = None
    chunks: Sequence[str] | None = None
    usage: FakeUsage | None = None
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        if self.json is not None and self.text is not None:
            msg = "Reply takes text or json, not both"
            raise ValueError(msg)
        if self.chunks is not None and "".join(self.chunks) != (self.content or ""):
            msg = "Reply.chunks joined must equal the reply's text"
            raise ValueError(msg)

    @property
    def content(self) -> str | None:
        """The message content the answer carries (``json`` rendered as JSON text)."""
        if self.json is None:
            return self.text
        dump: object = getattr(self.json, "model_dump_json", None)
        if callable(dump):
            dumped: object = dump()
            if isinstance(dumped, str):
                return dumped
        return json.dumps(self.json)


# The litellm exception class for each HTTP status a provider answers with.
_STATUS_CLASSES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "Timeout",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
}


@dataclass(frozen=True)
class Fail:
    """A scripted provider failure: the litellm exception an HTTP error status becomes.

    Attributes:
        status: The HTTP status (400-599), e.g. 429, 500, 401.
        message: The error message.
        headers: Response headers, e.g. ``{"retry-after": "2"}`` or
            ``{"retry-after-ms": "250"}``; ``with_retries`` and the limiter read them.
        code: The OpenAI error ``code`` (e.g. ``"insufficient_quota"``), or None.
    """

    status: int
    message: str = "Scripted failure from a fixedmodel fake."
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    code: str | None = None

    def __post_init__(self) -> None:
        status = cast("object", self.status)  # checked: callers without a checker pass anything
        if isinstance(status, bool) or not isinstance(status, int):
            msg = f"Fail.status must be an int HTTP status, got {self.status!r}"
            raise TypeError(msg)
        if not 400 <= self.status <= 599:
            msg = f"Fail.status must be an HTTP error status in 400-599, got {self.status}"
            raise ValueError(msg)

    def exception(self, model: str) -> Exception:
        """Build the litellm exception the status maps to, as litellm raises it.

        litellm's own mapping makes it, for the provider of ``model`` (a name litellm does
        not know maps as an OpenAI-compatible provider's); with a litellm that lacks that
        mapping, a table of the usual classes.
        """
        import httpx

        litellm = litellm_module()
        body = {"error": {"message": self.message, "type": "fake_error", "code": self.code}}
        request = httpx.Request("POST", "http://fake.invalid/v1/chat/completions")
        response = httpx.Response(
            self.status, headers=dict(self.headers), json=body, request=request
        )
        mapped = _as_litellm_maps(self, model, body, request, response)
        if mapped is not None:
            return mapped
        name = _STATUS_CLASSES.get(self.status)
        kind: Any = getattr(litellm, name, None) if name is not None else None
        arguments: dict[str, Any] = {
            "message": self.message,
            "model": model,
            "llm_provider": "fake",
            "response": response,
        }
        if kind is None:
            kind = litellm.APIError
            arguments.update(status_code=self.status, request=request)
        # Older litellm releases take no response= in some classes (Timeout, APIError):
        # pass what the installed class accepts.
        accepted = inspect.signature(kind.__init__).parameters
        error: Exception = kind(**{k: v for k, v in arguments.items() if k in accepted})
        if getattr(error, "status_code", None) != self.status:
            error.status_code = self.status  # type: ignore[attr-defined]  # litellm's field
        if self.headers:
            # As litellm's exception mapping sets them on every error it raises: some classes
            # of older releases (APIError in 1.100) take no response= to carry them.
            error.litellm_response_headers = response.headers  # type: ignore[attr-defined]
        return error


def _as_litellm_maps(
    fail: Fail, model: str, body: dict[str, Any], request: Any, response: Any
) -> Exception | None:
    """The exception litellm's own mapping makes of this status for ``model``'s provider.

    The class depends on the provider as much as on the status (for OpenAI-compatible
    providers a 403 is an ``APIError``, a 422 a ``BadRequestError``, a 504 a ``Timeout``;
    Anthropic's 529 is an ``InternalServerError``), so a fake built its own table and
    raised what no real call raises: an ``except litellm.BadRequestError`` that catches a
    real 422 let the fake's ``UnprocessableEntityError`` through. None when the installed
    litellm has no such mapping (the table below is used then).
    """
    litellm = litellm_module()
    try:  # litellm internals, untyped: looked up, not imported by name
        mapping: Any = importlib.import_module("litellm.litellm_core_utils.exception_mapping_utils")
        base: Any = importlib.import_module("litellm.llms.base_llm.chat.transformation")
        exception_type: Any = mapping.exception_type
        llm_exception: Any = base.BaseLLMException
    except (ImportError, AttributeError):
        return None
    try:
        provider = str(litellm.get_llm_provider(model=model)[1])
    except Exception:  # a name litellm does not know ("fake/model"): OpenAI-compatible
        provider = "openai"
    try:
        original = llm_exception(
            status_code=fail.status,
            message=fail.message,
            headers=response.headers,
            request=request,
            response=response,
            body=body,
        )
        exception_type(
            model=model,
            original_exception=original,
            custom_llm_provider=provider,
            completion_kwargs={},
            extra_kwargs={},
        )
    except Exception as error:  # what the mapping raises is the answer
        if type(error).__module__.split(".", 1)[0] == "litellm":
            if fail.headers and getattr(error, "litellm_response_headers", None) is None:
                error.litellm_response_headers = response.headers  # type: ignore[attr-defined]
            return error
    return None


ChatEntry: TypeAlias = "str | Reply | Fail | BaseException"
"""One scripted chat answer: text, a :class:`Reply`, a :class:`Fail` or an exception."""

EmbeddingEntry: TypeAlias = "Sequence[float] | Sequence[Sequence[float]] | Fail | BaseException"
"""One scripted embedding answer: a vector for every input, one vector per input, a
:class:`Fail` or an exception."""


def _words(value: object) -> int:
    """Whitespace-separated words in the text parts of ``value`` (messages, input)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, Mapping):
        mapping: Mapping[object, object] = value  # pyright: ignore[reportUnknownVariableType]
        return sum(_words(item) for key, item in mapping.items() if key in {"content", "text"})
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        items: Sequence[object] = value  # pyright: ignore[reportUnknownVariableType]
        return sum(_words(item) for item in items)
    content: object = getattr(value, "content", None)
    return _words(content) if content is not None else 0


def as_reply(entry: str | Reply) -> Reply:
    """The :class:`Reply` a chat entry stands for."""
    return Reply(text=entry) if isinstance(entry, str) else entry


def usage_of(reply: Reply, request: Mapping[str, object]) -> FakeUsage:
    """The usage a reply reports for ``request`` (its own, or words counted)."""
    if reply.usage is not None:
        return reply.usage
    answer = _words(reply.content or "") + sum(
        _words(call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments))
        for call in reply.tool_calls
    )
    return FakeUsage(_words(request.get("messages")), answer)


def _message(reply: Reply) -> dict[str, object]:
    message: dict[str, object] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [call.as_openai() for call in reply.tool_calls]
    return message


def _finish_reason(reply: Reply) -> str:
    if reply.finish_reason is not None:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _choices_count(request: Mapping[str, object]) -> int:
    n = request.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def build_response(reply: Reply, model: str, request: Mapping[str, object]) -> ModelResponse:
    """A real ``ModelResponse`` carrying ``reply`` (``n`` copies when the request asks n>1)."""
    litellm = litellm_module()
    usage = usage_of(reply, request)
    choices = [
        {"index": index, "message": _message(reply), "finish_reason": _finish_reason(reply)}
        for index in range(_choices_count(request))
    ]
    response: ModelResponse = litellm.ModelResponse(
        id=f"chatcmpl-fake-{uuid.uuid4().hex[:16]}",
        created=int(time.time()),
        model=model,
        object="chat.completion",
        choices=choices,
        usage=litellm.Usage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
        ),
    )
    return response


def _split(reply: Reply) -> Sequence[str]:
    if reply.chunks is not None:
        return reply.chunks
    text = reply.content or ""
    pieces: list[str] = []
    start = 0
    # Word by word, each piece keeping the space in front of its word, as providers send.
    for index in range(1, len(text)):
        if text[index] == " " and text[index - 1] != " ":
            pieces.append(text[start:index])
            start = index
    if text:
        pieces.append(text[start:])
    return pieces


def _stream_chunks(reply: Reply, model: str, request: Mapping[str, object]) -> list[Any]:
    """The chunks of a streamed ``reply``: deltas, the finish, and usage when asked for."""
    types = litellm_module().types.utils
    chunk_id = f"chatcmpl-fake-{uuid.uuid4().hex[:16]}"
    count = _choices_count(request)

    def chunk(deltas: list[dict[str, object]], finish: str | None) -> Any:
        return types.ModelResponseStream(
            id=chunk_id,
            model=model,
            choices=[
                types.StreamingChoices(
                    index=index, delta=types.Delta(**delta), finish_reason=finish
                )
                for index, delta in enumerate(deltas)
            ],
        )

    chunks: list[Any] = [
        chunk([{"role": "assistant", "content": piece}] * count, None) for piece in _split(reply)
    ]
    if reply.tool_calls:
        calls = [
            {"index": position, **call.as_openai()}
            for position, call in enumerate(reply.tool_calls)
        ]
        chunks.append(chunk([{"role": "assistant", "tool_calls": calls}] * count, None))
    chunks.append(chunk([{}] * count, _finish_reason(reply)))
    options = request.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage") is True:  # pyright: ignore[reportUnknownMemberType]
        usage = usage_of(reply, request)
        last = types.ModelResponseStream(id=chunk_id, model=model, choices=[])
        last.usage = types.Usage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
        )
        chunks.append(last)
    return chunks


def build_stream(
    reply: Reply, model: str, request: Mapping[str, object], *, asynchronous: bool
) -> CustomStreamWrapper:
    """A real litellm ``CustomStreamWrapper`` that yields ``reply`` in chunks."""
    litellm = litellm_module()
    from litellm.litellm_core_utils.litellm_logging import (
        Logging,
    )

    chunks = _stream_chunks(reply, model, request)
    options = request.get("stream_options")
    logging = Logging(
        model=model,
        messages=request.get("messages"),
        stream=True,
        call_type="acompletion" if asynchronous else "completion",
        start_time=datetime.datetime.now(),
        litellm_call_id=str(uuid.uuid4()),
        function_id="fixedmodel-fake",
    )
    logging.update_environment_variables(  # pyright: ignore[reportUnknownMemberType]
        model=model,
        user=None,
        optional_params={"stream_options": options} if options is not None else {},
        # Zero prices: litellm then prices the answer without looking the model up.
        litellm_params={
            "custom_llm_provider": "openai",
            "input_cost_per_token": 0.0,
            "output_cost_per_token": 0.0,
        },
        custom_llm_provider="openai",
    )

    def sync_chunks() -> Iterator[Any]:
        yield from chunks

    async def async_chunks() -> AsyncIterator[Any]:
        for piece in chunks:
            yield piece

    stream: CustomStreamWrapper = litellm.CustomStreamWrapper(
        completion_stream=async_chunks() if asynchronous else sync_chunks(),
        model=model,
        custom_llm_provider="openai",
        logging_obj=logging,
        stream_options=options,
    )
    return stream


def _vectors(entry: Sequence[float] | Sequence[Sequence[float]], inputs: int) -> list[list[float]]:
    if all(isinstance(value, (int, float)) for value in entry):
        vector = [float(value) for value in entry]  # type: ignore[arg-type]  # checked above
        return [list(vector) for _ in range(inputs)]
    vectors = [[float(value) for value in vector] for vector in entry]  # type: ignore[union-attr]
    if len(vectors) != inputs:
        msg = f"the scripted answer has {len(vectors)} vectors for a request of {inputs} inputs"
        raise ValueError(msg)
    return vectors


def build_embedding(
    entry: Sequence[float] | Sequence[Sequence[float]], model: str, request: Mapping[str, object]
) -> EmbeddingResponse:
    """A real ``EmbeddingResponse``: one vector per input of ``request``."""
    litellm = litellm_module()
    given = request.get("input")
    inputs: list[object] = (
        [given]
        if isinstance(given, str) or not isinstance(given, Sequence)
        else list(cast("Sequence[object]", given))
    )
    if inputs and all(isinstance(item, int) for item in inputs):
        inputs = [inputs]  # one list of token ids is one input
    vectors = _vectors(entry, len(inputs))
    prompt_tokens = sum(
        len(item.split()) if isinstance(item, str) else len(cast("Sequence[int]", item))
        for item in inputs
    )
    response: EmbeddingResponse = litellm.EmbeddingResponse(
        model=model,
        data=[
            {"object": "embedding", "index": index, "embedding": vector}
            for index, vector in enumerate(vectors)
        ],
        usage=litellm.Usage(
            prompt_tokens=prompt_tokens, completion_tokens=0, total_tokens=prompt_tokens
        ),
    )
    return response
