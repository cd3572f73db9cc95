"""Typed helpers over litellm responses.

Parts of litellm's response objects are untyped for a checker (``usage`` is not declared on
``ModelResponse``; embedding vectors and stream chunks are ``Any``). These helpers give call
sites exact types and fail with :class:`ResponseContentError` when a response does not hold
what was asked for, instead of returning ``None`` somewhere deep in application code.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    from litellm.types.utils import EmbeddingResponse, Message, ModelResponse, ModelResponseStream
    from pydantic import BaseModel

__all__ = [
    "ResponseContentError",
    "TokenUsage",
    "ToolCall",
    "acollect",
    "atext_deltas",
    "chunk_usage",
    "collect",
    "embeddings",
    "parse_json",
    "text",
    "text_deltas",
    "tool_calls",
    "usage",
]

ModelT = TypeVar("ModelT", bound="BaseModel")


class ResponseContentError(ValueError):
    """The response does not contain what the helper was asked to extract."""


@dataclass(frozen=True)
class TokenUsage:
    """Token counts the provider reported for one call."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for; ``arguments`` is the JSON text it produced."""

    id: str
    name: str
    arguments: str

    def arguments_json(self) -> object:
        """Decode ``arguments``.

        Raises:
            ResponseContentError: The model produced arguments that are not valid JSON.
        """
        try:
            decoded: object = json.loads(self.arguments)
        except json.JSONDecodeError as exc:
            msg = f"tool call {self.name!r} has arguments that are not valid JSON: {exc}"
            raise ResponseContentError(msg) from exc
        return decoded


def _message(response: ModelResponse, index: int) -> Message:
    choices = response.choices
    if not choices:
        raise ResponseContentError("the response has no choices")
    if not 0 <= index < len(choices):
        msg = f"the response has {len(choices)} choice(s); choice {index} was asked for"
        raise ResponseContentError(msg)
    return choices[index].message


def text(response: ModelResponse, *, index: int = 0) -> str:
    """Return the text of one choice, the first by default.

    Raises:
        ResponseContentError: There is no such choice, the model answered with tool calls
            instead of text, or the choice has no content.
    """
    message = _message(response, index)
    if message.content is not None:
        return message.content
    if message.tool_calls:
        raise ResponseContentError(
            f"choice {index} holds {len(message.tool_calls)} tool call(s) instead of text;"
            " read them with tool_calls()"
        )
    raise ResponseContentError(f"choice {index} has no text content")


def tool_calls(response: ModelResponse, *, index: int = 0) -> list[ToolCall]:
    """Return the function calls of one choice; empty when the model answered with text."""
    calls: list[ToolCall] = []
    for call in _message(response, index).tool_calls or ():
        function = getattr(call, "function", None)
        calls.append(
            ToolCall(
                id=str(call.id),
                name=str(getattr(function, "name", None) or getattr(call, "name", "")),
                arguments=str(getattr(function, "arguments", None) or getattr(call, "input", "")),
            )
        )
    return calls


def parse_json(response: ModelResponse, model: type[ModelT], *, index: int = 0) -> ModelT:
    """Validate the text of one choice as JSON against a pydantic model.

    Use with ``response_format=`` set to the same model or its JSON schema.

    Raises:
        ResponseContentError: The text is missing, is not JSON, or fails validation; the
            message names the pydantic model and the first problem found.
    """
    from pydantic import ValidationError  # loaded already: ``model`` is a pydantic class

    raw = text(response, index=index)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        msg = (
            f"the answer does not validate as {model.__name__}: {where}: {first['msg']}"
            f" ({exc.error_count()} error(s))"
        )
        raise ResponseContentError(msg) from exc


def usage(response: ModelResponse | EmbeddingResponse) -> TokenUsage:
    """Return the token usage the provider reported.

    For a stream, read it from the assembled answer (:func:`acollect`/:func:`collect`) or
    from the last chunk (:func:`chunk_usage`); providers report it only when asked with
    ``stream_options={"include_usage": True}``.

    Raises:
        ResponseContentError: The response carries no usage.
    """
    found = _usage_of(response)
    if found is None:
        raise ResponseContentError("the response carries no token usage")
    return found


def chunk_usage(chunk: ModelResponseStream) -> TokenUsage | None:
    """Return the usage a stream chunk carries, or ``None`` (all chunks but the last).

    With ``stream_options={"include_usage": True}`` the provider sends the usage of the
    whole call in the last chunk::

        last = None
        async for chunk in stream:
            last = responses.chunk_usage(chunk) or last
    """
    return _usage_of(chunk)


