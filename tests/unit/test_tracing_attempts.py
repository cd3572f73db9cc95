"""with_tracing: a child span per attempt of the fallback, load-balancing and retry layers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from fixedmodel import (
    RetryPolicy,
    with_fallbacks,
    with_load_balancing,
    with_retries,
    with_tracing,
)
from fixedmodel.middleware import _attempts
from fixedmodel.testing import CompletionCall, Fail, FakeACompletion, FakeAEmbedding, FakeCompletion

MESSAGES = [{"role": "user", "content": "hi"}]
QUICK = RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=0.001, jitter=0.0)


class Spans:
    def __init__(self, **options: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(**options)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def trace(self, fn: Any) -> Any:
        return with_tracing(fn, tracer_provider=self.provider)

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def call_span(self) -> ReadableSpan:
        (span,) = [s for s in self.finished() if s.parent is None]
        return span

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The spans whose parent is ``parent``, in the order they started."""
        own = parent.context.span_id if parent.context else None
        found = [s for s in self.finished() if s.parent and s.parent.span_id == own]
        return sorted(found, key=lambda s: s.start_time or 0)


@pytest.fixture
def spans() -> Iterator[Spans]:
    made = Spans()
    yield made
    made.provider.shutdown()


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def shape(span: ReadableSpan) -> tuple[str, str, str | None, Any]:
    """(name, attempt kind, error.type, attempt number or name)."""
    found = attributes(span)
    label = found.get("fixedmodel.attempt.number", found.get("fixedmodel.attempt.name"))
    return span.name, found["fixedmodel.attempt.kind"], found.get("error.type"), label


async def call(chat: Any, asynchronous: bool, **kwargs: Any) -> Any:
    if asynchronous:
        return await chat(messages=MESSAGES, **kwargs)
    return await asyncio.to_thread(chat, messages=MESSAGES, **kwargs)


@pytest.mark.parametrize("asynchronous", [True, False])
async def test_each_fallback_and_retry_is_a_child_span_and_the_call_is_named_after_the_answer(
    spans: Spans, asynchronous: bool
) -> None:
    fake: Any = FakeACompletion if asynchronous else FakeCompletion
    primary = fake([Fail(503), Fail(503), Fail(503)], model="openai/gpt-4o")
    backup = fake(["from the backup"], model="openai/gpt-4o-mini")
    chat = spans.trace(with_fallbacks(with_retries(primary, QUICK), backup))

    answer = await call(chat, asynchronous)

    assert answer.choices[0].message.content == "from the backup"
    top = spans.call_span()
    assert top.name == "chat openai/gpt-4o-mini"  # the model that answered
    assert attributes(top)["gen_ai.request.model"] == "openai/gpt-4o"  # the model asked
    fell_to_backup = spans.children(top)
    assert [shape(s) for s in fell_to_backup] == [
        ("chat openai/gpt-4o", "fallback", "ServiceUnavailableError", "openai/gpt-4o#0"),
        ("chat openai/gpt-4o-mini", "fallback", None, "openai/gpt-4o-mini#1"),
    ]
    retried = spans.children(fell_to_backup[0])  # the retries nest under their fallback
    assert [shape(s) for s in retried] == [
        ("chat openai/gpt-4o", "retry", "ServiceUnavailableError", number) for number in (1, 2, 3)
    ]
    for span in [*retried, fell_to_backup[0]]:
        assert span.status.status_code is StatusCode.ERROR
        assert "HTTP 503" in str(span.status.description)
        assert [event.name for event in span.events] == ["exception"]
    answered = fell_to_backup[1]
    assert answered.status.status_code is StatusCode.UNSET
    assert spans.children(answered) == []
    for span in [*retried, *fell_to_backup]:
        assert span.kind is SpanKind.CLIENT
        assert span.context.trace_id == top.context.trace_id
        found = attributes(span)
        assert found["gen_ai.operation.name"] == "chat"
        assert found["gen_ai.provider.name"] == "openai"
        assert span.name == f"chat {found['gen_ai.request.model']}"
        assert (span.start_time or 0) >= (top.start_time or 0)
        assert (span.end_time or 0) <= (top.end_time or 0)


