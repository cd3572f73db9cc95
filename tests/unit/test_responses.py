"""Typed response helpers: exact values, and clear errors when the answer lacks them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

from fixedmodel import (
    ModelResponse,
    ModelResponseStream,
    ResponseContentError,
    bind_acompletion,
    bind_completion,
    responses,
)


class Weather(BaseModel):
    city: str
    celsius: float


def _answer(
    content: str | None, tool_calls: list[dict[str, object]] | None = None
) -> ModelResponse:
    message: dict[str, object] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return ModelResponse(choices=[{"message": message, "finish_reason": "stop"}])


TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
}


def test_text_of_the_first_and_of_another_choice() -> None:
    response = ModelResponse(
        choices=[
            {"message": {"role": "assistant", "content": "first"}},
            {"message": {"role": "assistant", "content": "second"}},
        ]
    )
    assert responses.text(response) == "first"
    assert responses.text(response, index=1) == "second"
    with pytest.raises(ResponseContentError, match="2 choice"):
        responses.text(response, index=2)


def test_no_choices_is_a_clear_error() -> None:
    response = ModelResponse(choices=[])
    response.choices = []
    with pytest.raises(ResponseContentError, match="no choices"):
        responses.text(response)


def test_tool_calls_instead_of_text() -> None:
    response = _answer(None, [TOOL_CALL])
    with pytest.raises(ResponseContentError, match="tool call"):
        responses.text(response)
    (call,) = responses.tool_calls(response)
    assert (call.id, call.name) == ("call_1", "get_weather")
    assert call.arguments_json() == {"city": "Oslo"}
    assert responses.tool_calls(_answer("plain text")) == []


def test_tool_call_with_broken_json_arguments() -> None:
    broken = dict(TOOL_CALL, function={"name": "f", "arguments": "{not json"})
    (call,) = responses.tool_calls(_answer(None, [broken]))
    with pytest.raises(ResponseContentError, match="not valid JSON"):
        call.arguments_json()


def test_parse_json_validates_against_the_pydantic_model() -> None:
    parsed = responses.parse_json(_answer('{"city": "Oslo", "celsius": -3.5}'), Weather)
    assert parsed == Weather(city="Oslo", celsius=-3.5)
    with pytest.raises(ResponseContentError, match=r"as Weather: celsius"):
        responses.parse_json(_answer('{"city": "Oslo", "celsius": "cold"}'), Weather)
    with pytest.raises(ResponseContentError, match="as Weather"):
        responses.parse_json(_answer("Sunny, 20 degrees"), Weather)


def test_usage_and_its_absence() -> None:
    response = bind_completion("openai/m", mock_response="a b c")(
        messages=[{"role": "user", "content": "x"}]
    )
    usage = responses.usage(response)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0

    class NoUsage:  # what a provider answer without a usage block looks like to the helper
        usage = None

    with pytest.raises(ResponseContentError, match="no token usage"):
        responses.usage(NoUsage())  # type: ignore[arg-type]  # duck-typed stand-in


def test_embeddings_in_input_order_and_base64_refused() -> None:
    from litellm.types.utils import EmbeddingResponse

    response = EmbeddingResponse(
        data=[
            {"object": "embedding", "index": 1, "embedding": [0.5, 0.5]},
            {"object": "embedding", "index": 0, "embedding": [1, 0]},
        ]
    )
    assert responses.embeddings(response) == [[1.0, 0.0], [0.5, 0.5]]
    encoded = EmbeddingResponse(data=[{"object": "embedding", "index": 0, "embedding": "AAA="}])
    with pytest.raises(ResponseContentError, match="not a list of floats"):
        responses.embeddings(encoded)
    with pytest.raises(ResponseContentError, match="no embeddings"):
        responses.embeddings(EmbeddingResponse(data=[]))


def _chunk(index: int, content: str) -> ModelResponseStream:
    return ModelResponseStream(
        choices=[{"index": index, "delta": {"role": "assistant", "content": content}}]
    )


# n=2: the two choices arrive interleaved, each chunk naming its choice by index.
INTERLEAVED = [_chunk(0, "Alpha"), _chunk(1, "Beta"), _chunk(0, " one"), _chunk(1, " uno")]


def test_text_deltas_follow_one_choice_of_an_n2_stream() -> None:
    # A list stands in for the stream: the helpers only iterate it.
    assert "".join(responses.text_deltas(INTERLEAVED)) == "Alpha one"  # type: ignore[arg-type]
    assert "".join(responses.text_deltas(INTERLEAVED, index=1)) == "Beta uno"  # type: ignore[arg-type]
    assert list(responses.text_deltas(INTERLEAVED, index=2)) == []  # type: ignore[arg-type]


async def test_atext_deltas_follow_one_choice_of_an_n2_stream() -> None:
    async def stream() -> AsyncIterator[ModelResponseStream]:
        for chunk in INTERLEAVED:
            yield chunk

    assert [p async for p in responses.atext_deltas(stream())] == ["Alpha", " one"]  # type: ignore[arg-type]
    assert [p async for p in responses.atext_deltas(stream(), index=1)] == ["Beta", " uno"]  # type: ignore[arg-type]


def test_a_chunk_holding_several_choices_gives_the_asked_one() -> None:
    both = ModelResponseStream(
        choices=[
            {"index": 1, "delta": {"content": "second"}},
            {"index": 0, "delta": {"content": "first"}},
        ]
    )
    assert list(responses.text_deltas([both])) == ["first"]  # type: ignore[arg-type]
    assert list(responses.text_deltas([both], index=1)) == ["second"]  # type: ignore[arg-type]


async def test_usage_of_a_stream_from_its_last_chunk_or_the_collected_answer() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini", mock_response="one two three")
    asked = {"stream": True, "stream_options": {"include_usage": True}}
    last = None
    async for chunk in await chat(messages=[{"role": "user", "content": "Hi"}], **asked):  # type: ignore[call-overload]
        last = responses.chunk_usage(chunk) or last
    assert last is not None and last.completion_tokens == 3

    collected = await responses.acollect(
        await chat(messages=[{"role": "user", "content": "Hi"}], **asked)  # type: ignore[call-overload]
    )
    assert responses.text(collected) == "one two three"
    assert responses.usage(collected) == last
    await chat.aclose()


def test_collect_a_sync_stream() -> None:
    chat = bind_completion("openai/gpt-4o-mini", mock_response="sync words")
    collected = responses.collect(chat(messages=[{"role": "user", "content": "Hi"}], stream=True))
    assert responses.text(collected) == "sync words"
    with pytest.raises(ResponseContentError, match="without any chunk"):
        responses.collect([])  # type: ignore[arg-type]


async def test_reading_an_async_stream_with_the_sync_helper_says_what_to_use() -> None:
    from fixedmodel import bind_acompletion

    chat = bind_acompletion("openai/gpt-4o-mini", mock_response="a b")
    stream = await chat(messages=[{"role": "user", "content": "Hi"}], stream=True)
    with pytest.raises(TypeError, match="atext_deltas"):
        next(responses.text_deltas(stream))
    assert "".join([piece async for piece in responses.atext_deltas(stream)]) == "a b"
