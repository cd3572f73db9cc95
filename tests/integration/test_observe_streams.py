"""with_metrics and with_logging over streams: the record is made when the stream ends.

Issue 10, item 2 (metrics half): streams were recorded with 0 tokens when litellm handed
them back. Now the record carries the usage the stream reported in its last chunk, or says
the usage is unknown.
"""

from __future__ import annotations

import gc
import logging

import litellm
import pytest

from fixedmodel import bind_acompletion, bind_completion, responses
from fixedmodel.middleware.observe import CallRecord, InMemoryMetrics, with_logging, with_metrics
from tests.support.openai_server import Fault, OpenAIServer

MESSAGES = [{"role": "user", "content": "one two three four"}]
USAGE = {"include_usage": True}


class Records:
    def __init__(self) -> None:
        self.calls: list[CallRecord] = []

    def record(self, call: CallRecord) -> None:
        self.calls.append(call)


def _reply_tokens(server: OpenAIServer) -> int:
    return len(server.reply_text.split())


async def test_a_stream_is_recorded_at_its_end_with_the_usage_it_reported(
    server: OpenAIServer,
) -> None:
    sink = Records()
    async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k") as chat:
        observed = with_metrics(chat, sink)
        stream = await observed(messages=MESSAGES, stream=True, stream_options=USAGE)
        assert sink.calls == []  # not yet: the stream has not been read
        text = "".join([piece async for piece in responses.atext_deltas(stream)])
    assert text == server.reply_text
    (call,) = sink.calls
    assert call.stream
    assert call.usage_reported
    assert call.prompt_tokens == 4
    assert call.completion_tokens == _reply_tokens(server)
    assert call.error is None
    assert call.time_to_first_chunk is not None
    assert 0 <= call.time_to_first_chunk <= call.latency


async def test_a_stream_without_usage_is_recorded_as_unknown(server: OpenAIServer) -> None:
    sink = Records()
    async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k") as chat:
        stream = await with_metrics(chat, sink)(messages=MESSAGES, stream=True)
        async for _chunk in stream:
            pass
    (call,) = sink.calls
    assert not call.usage_reported
    assert (call.prompt_tokens, call.completion_tokens) == (0, 0)


async def test_a_bound_stream_default_is_recorded_as_a_stream(server: OpenAIServer) -> None:
    sink = InMemoryMetrics()
    async with bind_acompletion(
        "openai/m", api_base=server.base_url, api_key="k", stream=True, stream_options=USAGE
    ) as chat:
        stream = await with_metrics(chat, sink)(messages=MESSAGES)
        async for _chunk in stream:
            pass
    summary = sink.summary()
    assert summary.calls == 1
    assert summary.completion_tokens == _reply_tokens(server)


async def test_a_failed_call_of_a_bound_stream_is_recorded_as_a_stream(
    server: OpenAIServer,
) -> None:
    sink = Records()
    server.enqueue(Fault.status(400))
    async with bind_acompletion(
        "openai/m", api_base=server.base_url, api_key="k", extra_params={"stream": True}
    ) as chat:
        with pytest.raises(litellm.BadRequestError):
            await with_metrics(chat, sink)(messages=MESSAGES)
    (call,) = sink.calls
    assert call.stream
    assert call.error == "BadRequestError"


async def test_a_stream_cut_off_is_recorded_with_its_error(server: OpenAIServer) -> None:
    sink = Records()
    server.enqueue(Fault.truncated_stream(chunks_before_close=2))
    async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k") as chat:
        stream = await with_metrics(chat, sink)(messages=MESSAGES, stream=True, max_retries=0)
        with pytest.raises(Exception):  # noqa: B017 - whichever litellm raises
            async for _chunk in stream:
                pass
    (call,) = sink.calls
    assert call.stream
    assert call.error is not None


async def test_an_abandoned_stream_is_recorded_when_collected(server: OpenAIServer) -> None:
    sink = Records()
    async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k") as chat:
        stream = await with_metrics(chat, sink)(messages=MESSAGES, stream=True)
        await stream.__anext__()
        await stream.aclose() if hasattr(stream, "aclose") else None
        del stream
        gc.collect()
    (call,) = sink.calls
    assert call.stream
    assert call.error is None


def test_a_sync_stream_is_recorded_at_its_end(server: OpenAIServer) -> None:
    sink = Records()
    with bind_completion("openai/m", api_base=server.base_url, api_key="k") as chat:
        stream = with_metrics(chat, sink)(messages=MESSAGES, stream=True, stream_options=USAGE)
        assert sink.calls == []
        assert "".join(responses.text_deltas(stream)) == server.reply_text
    (call,) = sink.calls
    assert call.completion_tokens == _reply_tokens(server)
    assert call.usage_reported


async def test_logging_writes_the_streams_tokens_at_its_end(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k") as chat:
        logged = with_logging(chat)
        with caplog.at_level(logging.INFO, logger="fixedmodel"):
            stream = await logged(messages=MESSAGES, stream=True, stream_options=USAGE)
            assert [r for r in caplog.records if hasattr(r, "fixedmodel_call")] == []
            async for _chunk in stream:
                pass
            unreported = await logged(messages=MESSAGES, stream=True)
            async for _chunk in unreported:
                pass
    first, second = [r for r in caplog.records if hasattr(r, "fixedmodel_call")]
    assert f"completion_tokens={_reply_tokens(server)}" in first.getMessage()
    assert "stream=True" in first.getMessage()
    assert "completion_tokens=unknown" in second.getMessage()


async def test_a_plain_call_keeps_its_record_at_return(server: OpenAIServer) -> None:
    sink = Records()
    async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k") as chat:
        await with_metrics(chat, sink)(messages=MESSAGES)
    (call,) = sink.calls
    assert not call.stream
    assert call.usage_reported
    assert call.time_to_first_chunk is None
    assert call.completion_tokens == _reply_tokens(server)
