"""with_tracing: spans and metrics by the OpenTelemetry GenAI conventions (SDK in memory)."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from fixedmodel import (
    RetryPolicy,
    bind_acompletion,
    bind_completion,
    responses,
    with_cache,
    with_retries,
    with_tracing,
)
from fixedmodel.testing import Fail, FakeACompletion, FakeAEmbedding, FakeToolCall, FakeUsage, Reply
from fixedmodel.testing.server import Fault, OpenAIServer

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
SECRET = "sk-this-key-must-never-show-1234"


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict[str, Any], float, int]]:
        """(attributes, sum, count) of every data point of histogram ``name``."""
        found: list[tuple[dict[str, Any], float, int]] = []
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            found.append((dict(point.attributes or {}), point.sum, point.count))
        return found

    def everything_recorded(self) -> str:
        spans = [
            json.dumps(
                {
                    "name": s.name,
                    "attributes": dict(s.attributes or {}),
                    "events": [dict(e.attributes or {}) for e in s.events],
                    "status": str(s.status.description),
                },
                default=str,
            )
            for s in self.finished()
        ]
        data = self.metrics.get_metrics_data()
        return "\n".join(spans) + (data.to_json() if data else "")


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()


def traced(fn: Any, otel: Telemetry, **options: Any) -> Any:
    return with_tracing(
        fn, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, **options
    )


async def test_a_chat_call_makes_one_client_span_with_the_conventions_attributes(
    otel: Telemetry,
) -> None:
    fake = FakeACompletion(
        [Reply(text="Paris.", usage=FakeUsage(12, 3))], model="openai/gpt-4o-mini"
    )
    chat = traced(fake, otel)
    await chat(messages=MESSAGES, temperature=0.2, max_tokens=50, seed=7, stop=["\n"], top_p=0.9)
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert span.name == "chat openai/gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "openai/gpt-4o-mini"
    assert attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.request.seed"] == 7
    assert attributes["gen_ai.request.top_p"] == 0.9
    assert attributes["gen_ai.request.stop_sequences"] == ("\n",)
    assert attributes["gen_ai.response.model"] == "openai/gpt-4o-mini"
    assert str(attributes["gen_ai.response.id"]).startswith("chatcmpl-")
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] == 12
    assert attributes["gen_ai.usage.output_tokens"] == 3
    assert attributes["fixedmodel.attempts"] == 1
    assert attributes["fixedmodel.cache_hit"] is False
    assert "gen_ai.input.messages" not in attributes  # content is off by default
    tokens = {p[0]["gen_ai.token.type"]: p[1] for p in otel.points("gen_ai.client.token.usage")}
    assert tokens == {"input": 12, "output": 3}
    ((duration_attributes, _, count),) = otel.points("gen_ai.client.operation.duration")
    assert count == 1
    assert duration_attributes["gen_ai.operation.name"] == "chat"
    assert duration_attributes["gen_ai.provider.name"] == "openai"
    assert otel.points("gen_ai.client.operation.time_to_first_chunk") == []


async def test_a_stream_span_ends_after_the_last_chunk_with_time_to_first_chunk(
    otel: Telemetry,
) -> None:
    fake = FakeACompletion([Reply(text="one two", usage=FakeUsage(5, 2))], model="openai/m")
    chat = traced(fake, otel)
    stream = await chat(messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    assert otel.finished() == []  # not over yet
    assert [piece async for piece in responses.atext_deltas(stream)] == ["one", " two"]
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.usage.output_tokens"] == 2
    assert attributes["gen_ai.response.time_to_first_chunk"] >= 0
    ((_, _, count),) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert count == 1


async def test_an_abandoned_stream_still_ends_its_span(otel: Telemetry) -> None:
    chat = traced(bind_acompletion("openai/gpt-4o-mini", mock_response="a b c d e"), otel)
    stream = await chat(messages=MESSAGES, stream=True)
    await anext(aiter(stream))
    await stream.aclose()
    del stream
    gc.collect()
    (span,) = otel.finished()
    assert [event.name for event in span.events] == ["fixedmodel.stream.abandoned"]


def test_embeddings_span(otel: Telemetry) -> None:
    import asyncio

    embed = traced(FakeAEmbedding([[0.1, 0.2]], model="openai/text-embedding-3-small"), otel)
    asyncio.run(embed(input=["a b", "c"], dimensions=2, encoding_format="float"))
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert span.name == "embeddings openai/text-embedding-3-small"
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.embeddings.dimension.count"] == 2
    assert attributes["gen_ai.request.encoding_formats"] == ("float",)
    assert attributes["gen_ai.usage.input_tokens"] == 3
    assert "gen_ai.usage.output_tokens" not in attributes


@pytest.mark.parametrize(
    ("status", "error"), [(429, "RateLimitError"), (401, "AuthenticationError")]
)
async def test_errors_set_error_type_and_an_error_status(
    otel: Telemetry, status: int, error: str
) -> None:
    chat = traced(FakeACompletion([Fail(status)], model="anthropic/claude"), otel)
    with pytest.raises(litellm.RateLimitError if status == 429 else litellm.AuthenticationError):
        await chat(messages=MESSAGES)
    (span,) = otel.finished()
    assert dict(span.attributes or {})["error.type"] == error
    assert span.status.status_code is StatusCode.ERROR
    assert str(status) in str(span.status.description)
    ((attributes, _, _),) = otel.points("gen_ai.client.operation.duration")
    assert attributes["error.type"] == error
    assert attributes["gen_ai.provider.name"] == "anthropic"
    # The exception event the API's use_span would record, with the error's class.
    (event,) = span.events
    assert event.name == "exception"
    assert str(dict(event.attributes or {})["exception.type"]).endswith(error)


async def test_a_cancelled_call_ends_its_span_without_an_exception_event(otel: Telemetry) -> None:
    async def slow(**kwargs: Any) -> Any:
        await asyncio.sleep(5)

    chat = traced(slow, otel)
    task = asyncio.create_task(chat(messages=MESSAGES))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (span,) = otel.finished()
    assert dict(span.attributes or {})["error.type"] == "CancelledError"
    assert span.events == ()


_GLOBAL_PROVIDERS_SCRIPT = """
import asyncio, json
from opentelemetry import context, metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from fixedmodel import with_tracing
from fixedmodel.middleware import tracing as layer
from fixedmodel.testing import FakeACompletion

