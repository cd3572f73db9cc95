"""RedisCooldownStore and shared balancer state in the field, against a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

import litellm
import pytest

from fixedmodel import (
    CooldownPolicy,
    RateLimit,
    RedisCooldownStore,
    responses,
    with_cache,
    with_load_balancing,
    with_rate_limit,
)
from fixedmodel.testing import Fail, FakeACompletion, FakeCompletion
from tests.integration import redis_server as servers
from tests.integration.redis_server import redis_server

__all__ = ["redis_server"]  # Fixtures, used by name.

MESSAGES = [{"role": "user", "content": "Hi"}]


def test_slower_failures_while_open_keep_the_deadline_in_redis(
    redis_server: servers.RedisServer,
) -> None:
    policy = CooldownPolicy(failures=3, cooldown=5.0)
    namespace = servers.unique_namespace("latest")
    with RedisCooldownStore(redis_server.url, namespace=namespace) as store:
        store.failed("d", policy, probe=False, cool_for=0.2)
        for _ in range(3):
            store.failed("d", policy, probe=False, cool_for=None)
        time.sleep(0.3)  # Past the Retry-After.
        entry = store.enter("d", policy)
        assert not entry.granted
        assert 4.0 < entry.retry_in <= 5.0


def test_a_refusal_while_a_probe_is_out_says_look_again_soon_in_redis(
    redis_server: servers.RedisServer,
) -> None:
    # The probe's lease (60 s) was the retry_in: callers arriving during a probe never
    # waited for it (max_wait 30 s) and a chain around the balancer skipped it for 60 s.
    policy = CooldownPolicy(failures=1, cooldown=0.1, probe_timeout=60.0)
    namespace = servers.unique_namespace("probe-poll")
    with RedisCooldownStore(redis_server.url, namespace=namespace) as store:
        store.failed("d", policy, probe=False, cool_for=None)
        time.sleep(0.2)
        assert store.enter("d", policy).probe
        entry = store.enter("d", policy)
        assert not entry.granted
        assert 0.0 < entry.retry_in <= 1.0
        store.succeeded("d")  # The probe answered: the next call goes in.
        assert store.enter("d", policy).granted


@pytest.mark.parametrize("probe", [False, True], ids=["a call", "the probe"])
def test_a_shorter_retry_after_never_shortens_a_cooldown_in_redis(
    redis_server: servers.RedisServer, probe: bool
) -> None:
    policy = CooldownPolicy(failures=1, cooldown=5.0)
    namespace = servers.unique_namespace("shorter")
    with RedisCooldownStore(redis_server.url, namespace=namespace) as store:
        store.failed("d", policy, probe=False, cool_for=None)
        store.failed("d", policy, probe=probe, cool_for=0.1)
        time.sleep(0.2)
        entry = store.enter("d", policy)
        assert not entry.granted
        assert 4.0 < entry.retry_in <= 5.0


def test_a_success_of_an_earlier_call_does_not_end_a_live_cooldown_in_redis(
    redis_server: servers.RedisServer,
) -> None:
    policy = CooldownPolicy(failures=3, cooldown=30.0)
    namespace = servers.unique_namespace("late-success")
    with RedisCooldownStore(redis_server.url, namespace=namespace) as store:
        store.failed("d", policy, probe=False, cool_for=None)
        assert store.enter("d", policy).failures == 1  # A slow call goes out.
        store.failed("d", policy, probe=False, cool_for=60.0)  # Another call's 429.
        store.succeeded("d")  # The slow call answers.
        entry = store.enter("d", policy)
        assert not entry.granted
        assert 59.0 < entry.retry_in <= 60.0
        store.failed("d", policy, probe=False, cool_for=0.1)  # Never shortened either.
        store.succeeded("d")
        assert not store.enter("d", policy).granted
    with RedisCooldownStore(redis_server.url, namespace=namespace + "b") as store:
        store.failed("d", policy, probe=False, cool_for=None)
        store.succeeded("d")  # Closed: a success resets the failures.
        entry = store.enter("d", policy)
        assert entry.granted
        assert entry.failures == 0


@pytest.mark.parametrize(
    "step",
    [-1200.0, -5.0, 1200.0, 5.0],
    ids=["back 20 min", "back 5 s", "forward 20 min", "forward 5 s"],
)
def test_a_clock_step_neither_ends_nor_stretches_a_cooldown(
    redis_server: servers.RedisServer, step: float
) -> None:
    policy = CooldownPolicy(failures=1, cooldown=3.0)
    namespace = servers.unique_namespace("cdstep")
    with (
        RedisCooldownStore(redis_server.url, namespace=namespace) as first,
        RedisCooldownStore(redis_server.url, namespace=namespace) as second,
    ):
        first.failed("d", policy, probe=False, cool_for=None)
        assert not second.enter("d", policy).granted
        for store in (first, second):
            store._clock.skew = int(step * 1_000_000)  # The server's clock steps.
        for store in (first, second):
            entry = store.enter("d", policy)
            assert not entry.granted  # Stepped forward: the cooldown did not end.
            # Stepped back: not kept out for the step. Forward: the script allows one second
            # for a request to arrive, as the limiter's does.
            assert 1.5 < entry.retry_in <= 3.0
        first.failed("d", policy, probe=False, cool_for=1.0)  # Never shortens, after a step.
        entry = second.enter("d", policy)
        assert not entry.granted and entry.retry_in > 1.5


# --- every strategy's state is shared ---------------------------------------------------------


def _store(redis: servers.RedisServer, namespace: str) -> RedisCooldownStore:
    """One process's store: its own clients, over the shared redis-server and namespace."""
    return RedisCooldownStore(redis.url, namespace=namespace)


