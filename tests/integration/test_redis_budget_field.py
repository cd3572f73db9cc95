"""Budgets in the field over a real redis-server: the scenarios of tests/unit/test_budget_field.py,
a Redis that answers late, callers cancelled while reserving, and server clock steps."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import litellm
import pytest

from fixedmodel import (
    Budget,
    RedisBudgetStore,
    RedisUnavailableError,
    responses,
    with_budget,
)
from fixedmodel.stores._budget_store import Caps
from fixedmodel.testing import FakeACompletion, FakeCompletion, FakeUsage, Reply
from tests.integration import redis_server as servers
from tests.integration.redis_server import own_redis_server, redis_server
from tests.unit import test_budget_field as field

__all__ = ["own_redis_server", "redis_server"]  # Fixtures, used by name.

MESSAGES = [{"role": "user", "content": "Hi"}]
MODEL = "gpt-4o-mini"
USAGE = FakeUsage(prompt_tokens=10, completion_tokens=20)


@pytest.fixture
def make_budget(redis_server: servers.RedisServer) -> Iterator[field.MakeBudget]:
    stores: list[RedisBudgetStore] = []

    def make(**options: Any) -> Budget:
        store = RedisBudgetStore(redis_server.url, namespace=servers.unique_namespace("field"))
        stores.append(store)
        return Budget(store=store, **options)

    yield make
    for store in stores:
        store.close()


async def test_async_streams_dropped_or_failed(make_budget: field.MakeBudget) -> None:
    await field.scenario_async_streams_dropped_or_failed(make_budget, "aclose")


def test_sync_streams_dropped_or_failed(make_budget: field.MakeBudget) -> None:
    field.scenario_sync_streams_dropped_or_failed(make_budget, "break")


async def test_streams_failing_after_the_role_chunk(make_budget: field.MakeBudget) -> None:
    await field.scenario_streams_failing_after_the_role_chunk(make_budget)


def test_settled_before_asyncio_run_returns(make_budget: field.MakeBudget) -> None:
    field.scenario_settled_before_asyncio_run_returns(make_budget, mocked=True)


async def test_exact_under_errors_cancellations_and_hits(make_budget: field.MakeBudget) -> None:
    await field.scenario_exact_under_errors_cancellations_and_hits(make_budget)


async def test_pacing(make_budget: field.MakeBudget) -> None:
    await field.scenario_pacing(make_budget)


def _price(prompt: int, completion: int) -> float:
    info = litellm.get_model_info(MODEL)
    return prompt * info["input_cost_per_token"] + completion * info["output_cost_per_token"]


def _stall(server: servers.RedisServer, seconds: float) -> threading.Timer:
    """Freeze the server now and thaw it ``seconds`` later (a Redis that answers late)."""
    server.freeze()
    thaw = threading.Timer(seconds, server.thaw)
    thaw.start()
    return thaw


@pytest.mark.parametrize("on_error", ["closed", "open"])
def test_a_reservation_redis_answered_late_is_not_charged(
    own_redis_server: servers.RedisServer, on_error: Any
) -> None:
    with RedisBudgetStore(own_redis_server.url, timeout=0.25, on_error=on_error) as store:
        budget = Budget(max_cost=0.01, store=store)
        fake = FakeCompletion(lambda call: Reply("ok", usage=USAGE), model=MODEL)
        chat = with_budget(fake, budget)
        budget.status()  # A connection open and the script loaded: the reserve is sent.
        thaw = _stall(own_redis_server, 0.6)
        if on_error == "closed":
            with pytest.raises(RedisUnavailableError):
                chat(messages=MESSAGES, max_tokens=8000)  # A worst case of 0.008 USD.
        else:  # Let through uncounted: neither its reservation nor its cost is kept.
            chat(messages=MESSAGES, max_tokens=8000)
        thaw.join()
        assert len(fake.calls) == (1 if on_error == "open" else 0)
        fake.calls.clear()
        assert responses.text(chat(messages=MESSAGES, max_tokens=8000)) == "ok"
        status = budget.status()
        assert status.cost == pytest.approx(_price(10, 20), rel=1e-6)
        assert status.requests == 1  # The call never made is no request.


async def test_a_caller_cancelled_while_reserving_is_not_charged(
    own_redis_server: servers.RedisServer,
) -> None:
    with RedisBudgetStore(own_redis_server.url, timeout=0.25) as store:
        budget = Budget(max_cost=0.01, store=store)
        fake = FakeACompletion(lambda call: Reply("ok", usage=USAGE), model=MODEL)
        chat = with_budget(fake, budget)
        await budget.astatus()  # A connection open and the script loaded: the reserve is sent.
        thaw = _stall(own_redis_server, 0.6)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(chat(messages=MESSAGES, max_tokens=8000), 0.05)
        await asyncio.to_thread(thaw.join)
        await asyncio.sleep(0.3)  # The reserve sent before the stall runs now.
        assert fake.calls == []
        answer = await chat(messages=MESSAGES, max_tokens=8000)
        assert responses.text(answer) == "ok"
        status = await budget.astatus()
        assert status.cost == pytest.approx(_price(10, 20), rel=1e-6)
        assert status.requests == 1


def test_a_settlement_redis_missed_is_retried_until_it_lands(
    own_redis_server: servers.RedisServer,
) -> None:
    caps = Caps(cost=1000, tokens=None, requests=None, period=None)
    with RedisBudgetStore(own_redis_server.url, timeout=0.25) as store:
        assert store.reserve("b", caps, "one", 800, 0).granted
        thaw = _stall(own_redis_server, 0.6)
        store.settle("b", caps, "one", 100, 0)  # Times out: kept, retried.
        thaw.join()
        deadline = time.monotonic() + 10
        while store.committed("b", caps).cost != 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.committed("b", caps).cost == 100
        store.settle("b", caps, "one", 500, 0)  # Once per id: a second settlement is ignored.
        assert store.committed("b", caps).cost == 100


def test_a_settlement_the_client_fails_to_send_is_retried_until_it_lands(
    own_redis_server: servers.RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client closed while a settlement was sent (seen in CI: redis-py raising "I/O
    # operation on closed file") made settle() raise into a call that had its answer, and
    # the same error from the retrying thread ended that thread: the reservation stayed
    # held. Both are kept and retried now.
    caps = Caps(cost=1000, tokens=None, requests=None, period=None)
    with RedisBudgetStore(own_redis_server.url, timeout=0.25) as store:
        assert store.reserve("b", caps, "one", 800, 0).granted
        client: Any = store._clients.sync()  # pyright: ignore[reportPrivateUsage]
        send = client.evalsha
        failures = iter([True, True])

        def flaky(*args: object) -> object:  # Settlements only: reads go through.
            if "settle" in args and next(failures, False):
                raise ValueError("I/O operation on closed file.")
            return send(*args)

        monkeypatch.setattr(client, "evalsha", flaky)
        store.settle("b", caps, "one", 100, 0)  # Fails to send: kept, retried.
        deadline = time.monotonic() + 10
        while store.committed("b", caps).cost != 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.committed("b", caps).cost == 100
        assert next(failures, None) is None  # The second failure was a retry's, and survived.


async def test_an_async_settlement_the_client_fails_to_send_is_retried_until_it_lands(
    own_redis_server: servers.RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The async twin: asettle raised the client's error into the call, and acommitted
    # (which sends what is unconfirmed first) raised it again.
    caps = Caps(cost=1000, tokens=None, requests=None, period=None)
    with RedisBudgetStore(own_redis_server.url, timeout=0.25) as store:
        assert (await store.areserve("b", caps, "one", 800, 0)).granted
        client: Any = store._clients.sync()  # pyright: ignore[reportPrivateUsage]
        send = client.evalsha
        failures = iter([True, True, True])

        def flaky(*args: object) -> object:  # Settlements only: reads go through.
            if "settle" in args and next(failures, False):
                raise ValueError("I/O operation on closed file.")
            return send(*args)

        monkeypatch.setattr(client, "evalsha", flaky)
        await store.asettle("b", caps, "one", 100, 0)  # Fails to send: kept, retried.
        for _ in range(200):  # Up to 10 s.
            if (await store.acommitted("b", caps)).cost == 100:
                break
            await asyncio.sleep(0.05)
        assert (await store.acommitted("b", caps)).cost == 100
        assert next(failures, None) is None  # The failures after the first were retries'.


def test_a_settlement_before_its_reserve_makes_the_reserve_charge_nothing(
    redis_server: servers.RedisServer,
) -> None:
    caps = Caps(cost=1000, tokens=None, requests=None, period=None)
    with RedisBudgetStore(redis_server.url, namespace=servers.unique_namespace("v")) as store:
        store.settle("b", caps, "late", 0, 0)
        assert not store.reserve("b", caps, "late", 800, 0).granted
        assert store.committed("b", caps).cost == 0
        assert store.reserve("b", caps, "other", 800, 0).granted


@pytest.mark.parametrize(
    "step", [-7200.0, -5.0, 7200.0, 5.0], ids=["back 2 h", "back 5 s", "forward 2 h", "forward 5 s"]
)
def test_a_server_clock_step_neither_resets_nor_reopens_a_window(
    redis_server: servers.RedisServer, step: float
) -> None:
    caps = Caps(cost=None, tokens=None, requests=3, period=3600.0)
    namespace = servers.unique_namespace("clock")
    with (
        RedisBudgetStore(redis_server.url, namespace=namespace) as first,
        RedisBudgetStore(redis_server.url, namespace=namespace) as second,
    ):
        assert second.reserve("b", caps, "a", 0, 0).granted
        assert first.reserve("b", caps, "b", 0, 0).granted
        assert first.reserve("b", caps, "c", 0, 0).granted
        before = first.committed("b", caps)
        for store in (first, second):
            store._clock.skew = int(step * 1_000_000)  # The server's clock steps.
        for store in (first, second):
            assert not store.reserve("b", caps, f"after-{id(store)}", 0, 0).granted
            after = store.committed("b", caps)
            assert after.requests == 3
            assert after.resets_in is not None and before.resets_in is not None
            assert abs(after.resets_in - before.resets_in) < 5.0