seen, built = [], []
original = layer.request_attributes

def counted(*args):
    built.append(1)
    return original(*args)

layer.request_attributes = counted

async def fake(**kwargs):
    seen.append(trace.get_current_span().get_span_context().is_valid)
    return await inner(**kwargs)

inner = FakeACompletion(["one", "two", "three"], model="openai/m")
chat = with_tracing(fake)

async def main():
    report = {}
    await chat(messages=[{"role": "user", "content": "before"}])
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    report["built before"] = len(built)
    await chat(messages=[{"role": "user", "content": "tracer set"}])
    report["spans after tracer"] = len(spans.get_finished_spans())
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    await chat(messages=[{"role": "user", "content": "both set"}])
    report["spans after both"] = len(spans.get_finished_spans())
    data = reader.get_metrics_data()
    report["metrics"] = sorted(
        m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
    )
    report["inside a span"] = seen
    print(json.dumps(report))

asyncio.run(main())
"""


_SUBCLASSED_PROVIDER_SCRIPT = """
import asyncio, json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from fixedmodel import with_tracing
from fixedmodel.testing import FakeACompletion

spans = InMemorySpanExporter()
real = TracerProvider()
real.add_span_processor(SimpleSpanProcessor(spans))

class Capturing(trace.NoOpTracerProvider):  # a test double that records after all
    def get_tracer(self, *args, **kwargs):
        return real.get_tracer(*args, **kwargs)