def _usage_of(response: object) -> TokenUsage | None:
    reported: object = getattr(response, "usage", None)
    if reported is None:
        return None
    prompt = int(getattr(reported, "prompt_tokens", 0) or 0)
    completion = int(getattr(reported, "completion_tokens", 0) or 0)
    total = int(getattr(reported, "total_tokens", 0) or 0) or prompt + completion
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def embeddings(response: EmbeddingResponse) -> list[list[float]]:
    """Return the embedding vectors in input order.

    Raises:
        ResponseContentError: The response holds no vectors, or one is not a list of floats
            (for instance when ``encoding_format="base64"`` was asked for).
    """
    items: list[object] = list(response.data)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]  # litellm types data as a bare list
    if not items:
        raise ResponseContentError("the response holds no embeddings")
    vectors: list[list[float]] = []
    for item in sorted(items, key=_index):
        vector = _field(item, "embedding")
        if not isinstance(vector, list):
            msg = f"embedding is a {type(vector).__name__}, not a list of floats"
            raise ResponseContentError(msg)
        vectors.append([float(value) for value in vector])  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    return vectors


def _index(item: object) -> int:
    index = _field(item, "index")
    return index if isinstance(index, int) else 0


def _field(item: object, name: str) -> object:
    # litellm keeps embedding items as dicts for some providers and as objects for others.
    if isinstance(item, dict):
        return item.get(name)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return getattr(item, name, None)


def _delta_text(chunk: ModelResponseStream, index: int) -> str | None:
    # With n > 1 the choices of a stream arrive interleaved, each chunk naming its choice by
    # ``index``; a chunk usually carries one choice, not necessarily at position 0.
    for choice in chunk.choices:
        if choice.index == index:
            return choice.delta.content or None
    return None


def text_deltas(stream: CustomStreamWrapper, *, index: int = 0) -> Iterator[str]:
    """Yield the text pieces of one choice of a synchronous stream, the first by default.

    Args:
        stream: What a sync callable returns for ``stream=True``.
        index: The choice to follow when ``n`` > 1 (choices are numbered from 0).

    Raises:
        TypeError: ``stream`` came from an async call (read it with :func:`atext_deltas`).
    """
    # litellm's own error for this is a confusing MidStreamFallbackError about an
    # async generator, raised at the first chunk.
    source: object = getattr(stream, "completion_stream", None)
    if hasattr(source, "__anext__") and not hasattr(source, "__next__"):
        msg = "this stream came from an async call: read it with atext_deltas()"
        raise TypeError(msg)
    for chunk in stream:
        piece = _delta_text(chunk, index)
        if piece is not None:
            yield piece


async def atext_deltas(stream: CustomStreamWrapper, *, index: int = 0) -> AsyncIterator[str]:
    """Yield the text pieces of one choice of an async stream, the first by default.

    Args:
        stream: What an async callable returns for ``stream=True``.
        index: The choice to follow when ``n`` > 1 (choices are numbered from 0).
    """
    async for chunk in stream:
        piece = _delta_text(chunk, index)
        if piece is not None:
            yield piece


def _assemble(chunks: list[ModelResponseStream]) -> ModelResponse:
    from fixedmodel._litellm import litellm_module

    if not chunks:
        raise ResponseContentError("the stream ended without any chunk")
    built: ModelResponse | None = litellm_module().stream_chunk_builder(chunks=chunks)
    if built is None:
        raise ResponseContentError("litellm could not assemble the stream's chunks")
    return built


def collect(stream: CustomStreamWrapper) -> ModelResponse:
    """Read a synchronous stream to its end and return the answer as one ``ModelResponse``.

    The result works with every helper here: :func:`text` (any choice when ``n`` > 1),
    :func:`tool_calls`, and :func:`usage` when the stream reported it
    (``stream_options={"include_usage": True}``). Assembled by litellm's
    ``stream_chunk_builder``.

    Raises:
        ResponseContentError: The stream yielded no chunk.
    """
    return _assemble(list(stream))


async def acollect(stream: CustomStreamWrapper) -> ModelResponse:
    """Read an async stream to its end and return the answer; see :func:`collect`.

    Raises:
        ResponseContentError: The stream yielded no chunk.
    """
    return _assemble([chunk async for chunk in stream])
