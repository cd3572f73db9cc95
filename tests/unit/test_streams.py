"""Watching how a stream ends without re-wrapping litellm's stream (_streams.py)."""

from __future__ import annotations

import pytest

import fixedmodel
from fixedmodel import bind_acompletion, bind_completion
from fixedmodel._streams import StreamEnd, StreamUsage, watch_stream

MESSAGES = [{"role": "user", "content": "Hi"}]
USAGE = {"include_usage": True}


async def test_a_stream_read_to_its_end_reports_its_usage_once_to_each_watcher() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini", mock_response="one two three")
    stream = await chat(messages=MESSAGES, stream=True, stream_options=USAGE)
    first: list[StreamEnd] = []
    second: list[StreamEnd] = []
    watch_stream(stream, first.append)
    watch_stream(stream, second.append)
    assert isinstance(stream, fixedmodel.CustomStreamWrapper)
    chunks = [chunk async for chunk in stream]
    assert len(first) == len(second) == 1
    end = first[0]
    assert end.completed and end.error is None
    assert end.chunks == len(chunks)
    assert end.first_chunk_at is not None
    assert isinstance(end.usage, StreamUsage)
    assert end.usage.completion_tokens > 0 and end.usage.prompt_tokens > 0


def test_a_sync_stream_without_usage_ends_with_none() -> None:
    chat = bind_completion("openai/gpt-4o-mini", mock_response="one two three")
    stream = chat(messages=MESSAGES, stream=True)
    ends: list[StreamEnd] = []
    watch_stream(stream, ends.append)
    assert "".join(fixedmodel.responses.text_deltas(stream)) == "one two three"
    assert [(end.completed, end.usage) for end in ends] == [(True, None)]


async def test_closing_early_is_an_end_that_did_not_complete() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini", mock_response="one two three")
    stream = await chat(messages=MESSAGES, stream=True)
    ends: list[StreamEnd] = []
    watch_stream(stream, ends.append)
    await anext(aiter(stream))
    await stream.aclose()
    assert [(end.completed, end.chunks) for end in ends] == [(False, 1)]


async def test_an_error_while_reading_is_reported_and_still_raised() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini", mock_response="one two three")
    stream = await chat(messages=MESSAGES, stream=True)
    ends: list[StreamEnd] = []
    watch_stream(stream, ends.append)
    boom = RuntimeError("connection dropped")
    base = type(stream).__mro__[1]

    async def broken(self: object) -> object:
        raise boom

    original = base.__anext__
    base.__anext__ = broken
    try:
        with pytest.raises(RuntimeError, match="connection dropped"):
            await anext(aiter(stream))
    finally:
        base.__anext__ = original
    assert [(end.completed, end.error) for end in ends] == [(False, boom)]


def test_a_stream_that_is_not_litellms_is_reported_as_unknown_at_once() -> None:
    ends: list[StreamEnd] = []
    watch_stream(iter(()), ends.append)  # type: ignore[arg-type]  # a fake's stream
    assert [(end.completed, end.usage) for end in ends] == [(False, None)]
