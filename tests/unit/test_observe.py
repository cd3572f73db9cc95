"""Logging and metrics wrappers: one record per call, aggregates, no secrets."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from fixedmodel import bind_acompletion, bind_completion, bind_embedding
from fixedmodel.middleware._call import current_call
from fixedmodel.middleware.observe import (
    CallRecord,
    InMemoryMetrics,
    default_metrics,
    with_logging,
    with_metrics,
)

MESSAGES = [{"role": "user", "content": "Hi"}]
SECRET = "sk-SECRET-observe-42"


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "fixedmodel"]


async def test_logging_emits_one_record_per_call_with_usage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fixedmodel")
    chat = with_logging(
        bind_acompletion("openai/gpt-4o-mini", mock_response="four words right here")
    )
    await chat(messages=MESSAGES)
    (record,) = _records(caplog)
    call: CallRecord = record.fixedmodel_call  # type: ignore[attr-defined]  # set through extra=
    assert record.levelno == logging.INFO
    assert call.model == "openai/gpt-4o-mini"
    assert call.kind == "completion"
    assert call.completion_tokens > 0 and call.prompt_tokens > 0
    assert call.error is None
    assert "model=openai/gpt-4o-mini" in record.getMessage()


def test_logging_reports_failures_at_warning_with_the_error_class(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fixedmodel")
    chat = with_logging(
        bind_completion(
            "openai/gpt-4o-mini", api_key=SECRET, mock_response="litellm.RateLimitError"
        )
    )
    with pytest.raises(Exception, match="RateLimit"):
        chat(messages=MESSAGES)
    (record,) = _records(caplog)
    assert record.levelno == logging.WARNING
    assert "error=RateLimitError" in record.getMessage()
    assert SECRET not in record.getMessage()
    assert SECRET not in repr(record.__dict__)


def test_metrics_aggregate_calls_tokens_errors_and_percentiles() -> None:
    sink = InMemoryMetrics()
    chat = with_metrics(bind_completion("openai/gpt-4o-mini", mock_response="a b c"), sink)
    for _ in range(5):
        chat(messages=MESSAGES)
    with pytest.raises(Exception, match="RateLimit"):
        chat(messages=MESSAGES, mock_response="litellm.RateLimitError")
    summary = sink.summary()
    assert summary.calls == 6
    assert summary.errors == 1
    assert summary.completion_tokens > 0
    assert 0 < summary.latency_p50 <= summary.latency_p90 <= summary.latency_p99
    assert summary.cache_hit_rate == 0.0
    sink.reset()
    assert sink.summary().calls == 0


def test_metrics_without_a_sink_go_to_the_process_wide_aggregator() -> None:
    before = default_metrics().summary().calls
    embed = with_metrics(bind_embedding("openai/e", mock_response=[0.1]))
    embed(input="x")
    assert default_metrics().summary().calls == before + 1


def test_latency_window_bounds_memory_but_not_counts() -> None:
    sink = InMemoryMetrics(latency_window=3)
    for latency in (5.0, 1.0, 2.0, 3.0):
        sink.record(
            CallRecord(
                model="m",
                kind="completion",
                stream=False,
                latency=latency,
                prompt_tokens=1,
                completion_tokens=1,
                cost=0.5,
                cache_hit=latency == 1.0,
                attempts=2,
                rate_limit_wait=0.0,
                error=None,
            )
        )
    summary = sink.summary()
    assert summary.calls == 4
    assert summary.cost == pytest.approx(2.0)
    assert summary.retries == 4
    assert summary.cache_hits == 1
    assert summary.latency_p99 == 3.0  # 5.0 fell out of the window


def test_call_record_is_a_frozen_dataclass_of_its_fields() -> None:
    # CallRecord writes its fields in one go (a faster __init__): it must set them all.
    values: dict[str, object] = {
        "model": "m",
        "kind": "completion",
        "stream": False,
        "latency": 0.5,
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "cost": None,
        "cache_hit": False,
        "attempts": 2,
        "rate_limit_wait": 0.0,
        "error": None,
        "usage_reported": True,
        "time_to_first_chunk": None,
        "served_by": "m#1",
        "fallbacks_tried": 1,
        "deployments_tried": 0,
        "route_failures": (("m#0", "RateLimitError"),),
    }
    record = CallRecord(**values)  # type: ignore[arg-type]  # the values are typed above
    assert [field.name for field in dataclasses.fields(CallRecord)] == list(values)
    assert dataclasses.asdict(record) == values
    assert record == CallRecord(*values.values())  # type: ignore[arg-type]  # as above
    assert hash(record) == hash(dataclasses.replace(record))
    assert dataclasses.replace(record, attempts=5).retries == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.attempts = 3  # type: ignore[misc]  # the misuse under test


async def test_stacked_observers_share_one_call_record() -> None:
    sink = InMemoryMetrics()
    seen = []

    async def probe(**kwargs: object) -> object:
        info = current_call()
        assert info is not None
        info.attempts += 1
        seen.append(info)
        return await bind_acompletion("openai/m", mock_response="x")(messages=MESSAGES)

    chat = with_logging(with_metrics(probe, sink))  # type: ignore[call-overload]  # a bare function
    await chat(messages=MESSAGES)
    assert sink.summary().calls == 1
    assert len(seen) == 1
    assert current_call() is None


def test_misconfiguration_fails_at_wrap_time() -> None:
    chat = bind_completion("openai/m")
    with pytest.raises(TypeError, match="record"):
        with_metrics(chat, object())  # type: ignore[call-overload]  # misuse under test
    with pytest.raises(TypeError, match="logging level"):
        with_logging(chat, level="INFO")  # type: ignore[call-overload]  # misuse under test
    with pytest.raises(TypeError, match="fixedmodel callable"):
        with_logging(42)  # type: ignore[call-overload]  # misuse under test
    with pytest.raises(ValueError, match="latency_window"):
        InMemoryMetrics(latency_window=0)


async def test_stream_is_recorded_when_read_to_its_end() -> None:
    sink = InMemoryMetrics()
    chat = with_metrics(bind_acompletion("openai/m", mock_response="x y"), sink)
    stream = await chat(messages=MESSAGES, stream=True)
    async for _chunk in stream:
        pass
    assert sink.summary().calls == 1
