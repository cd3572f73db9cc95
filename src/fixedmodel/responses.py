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
    "atext_deltas",
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

    Raises:
        ResponseContentError: The response carries no usage.
    """
    reported: object = getattr(response, "usage", None)
    if reported is None:
        raise ResponseContentError("the response carries no token usage")
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


def _delta_text(chunk: ModelResponseStream) -> str | None:
    if not chunk.choices:
        return None
    content = chunk.choices[0].delta.content
    return content or None


def text_deltas(stream: CustomStreamWrapper) -> Iterator[str]:
    """Yield the text pieces of a synchronous stream (``stream=True`` on a sync callable)."""
    for chunk in stream:
        piece = _delta_text(chunk)
        if piece is not None:
            yield piece


async def atext_deltas(stream: CustomStreamWrapper) -> AsyncIterator[str]:
    """Yield the text pieces of an async stream (``stream=True`` on an async callable)."""
    async for chunk in stream:
        piece = _delta_text(chunk)
        if piece is not None:
            yield piece