@pytest.mark.parametrize("asynchronous", [True, False])
async def test_each_deployment_a_balancer_tries_is_a_child_span(
    spans: Spans, asynchronous: bool
) -> None:
    fake: Any = FakeACompletion if asynchronous else FakeCompletion
    east = fake(lambda c: Fail(503), model="azure/gpt-4o-east")
    west = fake(lambda c: "from the west", model="azure/gpt-4o-west")
    chat = spans.trace(with_load_balancing({"east": east, "west": west}, strategy="round_robin"))

    await call(chat, asynchronous)

    top = spans.call_span()
    tried = spans.children(top)  # round robin starts at the first deployment: east
    assert [shape(s) for s in tried] == [
        ("chat azure/gpt-4o-east", "deployment", "ServiceUnavailableError", "east"),
        ("chat azure/gpt-4o-west", "deployment", None, "west"),
    ]
    assert tried[0].status.status_code is StatusCode.ERROR
    assert top.name == "chat azure/gpt-4o-west"  # asked of east (the first deployment)
    assert attributes(top)["gen_ai.request.model"] == "azure/gpt-4o-east"
    assert {attributes(s)["gen_ai.provider.name"] for s in tried} == {"azure.ai.openai"}


async def test_a_retry_around_a_chain_is_named_after_the_fallback_that_answered(
    spans: Spans,
) -> None:
    primary = FakeACompletion([Fail(503)], model="openai/gpt-4o")
    backup = FakeACompletion(["ok"], model="anthropic/claude")
    chat = spans.trace(with_retries(with_fallbacks(primary, backup), QUICK))

    await chat(messages=MESSAGES)

    top = spans.call_span()
    assert top.name == "chat anthropic/claude"
    (retry,) = spans.children(top)
    assert shape(retry) == ("chat anthropic/claude", "retry", None, 1)
    assert attributes(retry)["gen_ai.request.model"] == "openai/gpt-4o"  # what it retried
    assert [shape(s) for s in spans.children(retry)] == [
        ("chat openai/gpt-4o", "fallback", "ServiceUnavailableError", "openai/gpt-4o#0"),
        ("chat anthropic/claude", "fallback", None, "anthropic/claude#1"),
    ]
    assert attributes(spans.children(retry)[1])["gen_ai.provider.name"] == "anthropic"


async def test_a_failed_call_keeps_the_name_of_the_model_asked(spans: Spans) -> None:
    primary = FakeACompletion([Fail(503)], model="openai/a")
    backup = FakeACompletion([Fail(500)], model="openai/b")
    chat = spans.trace(with_fallbacks(primary, backup))
    with pytest.raises(Exception, match=r"InternalServerError|500"):
        await chat(messages=MESSAGES)
    top = spans.call_span()
    assert top.name == "chat openai/a"
    assert top.status.status_code is StatusCode.ERROR
    assert [shape(s)[2] for s in spans.children(top)] == [
        "ServiceUnavailableError",
        "InternalServerError",
    ]


async def test_without_routing_there_is_no_child_span_and_retries_alone_make_one(
    spans: Spans,
) -> None:
    fake = FakeACompletion(["one", "two"], model="openai/m")
    await spans.trace(fake)(messages=MESSAGES)
    assert len(spans.finished()) == 1  # nothing to show beyond the call itself
    spans.exporter.clear()
    await spans.trace(with_retries(fake, QUICK))(messages=MESSAGES)
    top = spans.call_span()
    assert [shape(s) for s in spans.children(top)] == [("chat openai/m", "retry", None, 1)]


async def test_a_streamed_attempt_ends_at_the_first_chunk_boundary(spans: Spans) -> None:
    primary = FakeACompletion([Fail(503)], model="openai/a")
    backup = FakeACompletion(["streamed answer"], model="openai/b")
    chat = spans.trace(with_fallbacks(primary, backup))
    stream = await chat(messages=MESSAGES, stream=True)
    # The attempts have ended; the call's span is still open until the stream ends.
    assert [shape(s)[2] for s in spans.finished()] == ["ServiceUnavailableError", None]
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
    assert text == "streamed answer"
    assert spans.call_span().name == "chat openai/b"


