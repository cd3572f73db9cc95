"""Observers never change a call: a span processor, meter, metrics sink or stream watcher
that raises is logged (once per kind), and the caller gets the call's own result or error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fixedmodel import _faults, responses, with_logging, with_metrics, with_tracing
from fixedmodel._streams import watch_stream
from fixedmodel.testing import Fail, FakeACompletion, FakeAEmbedding, FakeCompletion, FakeEmbedding

MESSAGES = [{"role": "user", "content": "Hi"}]


class Broken(Exception):
    """What a faulty observer raises."""


class FailingProcessor(SpanProcessor):
    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.where == "start":
            raise Broken("on_start")

    def on_end(self, span: Any) -> None:
        if self.where == "end":
            raise Broken("on_end")


class FailingHistogram:
    def record(self, *args: Any, **kwargs: Any) -> None:
        raise Broken("record")


class FailingMeter:
    def create_histogram(self, *args: Any, **kwargs: Any) -> FailingHistogram:
        return FailingHistogram()


class FailingMeterProvider:
    def get_meter(self, *args: Any, **kwargs: Any) -> FailingMeter:
        return FailingMeter()


class UnbuildableMeter:
    def create_histogram(self, *args: Any, **kwargs: Any) -> FailingHistogram:
        raise Broken("create_histogram")


class UnbuildableMeterProvider:
    def get_meter(self, *args: Any, **kwargs: Any) -> UnbuildableMeter:
        return UnbuildableMeter()


class FailingSink:
    def __init__(self) -> None:
        self.calls = 0

    def record(self, call: object) -> None:
        self.calls += 1
        raise Broken("sink")


@pytest.fixture(autouse=True)
def fresh_fault_log() -> Iterator[None]:
    _faults._seen.clear()  # pyright: ignore[reportPrivateUsage]
    yield
    _faults._seen.clear()  # pyright: ignore[reportPrivateUsage]


def _fault_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.levelno == logging.WARNING and "failed" in r.getMessage()
    ]


def _fake(kind: str, asynchronous: bool, entry: Any = None) -> Any:
    """A fake that gives ``entry`` (or a good answer) to every call."""
    if kind == "completion":
        reply = "one two" if entry is None else entry
        chat_class: Any = FakeACompletion if asynchronous else FakeCompletion
        return chat_class(lambda _call: reply, model="openai/m")
    vector = [0.1, 0.2] if entry is None else entry
    embed_class: Any = FakeAEmbedding if asynchronous else FakeEmbedding
    return embed_class(lambda _call: vector, model="openai/e")


def _call(fn: Any, kind: str, asynchronous: bool, **extra: Any) -> Any:
    arguments: dict[str, Any] = {"messages": MESSAGES} if kind == "completion" else {"input": ["a"]}
    arguments.update(extra)
    if asynchronous:
        return asyncio.run(fn(**arguments))
    return fn(**arguments)


def _read_stream(stream: Any, asynchronous: bool) -> list[str]:
    if asynchronous:

        async def read() -> list[str]:
            return [piece async for piece in responses.atext_deltas(stream)]

        return asyncio.run(read())
    return list(responses.text_deltas(stream))


def _tracer(where: str) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(FailingProcessor(where))
    return provider


KINDS = [("completion", False), ("completion", True), ("embedding", False), ("embedding", True)]
IDS = ["completion-sync", "completion-async", "embedding-sync", "embedding-async"]


@pytest.mark.parametrize("where", ["start", "end"])
@pytest.mark.parametrize(("kind", "asynchronous"), KINDS, ids=IDS)
def test_a_failing_span_processor_does_not_change_the_answer(
    kind: str, asynchronous: bool, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    fn = with_tracing(
        _fake(kind, asynchronous), tracer_provider=_tracer(where), meter_provider=MeterProvider()
    )
    with caplog.at_level(logging.WARNING, "fixedmodel"):
        first = _call(fn, kind, asynchronous)
        _call(fn, kind, asynchronous)
    if kind == "completion":
        assert responses.text(first) == "one two"
    else:
        assert len(first.data) == 1
    assert len(_fault_warnings(caplog)) == 1  # Once per kind of fault, not once per call.


@pytest.mark.parametrize("where", ["start", "end"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_failing_span_processor_does_not_break_a_stream(
    asynchronous: bool, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    fn = with_tracing(
        _fake("completion", asynchronous),
        tracer_provider=_tracer(where),
        meter_provider=MeterProvider(),
    )
    with caplog.at_level(logging.WARNING, "fixedmodel"):
        stream = _call(fn, "completion", asynchronous, stream=True)
        assert _read_stream(stream, asynchronous) == ["one", " two"]
    assert _fault_warnings(caplog)


@pytest.mark.parametrize("where", ["start", "end"])
@pytest.mark.parametrize(("kind", "asynchronous"), KINDS, ids=IDS)
def test_a_failing_span_processor_keeps_the_calls_own_error(
    kind: str, asynchronous: bool, where: str
) -> None:
    fn = with_tracing(
        _fake(kind, asynchronous, Fail(500)),
        tracer_provider=_tracer(where),
        meter_provider=MeterProvider(),
    )
    with pytest.raises(Exception) as caught:
        _call(fn, kind, asynchronous)
    assert not isinstance(caught.value, Broken)
    assert getattr(caught.value, "status_code", None) == 500


@pytest.mark.parametrize(("kind", "asynchronous"), KINDS, ids=IDS)
def test_a_failing_meter_does_not_change_the_answer(
    kind: str, asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    fn = with_tracing(
        _fake(kind, asynchronous),
        tracer_provider=TracerProvider(),
        meter_provider=FailingMeterProvider(),  # type: ignore[arg-type]  # a duck-typed fake
    )
    with caplog.at_level(logging.WARNING, "fixedmodel"):
        _call(fn, kind, asynchronous)
        _call(fn, kind, asynchronous)
    assert len(_fault_warnings(caplog)) == 1


def test_a_meter_that_cannot_make_histograms_leaves_spans_working() -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    fn = with_tracing(
        _fake("completion", False),
        tracer_provider=tracer_provider,
        meter_provider=UnbuildableMeterProvider(),  # type: ignore[arg-type]  # a duck-typed fake
    )
    assert responses.text(_call(fn, "completion", False)) == "one two"
    assert len(spans.get_finished_spans()) == 1


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_failing_meter_does_not_break_a_stream(asynchronous: bool) -> None:
    fn = with_tracing(
        _fake("completion", asynchronous),
        tracer_provider=TracerProvider(),
        meter_provider=FailingMeterProvider(),  # type: ignore[arg-type]  # a duck-typed fake
    )
    stream = _call(
        fn, "completion", asynchronous, stream=True, stream_options={"include_usage": True}
    )
    assert _read_stream(stream, asynchronous) == ["one", " two"]


@pytest.mark.parametrize(("kind", "asynchronous"), KINDS, ids=IDS)
def test_a_failing_metrics_sink_is_logged_once_per_kind(
    kind: str, asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FailingSink()
    fn = with_metrics(_fake(kind, asynchronous), sink)
    with caplog.at_level(logging.WARNING, "fixedmodel"):
        for _ in range(3):
            _call(fn, kind, asynchronous)
    assert sink.calls == 3
    assert len(_fault_warnings(caplog)) == 1


def test_a_failing_metrics_sink_keeps_the_calls_own_error() -> None:
    fn = with_metrics(_fake("completion", False, Fail(503)), FailingSink())
    with pytest.raises(Exception) as caught:
        _call(fn, "completion", False)
    assert getattr(caught.value, "status_code", None) == 503


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_failing_metrics_sink_does_not_break_a_stream(asynchronous: bool) -> None:
    fn = with_metrics(_fake("completion", asynchronous), FailingSink())
    stream = _call(fn, "completion", asynchronous, stream=True)
    assert _read_stream(stream, asynchronous) == ["one", " two"]


class RaisingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        raise Broken("filter")


def test_a_logger_that_raises_does_not_change_the_answer() -> None:
    logger = logging.getLogger("tests.observer_faults.raising")
    logger.addFilter(RaisingFilter())
    try:
        fn = with_logging(_fake("completion", False), logger=logger)
        assert responses.text(_call(fn, "completion", False)) == "one two"
    finally:
        logger.filters.clear()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_failing_stream_watcher_does_not_break_the_stream_nor_other_watchers(
    asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    fn = _fake("completion", asynchronous)
    stream = _call(fn, "completion", asynchronous, stream=True)
    told: list[bool] = []

    def failing(_end: object) -> None:
        raise Broken("watcher")

    watch_stream(stream, failing)
    watch_stream(stream, lambda end: told.append(end.completed))
    with caplog.at_level(logging.WARNING, "fixedmodel"):
        assert _read_stream(stream, asynchronous) == ["one", " two"]
    assert told == [True]
    assert _fault_warnings(caplog)
