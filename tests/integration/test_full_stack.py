"""The whole canonical stack over real HTTP: load with injected faults, and secrets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from fixedmodel import (
    CallRecord,
    DiskCacheStore,
    InMemoryMetrics,
    MemoryCacheStore,
    ModelResponse,
    RateLimit,
    RateLimiter,
    RetryPolicy,
    bind_acompletion,
    responses,
    with_cache,
    with_logging,
    with_metrics,
    with_rate_limit,
    with_retries,
)
from fixedmodel._litellm import litellm_module
from tests.support.openai_server import Fault, OpenAIServer

SECRET = "sk-SECRET-full-stack-7f3a9c"
FAST_RETRIES = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.05)


class ListSink:
    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record(self, call: CallRecord) -> None:
        self.records.append(call)


@pytest.mark.heavy  # Seconds of fixedmodel's own logic; run at the newest litellm only.
async def test_500_concurrent_calls_with_20_percent_faults_all_end_properly(
    server: OpenAIServer,
) -> None:
    server.random_faults(rate=0.2, statuses=(429, 503), seed=7)
    metrics = InMemoryMetrics()
    limiter = RateLimiter(RateLimit(requests=100_000, period=1.0))
    async with bind_acompletion("openai/load", api_base=server.base_url, api_key="k") as bound:
        chat = with_logging(
            with_metrics(
                with_cache(with_retries(with_rate_limit(bound, limiter), FAST_RETRIES)),
                metrics,
            )
        )

        async def one(i: int) -> ModelResponse | Exception:
            try:
                return await chat(messages=[{"role": "user", "content": f"question {i}"}])
            except Exception as exc:  # the outcome under test
                return exc

        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(500))), 120)
    litellm = litellm_module()
    failures = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, (ModelResponse, Exception)) for r in results)
    for failure in failures:
        assert isinstance(failure, (litellm.RateLimitError, litellm.ServiceUnavailableError))
        assert any("after 3 attempts" in note for note in getattr(failure, "__notes__", []))
    successes = [r for r in results if isinstance(r, ModelResponse)]
    assert all(responses.text(r) == server.reply_text for r in successes)
    # With 20 % faults and 3 attempts about 0.8 % of calls exhaust their attempts.
    assert len(successes) >= 480
    assert server.request_count() <= 500 * 3
    assert metrics.summary().calls == 500
    assert metrics.summary().errors == len(failures)
    assert metrics.summary().retries == server.request_count() - 500
    # litellm keeps one long-lived logging worker task per loop; anything else is a leak.
    pending = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and "LoggingWorker" not in getattr(task.get_coro(), "__qualname__", "")
    ]
    assert pending == []


async def test_secret_appears_nowhere_but_on_the_wire(
    server: OpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sink = ListSink()
    store = DiskCacheStore(tmp_path / "cache")
    limiter = RateLimiter(RateLimit(requests=1000, tokens=1_000_000, period=1.0))
    raised: list[BaseException] = []
    async with bind_acompletion(
        "openai/secret-test", api_base=server.base_url, api_key=SECRET
    ) as bound:
        stack = [bound]
        chat = with_rate_limit(bound, limiter)
        stack.append(chat)
        chat = with_retries(chat, FAST_RETRIES)
        stack.append(chat)
        chat = with_cache(chat, store)
        stack.append(chat)
        chat = with_logging(with_metrics(chat, sink))
        stack.append(chat)

        messages = [{"role": "user", "content": "tell me"}]
        await chat(messages=messages)
        await chat(messages=messages)  # a cache hit
        server.enqueue(Fault.status(401))
        server.enqueue(*[Fault.status(503)] * 3)
        for _ in range(2):
            try:
                await chat(messages=[{"role": "user", "content": f"fails {len(raised)}"}])
            except Exception as exc:  # the failures under test
                raised.append(exc)
        try:
            await chat(messages=messages, model="openai/other")  # type: ignore[call-overload]  # misuse
        except TypeError as exc:
            raised.append(exc)

    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert len(raised) == 3
    texts = [str(exc) + " ".join(getattr(exc, "__notes__", [])) for exc in raised]
    texts += [repr(layer) for layer in stack]
    texts += [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    texts += [repr(record) for record in sink.records]
    assert caplog.records and sink.records
    for text in texts:
        assert SECRET not in text
    files = [path for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    assert files
    for path in files:
        assert SECRET.encode() not in path.read_bytes()
    assert [record.cache_hit for record in sink.records][:2] == [False, True]
    store.close()


async def test_memory_cache_hit_in_the_full_stack_costs_no_request(server: OpenAIServer) -> None:
    sink = ListSink()
    async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k") as bound:
        chat = with_metrics(with_cache(with_retries(bound), MemoryCacheStore()), sink)
        first = await chat(messages=[{"role": "user", "content": "same"}])
        second = await chat(messages=[{"role": "user", "content": "same"}])
    assert server.request_count() == 1
    assert responses.text(first) == responses.text(second)
    assert [(r.cache_hit, r.attempts) for r in sink.records] == [(False, 1), (True, 0)]