async def test_nothing_is_observed_when_nothing_records() -> None:
    """No SDK (the API's proxies) or a sampler that drops the call: no attempt work."""
    seen: list[object] = []

    def answer(call: CompletionCall) -> str:
        seen.append(_attempts._observer.get())  # pyright: ignore[reportPrivateUsage]
        return "ok"

    def stack() -> Any:
        primary = FakeACompletion(lambda c: Fail(503), model="openai/a")
        return with_fallbacks(with_retries(primary, QUICK), FakeACompletion(answer, model="o/b"))

    dropped = Spans(sampler=ALWAYS_OFF)
    await dropped.trace(stack())(messages=MESSAGES)
    assert dropped.finished() == []
    if type(trace.get_tracer_provider()) is trace.ProxyTracerProvider:
        await with_tracing(stack())(messages=MESSAGES)  # the global (proxy) providers
    assert seen and all(observer is None for observer in seen)


class _FailsOnAttempts(SpanProcessor):
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if "fixedmodel.attempt.kind" in (span.attributes or {}):
            raise RuntimeError("a broken span processor")

    def on_end(self, span: ReadableSpan) -> None:
        if "fixedmodel.attempt.kind" in (span.attributes or {}):
            raise RuntimeError("a broken span processor")


async def test_a_failing_tracer_never_changes_the_call(
    spans: Spans, caplog: pytest.LogCaptureFixture
) -> None:
    spans.provider.add_span_processor(_FailsOnAttempts())
    primary = FakeACompletion([Fail(503), Fail(503), Fail(503)], model="openai/a")
    backup = FakeACompletion(["fine"], model="openai/b")
    chat = spans.trace(with_fallbacks(with_retries(primary, QUICK), backup))
    answer = await chat(messages=MESSAGES)
    assert answer.choices[0].message.content == "fine"
    assert primary.calls and len(primary.calls) == 3
    assert spans.call_span().name == "chat openai/b"


async def test_embeddings_and_a_balancer_inside_a_chain_nest_their_attempts(spans: Spans) -> None:
    one = FakeAEmbedding(lambda c: Fail(429), model="openai/text-embedding-3-small")
    two = FakeAEmbedding(lambda c: Fail(503), model="azure/text-embedding-3-small")
    spare = FakeAEmbedding(lambda c: [[0.5, 0.5]], model="cohere/embed-v4")
    balanced = with_load_balancing({"one": one, "two": two}, strategy="round_robin")
    embed = spans.trace(with_fallbacks(balanced, spare))

    await embed(input=["a text"])

    top = spans.call_span()
    assert top.name == "embeddings cohere/embed-v4"
    chain = spans.children(top)
    assert [shape(s) for s in chain] == [
        (
            "embeddings openai/text-embedding-3-small",
            "fallback",
            "ServiceUnavailableError",
            "openai/text-embedding-3-small#0",
        ),
        ("embeddings cohere/embed-v4", "fallback", None, "cohere/embed-v4#1"),
    ]
    assert [shape(s) for s in spans.children(chain[0])] == [
        ("embeddings openai/text-embedding-3-small", "deployment", "RateLimitError", "one"),
        ("embeddings azure/text-embedding-3-small", "deployment", "ServiceUnavailableError", "two"),
    ]
    assert {attributes(s)["gen_ai.operation.name"] for s in spans.finished()} == {"embeddings"}


async def test_concurrent_calls_keep_their_attempts_apart(spans: Spans) -> None:
    arrived: list[None] = []
    both = asyncio.Event()

    class Gate(FakeACompletion):
        async def __call__(self, **kwargs: Any) -> Any:
            arrived.append(None)
            if len(arrived) == 2:
                both.set()
            await both.wait()  # both calls are inside their attempts at once
            return await super().__call__(**kwargs)

    primary = FakeACompletion(lambda c: Fail(503), model="openai/a")
    backup = Gate(lambda c: "ok", model="openai/b")
    chat = spans.trace(with_fallbacks(primary, backup))

    await asyncio.gather(chat(messages=MESSAGES), chat(messages=MESSAGES))

    tops = [s for s in spans.finished() if s.parent is None]
    assert len(tops) == 2
    for top in tops:
        assert top.name == "chat openai/b"
        assert [shape(s)[2] for s in spans.children(top)] == ["ServiceUnavailableError", None]
