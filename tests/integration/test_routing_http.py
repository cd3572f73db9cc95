"""Routing over real HTTP: litellm talking to one loopback server per deployment.

Every test counts requests at the servers: a fallback or a cooldown that works only in the
wrapper's bookkeeping, and not on the wire, fails here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import litellm
import pytest

from fixedmodel import (
    Budget,
    CallRecord,
    CooldownPolicy,
    MemoryCacheStore,
    MemoryLimiterStore,
    RateLimit,
    RateLimiter,
    RetryPolicy,
    bind_acompletion,
    bind_completion,
    fallback_causes,
    responses,
    with_budget,
    with_cache,
    with_fallbacks,
    with_load_balancing,
    with_metrics,
    with_rate_limit,
    with_retries,
)
from fixedmodel.middleware._call import call_scope
from fixedmodel.stores import Acquisition
from tests.support.openai_server import Fault, OpenAIServer

MESSAGES = [{"role": "user", "content": "Hello there?"}]
MODEL = "openai/gpt-4o-mini"  # Priced by litellm; served by the loopback servers.
QUICK = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.02)


@pytest.fixture
def servers() -> Iterator[list[OpenAIServer]]:
    """Three loopback servers: one per deployment or callable."""
    started = [OpenAIServer().start() for _ in range(3)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def _chat(server: OpenAIServer, model: str = MODEL) -> litellm.Any:
    return bind_acompletion(model, api_base=server.base_url, api_key="sk-test")


# Fallbacks


async def test_primary_503_is_served_by_the_fallback_with_one_request_each(
    servers: list[OpenAIServer],
) -> None:
    primary, backup, _ = servers
    primary.enqueue(Fault.status(503))
    async with _chat(primary) as first, _chat(backup, "openai/gpt-4o") as second:
        with call_scope() as info:
            response = await with_fallbacks(first, second)(messages=MESSAGES)
    assert responses.text(response) == backup.reply_text
    assert primary.request_count() == 1
    assert backup.request_count() == 1
    assert backup.requests[0].body["messages"] == MESSAGES
    assert info.served_by == "openai/gpt-4o#1"
    assert info.route_failures == (("openai/gpt-4o-mini#0", "ServiceUnavailableError"),)


async def test_retries_under_the_primary_run_as_configured_before_the_fallback(
    servers: list[OpenAIServer],
) -> None:
    primary, backup, _ = servers
    primary.enqueue(Fault.status(503), Fault.status(503), Fault.status(503))
    async with _chat(primary) as first, _chat(backup) as second:
        chat = with_fallbacks(with_retries(first, QUICK), second)
        response = await chat(messages=MESSAGES)
    assert responses.text(response) == backup.reply_text
    assert primary.request_count() == 3
    assert backup.request_count() == 1


async def test_a_400_is_raised_and_the_fallback_server_is_untouched(
    servers: list[OpenAIServer],
) -> None:
    primary, backup, _ = servers
    primary.enqueue(Fault.status(400))
    async with _chat(primary) as first, _chat(backup) as second:
        with pytest.raises(litellm.BadRequestError):
            await with_fallbacks(first, second)(messages=MESSAGES)
    assert primary.request_count() == 1
    assert backup.request_count() == 0


async def test_a_stream_whose_primary_429s_is_served_by_the_fallback(
    servers: list[OpenAIServer],
) -> None:
    primary, backup, _ = servers
    primary.enqueue(Fault.status(429, retry_after=5))
    async with _chat(primary) as first, _chat(backup) as second:
        stream = await with_fallbacks(first, second)(messages=MESSAGES, stream=True)
        text = "".join([piece async for piece in responses.atext_deltas(stream)])
    assert text == backup.reply_text
    assert primary.request_count() == 1
    assert backup.request_count() == 1


async def test_when_all_fail_the_raised_error_carries_every_cause(
    servers: list[OpenAIServer],
) -> None:
    for server, status in zip(servers, (503, 429, 500), strict=True):
        server.enqueue(Fault.status(status))
    async with _chat(servers[0]) as a, _chat(servers[1]) as b, _chat(servers[2]) as c:
        with pytest.raises(litellm.InternalServerError) as raised:
            await with_fallbacks(a, b, c)(messages=MESSAGES)
    causes = fallback_causes(raised.value)
    assert [type(cause) for cause in causes] == [
        litellm.ServiceUnavailableError,
        litellm.RateLimitError,
        litellm.InternalServerError,
    ]
    assert [s.request_count() for s in servers] == [1, 1, 1]


# Load balancing


async def test_round_robin_spreads_300_calls_evenly(servers: list[OpenAIServer]) -> None:
    async with _chat(servers[0]) as a, _chat(servers[1]) as b, _chat(servers[2]) as c:
        chat = with_load_balancing([a, b, c], strategy="round_robin")
        for _ in range(10):
            await asyncio.gather(*(chat(messages=MESSAGES) for _ in range(30)))
    for server in servers:
        assert 90 <= server.request_count() <= 110


async def test_least_busy_sends_fewer_calls_to_a_slow_deployment(
    servers: list[OpenAIServer],
) -> None:
    slow, fast, _ = servers
    slow.latency = 0.2
    async with _chat(slow) as a, _chat(fast) as b:
        chat = with_load_balancing({"slow": a, "fast": b}, strategy="least_busy")

        async def worker() -> None:
            for _ in range(6):
                await chat(messages=MESSAGES)

        await asyncio.gather(*(worker() for _ in range(8)))
    assert slow.request_count() + fast.request_count() == 48
    assert slow.request_count() * 2 < fast.request_count()


def test_a_failing_deployment_cools_down_then_gets_one_probe(
    servers: list[OpenAIServer],
) -> None:
    failing, healthy, _ = servers
    policy = CooldownPolicy(failures=2, cooldown=0.5)
    with (
        bind_completion(MODEL, api_base=failing.base_url, api_key="k") as a,
        bind_completion(MODEL, api_base=healthy.base_url, api_key="k") as b,
    ):
        chat = with_load_balancing({"failing": a, "healthy": b}, "round_robin", policy)
        failing.random_faults(rate=1.0, statuses=(503,))
        for _ in range(4):  # Two land on "failing" and fail over to "healthy".
            assert responses.text(chat(messages=MESSAGES)) == healthy.reply_text
        assert failing.request_count() == 2  # The second failure opened the circuit.
        opened = time.monotonic()
        while time.monotonic() - opened < 0.4:
            chat(messages=MESSAGES)
        assert failing.request_count() == 2  # Cooling: not one request.
        time.sleep(max(0.0, opened + 0.55 - time.monotonic()))
        for _ in range(6):  # Half-open: one probe, which fails and cools it down again.
            chat(messages=MESSAGES)
        assert failing.request_count() == 3
        reopened = time.monotonic()
        failing.clear_faults()
        time.sleep(max(0.0, reopened + 0.55 - time.monotonic()))
        for _ in range(6):  # The next probe succeeds: round-robin gives it its share again.
            chat(messages=MESSAGES)
    first_probe, second_probe = failing.requests[2], failing.requests[3]
    assert first_probe.arrived_at - opened >= 0.5 - 0.05
    assert second_probe.arrived_at - first_probe.arrived_at >= 0.5 - 0.05
    assert failing.request_count() == 3 + 3


# Budgets


def _worst_case(fn: object, **kwargs: object) -> int:
    wrapped: litellm.Any = fn
    cost, _ = wrapped._worst_case(wrapped._read(kwargs))
    return int(cost)


async def test_a_cap_of_ten_calls_refuses_the_eleventh_without_a_request(
    servers: list[OpenAIServer],
) -> None:
    server = servers[0]
    async with _chat(server) as bound:
        probe = with_budget(bound, Budget(max_cost=1.0))
        worst = _worst_case(probe, messages=MESSAGES, max_tokens=50)
        # Real cost per call, as litellm prices the server's usage.
        info = litellm.get_model_info(MODEL)
        prompt = len(MESSAGES[0]["content"].split())
        completion = len(server.reply_text.split())
        real = prompt * info["input_cost_per_token"] + completion * info["output_cost_per_token"]
        budget = Budget(max_cost=9 * real + worst / 1e9)
        chat = with_budget(bound, budget)
        for _ in range(10):
            await chat(messages=MESSAGES, max_tokens=50)
        with pytest.raises(litellm.BudgetExceededError):
            await chat(messages=MESSAGES, max_tokens=50)
    assert server.request_count() == 10
    assert budget.status().cost == pytest.approx(10 * real, rel=1e-6)


async def test_fewer_tokens_than_reserved_let_more_calls_fit(
    servers: list[OpenAIServer],
) -> None:
    server = servers[0]
    server.usage_completion_tokens = 1
    async with _chat(server) as bound:
        worst = _worst_case(
            with_budget(bound, Budget(max_cost=1.0)), messages=MESSAGES, max_tokens=400
        )
        budget = Budget(max_cost=4 * worst / 1e9)
        chat = with_budget(bound, budget)
        made = 0
        while made < 100:
            try:
                await chat(messages=MESSAGES, max_tokens=400)
            except litellm.BudgetExceededError:
                break
            made += 1
    assert made > 4  # Four worst cases would have filled it without settlement.
    assert server.request_count() == made
    assert budget.status().cost <= 4 * worst / 1e9


async def test_a_stream_is_settled_from_its_final_usage_chunk(
    servers: list[OpenAIServer],
) -> None:
    server = servers[0]
    async with _chat(server) as bound:
        budget = Budget(max_cost=1.0)
        chat = with_budget(bound, budget)
        stream = await chat(
            messages=MESSAGES, stream=True, stream_options={"include_usage": True}, max_tokens=300
        )
        reserved = budget.status()
        text = "".join([piece async for piece in responses.atext_deltas(stream)])
        await asyncio.sleep(0.01)  # The settlement is scheduled on the loop.
    assert text == server.reply_text
    settled = budget.status()
    assert settled.cost < reserved.cost
    assert settled.tokens == len(MESSAGES[0]["content"].split()) + len(server.reply_text.split())


# Composition: the canonical stack with the routing layers in place.


class RecordingStore(MemoryLimiterStore):
    """The in-process limiter store, noting the clock of every admission."""

    def __init__(self) -> None:
        self.now = time.monotonic
        super().__init__(clock=lambda: self.now())
        self.admitted: list[float] = []

    def acquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        decision = super().acquire(key, limit, tokens)
        if decision.granted:
            self.admitted.append(self.now())
        return decision


class ListSink:
    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record(self, call: CallRecord) -> None:
        self.records.append(call)


async def test_the_canonical_stack_keeps_every_contract(servers: list[OpenAIServer]) -> None:
    primary_server, second_server, backup_server = servers
    limit = RateLimit(requests=8, period=0.5)  # One quota over every deployment.
    store = RecordingStore()
    limiter = RateLimiter(limit, store=store)
    budget = Budget(max_requests=1000)
    sink = ListSink()
    primary_server.enqueue(Fault.status(503), Fault.status(503), Fault.status(503))

    async with (
        _chat(primary_server) as a,
        _chat(second_server) as b,
        _chat(backup_server, "openai/gpt-4o") as c,
    ):

        def deployment(bound: litellm.Any) -> litellm.Any:
            return with_retries(with_budget(with_rate_limit(bound, limiter), budget), QUICK)

        balanced = with_load_balancing(
            {"east": deployment(a), "west": deployment(b)}, strategy="round_robin"
        )
        chat = with_metrics(
            with_cache(with_fallbacks(balanced, deployment(c)), MemoryCacheStore()), sink
        )
        # N attempts = N requests: the first call lands on "east", which fails 3 times
        # (QUICK has 3 attempts), then "west" answers.
        first = await chat(messages=[{"role": "user", "content": "first"}])
        assert responses.text(first) == second_server.reply_text
        assert primary_server.request_count() == 3
        assert second_server.request_count() == 1
        record = sink.records[-1]
        assert record.attempts == 4
        assert record.served_by == "west"  # The innermost routing layer names it.
        assert record.deployments_tried == 2
        assert [error for _, error in record.route_failures] == ["ServiceUnavailableError"]
        # Single flight: 20 identical concurrent calls make one upstream call.
        before = sum(s.request_count() for s in servers)
        same = [{"role": "user", "content": "same question"}]
        await asyncio.gather(*(chat(messages=same) for _ in range(20)))
        assert sum(s.request_count() for s in servers) == before + 1
        # Limits never exceeded: 24 distinct concurrent calls over one shared limiter.
        await asyncio.gather(
            *(chat(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(24))
        )
    assert backup_server.request_count() == 0
    # Every request was admitted by the limiter, and no window of one period (by the
    # store's clock) admitted more than the limit.
    assert len(store.admitted) == sum(s.request_count() for s in servers)
    assert limit.requests is not None
    for start in store.admitted:
        inside = [t for t in store.admitted if start <= t < start + limit.period]
        assert len(inside) <= limit.requests
    assert budget.status().requests == sum(s.request_count() for s in servers)


async def test_a_stream_that_fails_before_its_first_chunk_falls_back(
    servers: list[OpenAIServer],
) -> None:
    primary, backup, _ = servers
    primary.enqueue(Fault.truncated_stream(chunks_before_close=0))
    async with _chat(primary) as first, _chat(backup) as second:
        with call_scope() as info:
            stream = await with_fallbacks(first, second)(messages=MESSAGES, stream=True)
        assert isinstance(stream, litellm.CustomStreamWrapper)
        text = "".join([piece async for piece in responses.atext_deltas(stream)])
    assert text == backup.reply_text  # The first chunk, read by the layer, is not lost.
    assert [s.request_count() for s in (primary, backup)] == [1, 1]
    assert info.served_by == "openai/gpt-4o-mini#1"


async def test_a_stream_that_fails_after_its_first_chunk_is_the_callers(
    servers: list[OpenAIServer],
) -> None:
    primary, backup, _ = servers
    primary.enqueue(Fault.truncated_stream(chunks_before_close=2))
    async with _chat(primary) as first, _chat(backup) as second:
        stream = await with_fallbacks(first, second)(messages=MESSAGES, stream=True)
        # litellm raises its MidStreamFallbackError (a ServiceUnavailableError) here.
        with pytest.raises(litellm.ServiceUnavailableError):
            async for _ in stream:
                pass
    assert backup.request_count() == 0


def test_a_sync_stream_that_fails_before_its_first_chunk_falls_back(
    servers: list[OpenAIServer],
) -> None:
    primary, backup, _ = servers
    primary.enqueue(Fault.truncated_stream(chunks_before_close=0))
    with (
        bind_completion(MODEL, api_base=primary.base_url, api_key="k") as first,
        bind_completion(MODEL, api_base=backup.base_url, api_key="k") as second,
    ):
        stream = with_fallbacks(first, second)(messages=MESSAGES, stream=True)
        text = "".join(responses.text_deltas(stream))
    assert text == backup.reply_text
    assert [s.request_count() for s in (primary, backup)] == [1, 1]


async def test_a_deployment_whose_stream_fails_before_its_first_chunk_is_replaced(
    servers: list[OpenAIServer],
) -> None:
    broken, healthy, _ = servers
    broken.enqueue(Fault.truncated_stream(chunks_before_close=0))
    async with _chat(broken) as a, _chat(healthy) as b:
        chat = with_load_balancing({"broken": a, "healthy": b}, strategy="round_robin")
        with call_scope() as info:
            stream = await chat(messages=MESSAGES, stream=True)
        text = "".join([piece async for piece in responses.atext_deltas(stream)])
    assert text == healthy.reply_text
    assert info.served_by == "healthy"
    assert [name for name, _ in info.route_failures] == ["broken"]
