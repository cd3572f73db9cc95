"""Rate limiting without a network: the window rule, waiting in line, tokens and 429 pauses.

Async tests run on a virtual-clock event loop (``tests/support/virtual_clock.py``) whose
clock is also the store's, so times are exact and a test of many periods takes no real
time. Thread tests use real time with short periods.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import litellm
import pytest
from litellm.types.utils import ModelResponse, Usage

from fixedmodel import bind_acompletion, bind_aembedding, bind_completion, bind_embedding
from fixedmodel._protocols import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    FixedModelCompletion,
    FixedModelEmbedding,
)
from fixedmodel.middleware._call import call_scope
from fixedmodel.middleware._tokens import estimate_tokens, used_tokens
from fixedmodel.middleware.rate_limit import Permit, RateLimit, RateLimiter, with_rate_limit
from fixedmodel.stores._limiter_store import SEGMENTS_PER_PERIOD, LimiterStore
from fixedmodel.stores.limiter_memory import MemoryLimiterStore
from tests.support.virtual_clock import VirtualClockLoop, run_virtual

MESSAGES = [{"role": "user", "content": "Hi"}]
SEGMENT = 1.0 / SEGMENTS_PER_PERIOD  # segment length for period=1.0
HOLD = 1.0 + SEGMENT  # how long an admission at a segment's start counts, for period=1.0


def limiter_on(loop: VirtualClockLoop, limit: RateLimit) -> RateLimiter:
    return RateLimiter(limit, store=MemoryLimiterStore(clock=loop.time))


def max_in_any_window(events: Sequence[tuple[float, int]], period: float) -> int:
    """Largest sum of amounts in any half-open window ``[t, t + period)``."""
    ordered = sorted(events)
    best = total = start = 0
    for end in range(len(ordered)):
        total += ordered[end][1]
        while ordered[end][0] - ordered[start][0] >= period:
            total -= ordered[start][1]
            start += 1
        best = max(best, total)
    return best


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "requests=, tokens="),
        ({"requests": 0}, "RateLimit.requests must be >= 1"),
        ({"requests": -5}, "RateLimit.requests must be >= 1"),
        ({"tokens": 0}, "RateLimit.tokens must be >= 1"),
        ({"requests": 1, "period": 0}, "RateLimit.period must be a finite number of seconds > 0"),
        ({"requests": 1, "period": -1.0}, "RateLimit.period"),
        ({"requests": 1, "period": float("inf")}, "RateLimit.period"),
        ({"requests": 1, "period": float("nan")}, "RateLimit.period"),
        (
            {"requests": 1, "assumed_completion_tokens": -1},
            "assumed_completion_tokens must be >= 0",
        ),
    ],
)
def test_invalid_limits_are_refused_naming_the_field(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        RateLimit(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"requests": 1.5}, {"requests": True}, {"tokens": "100"}, {"requests": 1, "period": "60"}],
)
def test_wrongly_typed_limits_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="RateLimit"):
        RateLimit(**kwargs)


def test_limit_defaults() -> None:
    limit = RateLimit(tokens=10_000)
    assert (limit.requests, limit.period, limit.assumed_completion_tokens) == (None, 60.0, 1024)


def test_misuse_fails_at_wrap_time() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini", mock_response="ok")
    with pytest.raises(TypeError, match="RateLimiter or a RateLimit"):
        with_rate_limit(chat, 5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="needs a fixedmodel callable"):
        with_rate_limit("chat", RateLimit(requests=5))  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="must implement LimiterStore"):
        RateLimiter(RateLimit(requests=5), store=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs a RateLimit"):
        RateLimiter({"requests": 5})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty str"):
        RateLimiter(RateLimit(requests=5), key="")


def test_memory_store_conforms_and_repr_shows_the_limit() -> None:
    assert isinstance(MemoryLimiterStore(), LimiterStore)
    chat = bind_completion("openai/gpt-4o-mini", mock_response="ok", api_key="sk-SECRET")
    limited = with_rate_limit(chat, RateLimit(requests=5))
    assert "RateLimit(requests=5" in repr(limited)
    assert "sk-SECRET" not in repr(limited)


# --- the store's window rule ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_store_refuses_past_the_budget_until_the_oldest_segment_expires() -> None:
    clock, limit = Clock(), RateLimit(requests=3, period=1.0)
    store = MemoryLimiterStore(clock=clock)
    assert all(store.acquire("k", limit, 0).granted for _ in range(3))
    refused = store.acquire("k", limit, 0)
    assert not refused.granted
    assert refused.retry_in == pytest.approx(HOLD)
    clock.now = HOLD - 1e-9
    assert not store.acquire("k", limit, 0).granted
    clock.now = HOLD
    assert store.acquire("k", limit, 0).granted


def test_store_keys_are_independent() -> None:
    store, limit = MemoryLimiterStore(clock=Clock()), RateLimit(requests=1, period=1.0)
    assert store.acquire("a", limit, 0).granted
    assert store.acquire("b", limit, 0).granted
    assert not store.acquire("a", limit, 0).granted


def test_store_adjust_refunds_and_charges_a_live_segment_only() -> None:
    clock, limit = Clock(), RateLimit(tokens=100, period=1.0)
    store = MemoryLimiterStore(clock=clock)
    first = store.acquire("k", limit, 80)
    assert not store.acquire("k", limit, 30).granted
    store.adjust("k", limit, first.segment, -60)  # used 20, not 80
    assert store.acquire("k", limit, 30).granted  # 20 + 30 <= 100
    store.adjust("k", limit, first.segment, +60)  # and now it used 80 after all
    assert not store.acquire("k", limit, 1).granted
    store.adjust("k", limit, first.segment, -1_000)  # never below zero: 30 left charged
    assert store.acquire("k", limit, 70).granted
    clock.now = 10.0
    store.adjust("k", limit, first.segment, +500)  # expired: nothing to charge
    assert store.acquire("k", limit, 100).granted


def test_store_pause_refuses_everything_and_never_shortens() -> None:
    clock, limit = Clock(), RateLimit(requests=100, period=1.0)
    store = MemoryLimiterStore(clock=clock)
    store.pause("k", 5.0)
    store.pause("k", 1.0)
    refused = store.acquire("k", limit, 0)
    assert (refused.granted, refused.retry_in) == (False, 5.0)
    clock.now = 5.0
    assert store.acquire("k", limit, 0).granted


def test_random_traffic_never_exceeds_either_budget_in_any_window() -> None:
    clock, rng = Clock(), random.Random(7)
    limit = RateLimit(requests=40, tokens=5_000, period=1.0)
    store = MemoryLimiterStore(clock=clock)
    admitted: list[tuple[float, int]] = []
    while clock.now < 60.0:
        cost = rng.choice([0, 10, 200, 900, 2_500])
        decision = store.acquire("k", limit, cost)
        if decision.granted:
            admitted.append((clock.now, cost))
            clock.now += rng.expovariate(200.0)
        else:
            clock.now += decision.retry_in * rng.choice([1.0, 1.0, 0.3, 2.0])
    assert max_in_any_window([(t, 1) for t, _ in admitted], 1.0) <= 40
    assert max_in_any_window(admitted, 1.0) <= 5_000


def test_saturated_unit_requests_reach_the_limit_less_one_segment() -> None:
    clock, limit = Clock(), RateLimit(requests=100, period=1.0)
    store = MemoryLimiterStore(clock=clock)
    admitted: list[tuple[float, int]] = []
    while clock.now < 50.0:
        decision = store.acquire("k", limit, 0)
        if decision.granted:
            admitted.append((clock.now, 1))
        else:
            clock.now += decision.retry_in
    assert max_in_any_window(admitted, 1.0) == 100
    steady = sum(1 for t, _ in admitted if 10.0 <= t < 50.0) / (40 * 100)
    assert steady >= SEGMENTS_PER_PERIOD / (SEGMENTS_PER_PERIOD + 1) - 0.01
    assert steady >= 0.97


# --- waiting in line (virtual clock) ------------------------------------------------------


def test_async_callers_are_served_in_arrival_order_and_within_the_window() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = limiter_on(loop, RateLimit(requests=5, tokens=1_000, period=1.0))
        rng = random.Random(3)
        served: list[tuple[int, float, int]] = []

        async def caller(index: int, tokens: int) -> None:
            await limiter.aacquire(tokens)
            served.append((index, loop.time(), tokens))

        tasks = []
        for index in range(120):
            tasks.append(asyncio.create_task(caller(index, rng.choice([1, 50, 400]))))
            await asyncio.sleep(rng.choice([0.0, 0.001, 0.05]))
        await asyncio.gather(*tasks)
        assert [index for index, _, _ in served] == list(range(120))
        assert max_in_any_window([(t, 1) for _, t, _ in served], 1.0) <= 5
        assert max_in_any_window([(t, n) for _, t, n in served], 1.0) <= 1_000

    run_virtual(main)


class CountingStore(MemoryLimiterStore):
    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__(clock=loop.time)
        self.asked = 0

    async def aacquire(self, key: str, limit: RateLimit, tokens: int) -> Any:
        self.asked += 1
        return await super().aacquire(key, limit, tokens)


def test_waiters_do_not_poll_the_store() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        store = CountingStore(loop)
        limiter = RateLimiter(RateLimit(requests=10, period=1.0), store=store)
        await asyncio.gather(*(limiter.aacquire() for _ in range(100)))
        # 100 admissions, plus one refusal each time the first in line found the window
        # full: once per period, not once per waiter or per tick.
        assert loop.time() == pytest.approx(9 * HOLD)
        assert store.asked <= 100 + 9

    run_virtual(main)


def test_a_big_request_first_in_line_is_not_overtaken() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = limiter_on(loop, RateLimit(tokens=100, period=1.0))
        await limiter.aacquire(60)
        served: list[tuple[str, float]] = []

        async def caller(name: str, tokens: int) -> None:
            await limiter.aacquire(tokens)
            served.append((name, loop.time()))

        big = asyncio.create_task(caller("big", 90))
        await asyncio.sleep(0)
        small = asyncio.create_task(caller("small", 1))  # would fit now, but waits its turn
        await asyncio.gather(big, small)
        assert served == [("big", pytest.approx(HOLD)), ("small", pytest.approx(HOLD))]

    run_virtual(main)


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = limiter_on(loop, RateLimit(requests=1, period=1.0))
        await limiter.aacquire()
        served: dict[str, float] = {}

        async def caller(name: str) -> None:
            await limiter.aacquire()
            served[name] = loop.time()

        first = asyncio.create_task(caller("first"))
        middle = asyncio.create_task(caller("middle"))
        last = asyncio.create_task(caller("last"))
        await asyncio.sleep(0.5)
        first.cancel()  # the one at the head of the line
        middle.cancel()  # one in the middle
        await asyncio.gather(first, middle, return_exceptions=True)
        await last
        assert served == {"last": pytest.approx(HOLD)}
        # Nothing was charged for the cancelled ones: one more fits a period later.
        await asyncio.sleep(HOLD)
        assert (await limiter.aacquire()).waited == 0.0

    run_virtual(main)


def test_a_request_larger_than_the_budget_passes_alone() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = limiter_on(loop, RateLimit(tokens=100, period=1.0))
        await limiter.aacquire(30)
        oversize = await limiter.aacquire(500)  # waits for the window to empty, no deadlock
        assert oversize.waited == pytest.approx(HOLD)
        after = await limiter.aacquire(1)  # and nothing shares a window with it
        assert after.waited == pytest.approx(HOLD)

    run_virtual(main)


# --- tokens: estimate and reconciliation ---------------------------------------------------


class UsageReporter:
    """An async chat that answers with a chosen usage (or raises a chosen error)."""

    model = "openai/gpt-4o-mini"

    def __init__(self, total_tokens: int, error: BaseException | None = None) -> None:
        self.total_tokens = total_tokens
        self.error = error
        self.calls = 0

    async def __call__(self, **kwargs: Any) -> ModelResponse:
        self.calls += 1
        if self.error is not None and self.calls == 1:
            raise self.error
        usage = Usage(prompt_tokens=1, completion_tokens=self.total_tokens - 1)
        return ModelResponse(usage=usage)


def test_waiting_records_the_wait_in_the_call_record() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = limiter_on(loop, RateLimit(requests=1, period=1.0))
        chat: AFixedModelCompletion = with_rate_limit(UsageReporter(10), limiter)
        await chat(messages=MESSAGES)
        with call_scope() as info:
            await chat(messages=MESSAGES)
        assert info.rate_limit_wait == pytest.approx(HOLD)

    run_virtual(main)


def test_estimates_cover_prompt_max_tokens_and_choices() -> None:
    prompt = litellm.token_counter(model="openai/gpt-4o-mini", messages=MESSAGES)
    model = "openai/gpt-4o-mini"
    assert estimate_tokens({"messages": MESSAGES}, model, 1024) == prompt + 1024
    assert estimate_tokens({"messages": MESSAGES, "max_tokens": 10}, model, 1024) == prompt + 10
    with_n = {"messages": MESSAGES, "max_completion_tokens": 10, "max_tokens": 99, "n": 3}
    assert estimate_tokens(with_n, model, 1024) == prompt + 30
    embed = "openai/text-embedding-3-small"
    assert estimate_tokens({"input": "hello world"}, embed, 1024) == 2
    assert estimate_tokens({"input": ["hello world", "hi"]}, embed, 1024) == 3
    assert estimate_tokens({"input": [[1, 2, 3], [4]]}, embed, 1024) == 4
    assert used_tokens({"stream": True}, ModelResponse(usage=Usage(total_tokens=5))) is None


class RefundOnRefusal(MemoryLimiterStore):
    """Runs ``then`` right after it refuses a request: another call settling in that gap."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__(clock=loop.time)
        self.then: Callable[[], None] | None = None

    def acquire(self, key: str, limit: RateLimit, tokens: int) -> Any:
        decision = super().acquire(key, limit, tokens)
        if not decision.granted and self.then is not None:
            then, self.then = self.then, None
            then()
        return decision