trace.set_tracer_provider(Capturing())
chat = with_tracing(FakeACompletion(["one"], model="openai/m"))
asyncio.run(chat(messages=[{"role": "user", "content": "hi"}]))
print(json.dumps([span.name for span in spans.get_finished_spans()]))
"""


def _run_script(script: str) -> str:
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_global_provider_subclassing_a_no_op_class_is_traced() -> None:
    """Only the API's own proxy and no-op classes count as "nothing configured"."""
    assert json.loads(_run_script(_SUBCLASSED_PROVIDER_SCRIPT)) == ["chat openai/m"]


def test_without_global_providers_nothing_is_built_and_setting_them_later_is_seen() -> None:
    """Until an SDK sets a global provider, calls skip the layer's work; the next call after
    one is set is traced (the providers are global and set once: a process of its own)."""
    report = json.loads(_run_script(_GLOBAL_PROVIDERS_SCRIPT))
    assert report["built before"] == 0  # no attribute built while nothing would record
    assert report["spans after tracer"] == 1  # a tracer alone is enough to trace
    assert report["spans after both"] == 2
    assert "gen_ai.client.operation.duration" in report["metrics"]
    # Before any provider: no span made current; after: the call ran inside its span.
    assert report["inside a span"] == [False, True, True]


async def test_retries_and_cache_hits_show_on_the_span(otel: Telemetry) -> None:
    fake = FakeACompletion([Fail(503), "ok"], model="openai/m")
    quick = RetryPolicy(initial_wait=0.001, max_wait=0.001, jitter=0.0)
    chat = traced(with_cache(with_retries(fake, quick)), otel)
    await chat(messages=MESSAGES)
    await chat(messages=MESSAGES)
    calls = [span for span in otel.finished() if span.parent is None]  # not the attempts
    first, second = (dict(span.attributes or {}) for span in calls)
    assert (first["fixedmodel.attempts"], first["fixedmodel.cache_hit"]) == (2, False)
    assert (second["fixedmodel.attempts"], second["fixedmodel.cache_hit"]) == (0, True)


async def test_content_only_when_asked_and_never_a_credential(otel: Telemetry) -> None:
    leaky = [{"role": "user", "content": f"my key is {SECRET}, what is 2+2?"}]
    fake = FakeACompletion(["4", "4"], model="openai/m", api_key=SECRET)
    await traced(fake, otel)(messages=leaky, extra_headers={"Authorization": f"Bearer {SECRET}"})
    await traced(fake, otel, capture_content=True)(messages=leaky)
    plain, captured = (dict(span.attributes or {}) for span in otel.finished())
    assert "gen_ai.input.messages" not in plain
    inputs = json.loads(str(captured["gen_ai.input.messages"]))
    assert inputs == [
        {
            "role": "user",
            "parts": [{"type": "text", "content": "my key is [REDACTED], what is 2+2?"}],
        }
    ]
    outputs = json.loads(str(captured["gen_ai.output.messages"]))
    assert outputs[0]["parts"] == [{"type": "text", "content": "4"}]
    assert SECRET not in otel.everything_recorded()


def test_over_http_the_server_address_is_recorded(
    otel: Telemetry, openai_server: OpenAIServer
) -> None:
    bound = bind_completion("openai/test", api_base=openai_server.base_url, api_key=SECRET)
    with bound:
        traced(bound, otel)(messages=MESSAGES)
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == openai_server.port
    assert SECRET not in otel.everything_recorded()


async def test_a_stream_cut_midway_records_its_error_like_a_failed_call(
    otel: Telemetry, openai_server: OpenAIServer
) -> None:
    openai_server.enqueue(Fault.truncated_stream(2))
    bound = bind_acompletion(
        "openai/test", api_base=openai_server.base_url, api_key=SECRET, max_retries=0
    )
    async with bound:
        stream = await traced(bound, otel)(messages=MESSAGES, stream=True)
        with pytest.raises(Exception) as raised:
            async for _ in stream:
                pass
    (span,) = otel.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == type(raised.value).__qualname__
    (event,) = span.events
    assert event.name == "exception"