async def test_least_busy_sees_the_calls_in_flight_of_another_process(
    redis_server: servers.RedisServer,
) -> None:
    namespace = servers.unique_namespace("busy")
    release = asyncio.Event()

    class Held(FakeACompletion):
        async def __call__(self, **kwargs: Any) -> Any:
            await release.wait()
            return await super().__call__(**kwargs)

    with (
        _store(redis_server, namespace) as first_store,
        _store(redis_server, namespace) as second_store,
    ):
        first = with_load_balancing(
            {"a": Held(lambda call: "a", model="m")}, store=first_store, key="g"
        )
        held = [asyncio.ensure_future(first(messages=MESSAGES)) for _ in range(3)]
        await asyncio.sleep(0.2)
        fakes = {n: FakeACompletion(lambda call, n=n: n, model="m") for n in ("a", "b", "c")}
        second = with_load_balancing(fakes, "least_busy", store=second_store, key="g")
        served = Counter([responses.text(await second(messages=MESSAGES)) for _ in range(30)])
        assert served == {"b": 15, "c": 15}  # "a" is busy with the first process's three.
        release.set()
        await asyncio.gather(*held)
        again = Counter([responses.text(await second(messages=MESSAGES)) for _ in range(30)])
        assert again == {"a": 10, "b": 10, "c": 10}  # Their ends were shared too.


def test_round_robin_takes_turns_across_processes(redis_server: servers.RedisServer) -> None:
    namespace = servers.unique_namespace("turns")
    with _store(redis_server, namespace) as one, _store(redis_server, namespace) as other:
        balancers = [
            with_load_balancing(
                {n: FakeCompletion(lambda call, n=n: n, model="m") for n in ("a", "b", "c")},
                "round_robin",
                store=store,
                key="g",
            )
            for store in (one, other)
        ]
        served = [responses.text(balancers[i % 2](messages=MESSAGES)) for i in range(12)]
    assert served == ["a", "b", "c"] * 4


def test_usage_based_sees_the_usage_of_another_process(redis_server: servers.RedisServer) -> None:
    namespace = servers.unique_namespace("usage")
    limit = RateLimit(requests=10)

    def limited(name: str) -> Any:
        return with_rate_limit(FakeCompletion(lambda call: name, model="m"), limit)

    with _store(redis_server, namespace) as one, _store(redis_server, namespace) as other:
        first = with_load_balancing({"small": limited("small")}, "usage_based", store=one, key="g")
        for _ in range(5):
            first(messages=MESSAGES)
        second = with_load_balancing(
            {"small": limited("small"), "large": limited("large")},
            "usage_based",
            store=other,
            key="g",
        )
        served = [responses.text(second(messages=MESSAGES)) for _ in range(5)]
    assert served == ["large"] * 5  # "small" already used half its quota in the first.