@pytest.mark.parametrize("sync", [False, True])
def test_a_refund_between_a_refusal_and_joining_the_line_is_not_lost(sync: bool) -> None:
    async def main(loop: VirtualClockLoop) -> None:
        store = RefundOnRefusal(loop)
        limiter = RateLimiter(RateLimit(tokens=100, period=1.0), store=store)
        first = await limiter.aacquire(90)
        store.then = lambda: limiter.settle(first, 10)  # 80 tokens come back, nobody waits
        # Not a whole period for a wake-up that went to nobody (a thread's wait is timed by
        # the real clock, an async one by the loop's virtual clock).
        second = limiter.acquire(50) if sync else await limiter.aacquire(50)
        assert second.waited < 0.5

    run_virtual(main)


class SlowStore:
    """A LimiterStore over the memory store whose async answers take a network round trip."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        self.inner = MemoryLimiterStore(clock=loop.time)

    def acquire(self, key: str, limit: RateLimit, tokens: int) -> Any:
        return self.inner.acquire(key, limit, tokens)

    async def aacquire(self, key: str, limit: RateLimit, tokens: int) -> Any:
        await asyncio.sleep(0.01)
        return self.inner.acquire(key, limit, tokens)

    def adjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        self.inner.adjust(key, limit, segment, tokens)

    async def aadjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        self.inner.adjust(key, limit, segment, tokens)

    def pause(self, key: str, seconds: float) -> None:
        self.inner.pause(key, seconds)

    async def apause(self, key: str, seconds: float) -> None:
        self.inner.pause(key, seconds)


def test_over_a_slow_store_a_later_small_request_does_not_overtake() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = RateLimiter(RateLimit(tokens=1000, period=1.0), store=SlowStore(loop))
        await limiter.aacquire(600)
        served: list[str] = []

        async def ask(name: str, tokens: int, after: float) -> None:
            await asyncio.sleep(after)
            await limiter.aacquire(tokens)
            served.append(name)

        await asyncio.gather(ask("big, first", 800, 0.0), ask("small, later", 300, 0.002))
        assert served == ["big, first", "small, later"]

    run_virtual(main)


class Charges(RateLimiter):
    """A limiter that records the tokens each acquisition is charged."""

    def __init__(self, limit: RateLimit) -> None:
        super().__init__(limit)
        self.charged: list[int] = []

    async def aacquire(self, tokens: int = 0) -> Permit:
        self.charged.append(tokens)
        return await super().aacquire(tokens)


async def test_a_bound_max_tokens_is_estimated_like_one_passed_on_the_call() -> None:
    limiter = Charges(RateLimit(tokens=1_000_000, period=60.0, assumed_completion_tokens=1024))
    bound = bind_acompletion("openai/gpt-4o-mini", mock_response="ok", max_tokens=7)
    chat = with_rate_limit(bound, limiter)
    await chat(messages=MESSAGES)
    await chat(messages=MESSAGES, max_tokens=3)  # The call's value still wins.
    await chat(messages=MESSAGES, extra_params={"max_completion_tokens": 5})
    prompt = litellm.token_counter(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert limiter.charged == [prompt + 7, prompt + 3, prompt + 5]


@pytest.mark.parametrize(("used", "second_waits"), [(50, False), (900, True)])
def test_reconciliation_with_real_usage_changes_the_budget(used: int, second_waits: bool) -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = limiter_on(loop, RateLimit(tokens=1_000, period=1.0))
        chat: AFixedModelCompletion = with_rate_limit(UsageReporter(used), limiter)
        await chat(messages=MESSAGES, max_tokens=600)  # charged about 610 up front
        start = loop.time()
        await chat(messages=MESSAGES, max_tokens=300)  # fits only if the first was refunded
        assert (loop.time() - start > 0) is second_waits

    run_virtual(main)


def test_a_refund_wakes_the_first_waiter_early() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = limiter_on(loop, RateLimit(tokens=100, period=1.0))
        permit = await limiter.aacquire(90)
        waiting = asyncio.create_task(limiter.aacquire(50))
        await asyncio.sleep(0.25)
        assert not waiting.done()
        await limiter.asettle(permit, 10)
        assert (await waiting).waited == pytest.approx(0.25)

    run_virtual(main)


# --- 429 with Retry-After -------------------------------------------------------------------


def rate_limit_error(retry_after: str) -> litellm.RateLimitError:
    request = httpx.Request("POST", "http://x/v1")
    response = httpx.Response(429, headers={"retry-after": retry_after}, request=request)
    return litellm.RateLimitError("slow down", llm_provider="openai", model="m", response=response)


def test_a_429_pauses_every_caller_then_is_reraised_unchanged() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = limiter_on(loop, RateLimit(requests=100, period=1.0))
        error = rate_limit_error("5")
        chat: AFixedModelCompletion = with_rate_limit(UsageReporter(10, error), limiter)
        other: AFixedModelCompletion = with_rate_limit(UsageReporter(10), limiter)
        with pytest.raises(litellm.RateLimitError) as caught:
            await chat(messages=MESSAGES, max_retries=0)  # As under with_retries.
        assert caught.value is error
        await asyncio.gather(*(other(messages=MESSAGES) for _ in range(3)))
        assert loop.time() == pytest.approx(5.0)

    run_virtual(main)


def test_a_runaway_retry_after_is_capped() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = limiter_on(loop, RateLimit(requests=100, period=1.0))
        chat = with_rate_limit(UsageReporter(10, rate_limit_error("86400")), limiter)
        with pytest.raises(litellm.RateLimitError):
            await chat(messages=MESSAGES, max_retries=0)
        await limiter.aacquire()
        assert loop.time() == pytest.approx(60.0)

    run_virtual(main)


# --- the retries the SDK would make: one permit per request ---------------------------------


class Failing:
    """A chat whose first ``failures`` calls raise ``error``; records what it was passed."""

    model = "openai/gpt-4o-mini"

    def __init__(self, error: BaseException, failures: int = 10**9) -> None:
        self.error = error
        self.failures = failures
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, **kwargs: Any) -> ModelResponse:
        self.seen.append(kwargs)
        if len(self.seen) <= self.failures:
            raise self.error
        return ModelResponse(usage=Usage(prompt_tokens=1, completion_tokens=1))

    def sync(self, **kwargs: Any) -> ModelResponse:
        return asyncio.run(self(**kwargs))


def server_error() -> litellm.InternalServerError:
    return litellm.InternalServerError("boom", llm_provider="openai", model="m")


def test_the_sdk_retries_become_ours_each_with_its_own_permit() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = limiter_on(loop, RateLimit(requests=2, period=10.0))
        inner = Failing(server_error())
        chat: AFixedModelCompletion = with_rate_limit(inner, limiter)
        with call_scope() as info, pytest.raises(litellm.InternalServerError):
            await chat(messages=MESSAGES)
        # The default max_retries=2: three requests, the third waiting for the next window.
        assert len(inner.seen) == 3
        assert all(seen["max_retries"] == 0 and seen["num_retries"] == 0 for seen in inner.seen)
        assert loop.time() >= 10.0
        assert info.attempts == 3

    run_virtual(main)


@pytest.mark.parametrize(
    ("keywords", "requests"),
    [({}, 3), ({"max_retries": 0}, 1), ({"max_retries": 4}, 5), ({"num_retries": 1}, 2)],
)
def test_the_retries_asked_for_are_made_and_no_more(
    keywords: dict[str, Any], requests: int
) -> None:
    async def main(loop: VirtualClockLoop) -> None:
        inner = Failing(server_error())
        chat: AFixedModelCompletion = with_rate_limit(
            inner, limiter_on(loop, RateLimit(requests=100))
        )
        with pytest.raises(litellm.InternalServerError):
            await chat(messages=MESSAGES, **keywords)
        assert len(inner.seen) == requests

    run_virtual(main)


def test_a_call_that_the_sdk_retry_would_save_still_succeeds() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        inner = Failing(server_error(), failures=2)
        chat: AFixedModelCompletion = with_rate_limit(
            inner, limiter_on(loop, RateLimit(requests=100))
        )
        await chat(messages=MESSAGES)
        assert len(inner.seen) == 3

    run_virtual(main)


def test_errors_the_sdk_would_not_retry_are_raised_at_once() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        error = litellm.AuthenticationError("no", llm_provider="openai", model="m")
        inner = Failing(error)
        chat: AFixedModelCompletion = with_rate_limit(
            inner, limiter_on(loop, RateLimit(requests=100))
        )
        with pytest.raises(litellm.AuthenticationError):
            await chat(messages=MESSAGES)
        assert len(inner.seen) == 1

    run_virtual(main)


def test_a_429_retry_waits_for_the_shared_pause() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        limiter = limiter_on(loop, RateLimit(requests=100, period=1.0))
        inner = Failing(rate_limit_error("5"), failures=1)
        chat: AFixedModelCompletion = with_rate_limit(inner, limiter)
        await chat(messages=MESSAGES)
        assert len(inner.seen) == 2
        assert loop.time() == pytest.approx(5.0)

    run_virtual(main)


def test_sync_callables_retry_the_same_way() -> None:
    inner = Failing(server_error(), failures=1)
    chat = with_rate_limit(inner.sync, RateLimit(requests=100))
    chat(messages=MESSAGES)
    assert len(inner.seen) == 2
    assert inner.seen[0]["max_retries"] == 0


def test_with_retries_inside_the_limiter_is_refused() -> None:
    from fixedmodel.middleware.retries import with_retries

    chat = bind_acompletion("openai/gpt-4o-mini", mock_response="ok")
    with pytest.raises(TypeError, match=r"inside with_retries\(\), not over it"):
        with_rate_limit(with_retries(chat), RateLimit(requests=5))
    limiter = RateLimiter(RateLimit(requests=5))
    # Retries over this limiter's own layer: every request holds a permit already.
    with_rate_limit(with_retries(with_rate_limit(chat, limiter)), limiter)


# --- threads -------------------------------------------------------------------------------


def test_threads_wait_in_line_without_burning_cpu() -> None:
    limit = RateLimit(requests=3, period=0.3)
    limiter = RateLimiter(limit)
    served: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            limiter.acquire()
            with lock:
                served.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    started, cpu_started = time.monotonic(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    wall, cpu = time.monotonic() - started, time.process_time() - cpu_started
    assert len(served) == 12
    assert max_in_any_window([(t, 1) for t in served], 0.3) <= 3
    assert wall >= 3 * 0.3  # four windows' worth: at least three full periods of waiting
    assert cpu < 0.25 * wall, f"waiting used {cpu:.3f} s of CPU in {wall:.3f} s"


def test_threads_and_tasks_share_one_line() -> None:
    limiter = RateLimiter(RateLimit(requests=1, period=0.2))
    limiter.acquire()
    served: list[str] = []

    def in_thread() -> None:
        limiter.acquire()
        served.append("thread")

    async def in_task() -> None:
        thread = threading.Thread(target=in_thread)
        thread.start()
        await asyncio.sleep(0.05)  # the thread is first in line by now
        await limiter.aacquire()
        served.append("task")
        await asyncio.to_thread(thread.join, 5)

    asyncio.run(in_task())
    assert served == ["thread", "task"]


# --- all four kinds ------------------------------------------------------------------------


def test_every_kind_is_wrapped_into_the_same_kind() -> None:
    limiter = RateLimiter(RateLimit(requests=100, tokens=100_000))
    achat = with_rate_limit(bind_acompletion("openai/gpt-4o-mini", mock_response="a"), limiter)
    chat = with_rate_limit(bind_completion("openai/gpt-4o-mini", mock_response="s"), limiter)
    aembed = with_rate_limit(
        bind_aembedding("openai/text-embedding-3-small", mock_response=[0.5]), limiter
    )
    embed = with_rate_limit(
        bind_embedding("openai/text-embedding-3-small", mock_response=[0.5]), limiter
    )
    assert isinstance(achat, AFixedModelCompletion)
    assert isinstance(chat, FixedModelCompletion)
    assert isinstance(aembed, AFixedModelEmbedding)
    assert isinstance(embed, FixedModelEmbedding)
    assert chat(messages=MESSAGES).choices[0].message.content == "s"
    assert embed(input=["a"]).data
    assert asyncio.run(achat(messages=MESSAGES)).choices[0].message.content == "a"
    assert asyncio.run(aembed(input="a")).data


def test_settle_without_a_token_budget_changes_nothing() -> None:
    limiter = RateLimiter(RateLimit(requests=1, period=60.0))
    permit = limiter.acquire()
    limiter.settle(permit, 10_000)
    assert permit == Permit(tokens=0, segment=permit.segment, waited=permit.waited)


# --- the estimate does no I/O ---------------------------------------------------------------

MEDIA_PARTS: list[dict[str, Any]] = [
    {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png", "detail": "high"}},
    {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}},
    {"type": "image_url", "image_url": "http://127.0.0.1:9/cat.png"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:9/cat.png"}},
    {"type": "input_audio", "input_audio": {"data": "UklGRg==" * 1000, "format": "wav"}},
    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=" * 10}},
    {"type": "file", "file": {"file_id": "file-123"}},
    {"type": "document", "source": {"type": "url", "url": "http://127.0.0.1:9/doc.pdf"}},
    {"type": "video_url", "video_url": {"url": "http://127.0.0.1:9/clip.mp4"}},
    {"type": "something_new", "url": "http://127.0.0.1:9/what"},
]


@pytest.mark.parametrize("part", MEDIA_PARTS, ids=lambda part: str(part["type"]))
def test_the_estimate_of_a_media_part_opens_no_connection(
    part: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)  # Recorded: litellm would swallow an exception raised here.
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, part]}]
    text_only = estimate_tokens({"messages": MESSAGES}, "openai/gpt-4o-mini", 0)
    estimate = estimate_tokens({"messages": messages}, "openai/gpt-4o-mini", 0)
    assert attempts == []
    assert estimate > text_only  # The part is charged, not ignored.


def test_images_are_charged_by_openai_rule_without_being_fetched() -> None:
    def with_image(detail: str) -> list[dict[str, Any]]:
        url = {"url": "http://127.0.0.1:9/cat.png", "detail": detail}
        return [{"role": "user", "content": [{"type": "image_url", "image_url": url}]}]

    empty = estimate_tokens(
        {"messages": [{"role": "user", "content": ""}]}, "openai/gpt-4o-mini", 0
    )
    low = estimate_tokens({"messages": with_image("low")}, "openai/gpt-4o-mini", 0)
    high = estimate_tokens({"messages": with_image("high")}, "openai/gpt-4o-mini", 0)
    assert (low - empty, high - empty) == (85, 85 + 170 * 8)


# --- fork: the child works or fails clearly, never hangs --------------------------------------


def in_forked_child(work: Callable[[], object], timeout: float = 10.0) -> int:
    """Run ``work`` in a forked child; its exit status (0: done, 1: raised, -1: hung)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_a_thread_waits_in_line_is_served() -> None:
    limiter = RateLimiter(RateLimit(requests=1, period=0.5))
    limiter.acquire()
    waiting = threading.Thread(target=limiter.acquire)
    waiting.start()
    while limiter._line.is_empty():  # pyright: ignore[reportPrivateUsage]
        time.sleep(0.01)
    # The parent's waiting thread does not exist in the child: it must not hold the line.
    assert in_forked_child(limiter.acquire) == 0
    waiting.join()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_another_thread_holds_a_lock_is_served() -> None:
    limiter = RateLimiter(RateLimit(requests=5, period=0.5))
    store = limiter.store
    assert isinstance(store, MemoryLimiterStore)
    for lock in (store._lock, limiter._line._lock):  # pyright: ignore[reportPrivateUsage]
        taken, release = threading.Event(), threading.Event()

        def hold(
            lock: threading.Lock = lock,
            taken: threading.Event = taken,
            release: threading.Event = release,
        ) -> None:
            with lock:
                taken.set()
                release.wait()

        holder = threading.Thread(target=hold)
        holder.start()
        taken.wait()
        assert in_forked_child(lambda: (limiter.acquire(), limiter.acquire())) == 0
        release.set()
        holder.join()


def test_an_async_child_after_async_calls_in_the_parent_is_served() -> None:
    limiter = RateLimiter(RateLimit(requests=3, tokens=10_000, period=0.5))
    chat = with_rate_limit(bind_acompletion("openai/gpt-4o-mini", mock_response="ok"), limiter)

    async def calls() -> None:
        for _ in range(4):
            await chat(messages=MESSAGES)

    asyncio.run(calls())
    assert in_forked_child(lambda: asyncio.run(calls())) == 0