def test_a_bad_option_is_refused_at_wrap_time() -> None:
    with pytest.raises(TypeError, match="capture_content"):
        with_tracing(FakeACompletion(), capture_content="yes")  # type: ignore[call-overload]


def test_without_the_otel_extra_only_with_tracing_fails_and_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"fixedmodel\[otel\]"):
        with_tracing(FakeACompletion())
    chat = with_retries(FakeACompletion(["still fine"]))
    assert chat is not None


async def test_a_stream_dropped_unread_is_collected_and_ends_its_span(otel: Telemetry) -> None:
    import weakref

    chat = traced(bind_acompletion("openai/gpt-4o-mini", mock_response="a b c d e"), otel)
    stream = await chat(messages=MESSAGES, stream=True)
    await anext(aiter(stream))
    alive = weakref.ref(stream)
    del stream
    await asyncio.sleep(0)  # the loop drops its own last reference (a finished future's)
    gc.collect()
    assert alive() is None  # the layer keeps no reference to the stream
    (span,) = otel.finished()
    assert [event.name for event in span.events] == ["fixedmodel.stream.abandoned"]


async def test_redaction_keeps_the_structure_and_short_placeholders_alone(
    otel: Telemetry,
) -> None:
    token = "tok-0123456789abcdef"
    fake = FakeACompletion(["unused words stay"], model="openai/m", api_key="unused")
    chat = traced(fake, otel, capture_content=True)
    await chat(
        messages=[{"role": "user", "content": f"an assistant said {token}"}],
        extra_headers={"Authorization": f"Bearer {token}"},
    )
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    inputs = json.loads(str(attributes["gen_ai.input.messages"]))
    assert inputs == [
        {"role": "user", "parts": [{"type": "text", "content": "an assistant said [REDACTED]"}]}
    ]
    outputs = json.loads(str(attributes["gen_ai.output.messages"]))
    assert outputs[0]["role"] == "assistant"
    assert outputs[0]["parts"] == [{"type": "text", "content": "unused words stay"}]
    assert token not in otel.everything_recorded()


async def test_captured_input_keeps_tool_calls_and_tool_results(otel: Telemetry) -> None:
    fake = FakeACompletion(
        [Reply(tool_calls=[FakeToolCall("weather", {"city": "Oslo"}, id="c1")]), "sunny it is"]
    )
    chat = traced(fake, otel, capture_content=True)
    first = await chat(messages=MESSAGES)
    history = [
        *MESSAGES,
        first.choices[0].message,
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    await chat(messages=history)
    spans = otel.finished()
    called = json.loads(str(dict(spans[0].attributes or {})["gen_ai.output.messages"]))
    assert called[0]["parts"] == [
        {"type": "tool_call", "id": "c1", "name": "weather", "arguments": '{"city": "Oslo"}'}
    ]
    inputs = json.loads(str(dict(spans[1].attributes or {})["gen_ai.input.messages"]))
    assert inputs[1]["role"] == "assistant"
    assert inputs[1]["parts"][-1]["type"] == "tool_call"
    assert inputs[1]["parts"][-1]["id"] == "c1"
    assert inputs[2] == {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": "c1", "response": "sunny"}],
    }


async def test_captured_embedding_input_keeps_its_texts(otel: Telemetry) -> None:
    embed = traced(FakeAEmbedding([[0.1]]), otel, capture_content=True)
    await embed(input=["hello", "world"])
    (span,) = otel.finished()
    inputs = json.loads(str(dict(span.attributes or {})["gen_ai.input.messages"]))
    assert inputs == [
        {
            "role": "user",
            "parts": [{"type": "text", "content": "hello"}, {"type": "text", "content": "world"}],
        }
    ]