async def test_shared_bookkeeping_returns_to_zero(redis_server: servers.RedisServer) -> None:
    namespace = servers.unique_namespace("exact")
    release = asyncio.Event()

    class Held(FakeACompletion):
        async def __call__(self, **kwargs: Any) -> Any:
            await release.wait()
            return await super().__call__(**kwargs)

    limit = RateLimit(requests=100)
    answer = FakeACompletion(lambda call: "x", model="m")
    deployments = {
        "held": with_rate_limit(Held(lambda call: "held", model="m"), limit),
        "failing": with_rate_limit(FakeACompletion(lambda call: Fail(400), model="m"), limit),
        "cached": with_cache(with_rate_limit(answer, limit)),
    }
    with _store(redis_server, namespace) as store:
        chat = with_load_balancing(deployments, "usage_based", store=store, key="g")
        stuck = [asyncio.ensure_future(chat(messages=MESSAGES)) for _ in range(3)]
        await asyncio.sleep(0.2)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
        release.set()
        for _ in range(9):
            with contextlib.suppress(litellm.BadRequestError):
                await chat(messages=MESSAGES)
        view = await store.abalance_view("g", list(deployments), [0.0, 0.0, 60.0])
        assert view is not None
        assert view.busy == (0, 0, 0)
        # Every answer after the first came from the cache: one request counted.
        assert view.requests[2] == 1
        assert len(answer.calls) == 1


async def test_shared_usage_of_a_call_that_outlasts_the_window_is_counted_once(
    redis_server: servers.RedisServer,
) -> None:
    namespace = servers.unique_namespace("outlast")
    release = asyncio.Event()

    class Held(FakeACompletion):
        async def __call__(self, **kwargs: Any) -> Any:
            await release.wait()
            return await super().__call__(**kwargs)

    limit = RateLimit(tokens=10**6, period=0.2, assumed_completion_tokens=500)
    held = with_rate_limit(Held(lambda call: "long answer " * 20, model="m"), limit)
    with _store(redis_server, namespace) as store:
        chat = with_load_balancing({"held": held}, "usage_based", store=store, key="g")
        outlasting = asyncio.ensure_future(chat(messages=MESSAGES))
        await asyncio.sleep(0.1)
        view = await store.abalance_view("g", ["held"], [0.2])
        assert view is not None and view.busy == (1,) and view.tokens[0] > 500
        await asyncio.sleep(0.3)  # Its bucket leaves the window while it is in flight.
        release.set()
        await outlasting
        view = await store.abalance_view("g", ["held"], [0.2])
        assert view is not None
        assert (view.busy, view.requests, view.tokens) == ((0,), (0,), (0,))


@pytest.mark.parametrize(
    "step",
    [-1200.0, -5.0, 1200.0, 5.0],
    ids=["back 20 min", "back 5 s", "forward 20 min", "forward 5 s"],
)
def test_a_clock_step_keeps_shared_calls_and_usage(
    redis_server: servers.RedisServer, step: float
) -> None:
    namespace = servers.unique_namespace("balstep")
    with _store(redis_server, namespace) as first, _store(redis_server, namespace) as second:
        for store in (first, second):
            assert store.balance_view("g", ["d"], [3.0]) is not None
        call = first.balance_started("g", "d", lease=60.0, window=3.0, tokens=100)
        assert call is not None
        for store in (first, second):
            store._clock.skew = int(step * 1_000_000)  # The server's clock steps.
        view = second.balance_view("g", ["d"], [3.0])
        assert view is not None
        # Forward: the call's lease and its usage did not lapse. Back: its usage bucket is
        # not "in the future", nor counted for the length of the step.
        assert (view.busy, view.requests, view.tokens) == ((1,), (1,), (100,))
        first.balance_ended("g", "d", call, window=3.0, tokens=40, sent=True)
        view = first.balance_view("g", ["d"], [3.0])
        assert view is not None
        assert (view.busy, view.requests, view.tokens) == ((0,), (1,), (40,))
