"""Cooldowns and budgets shared through a real redis-server on loopback, across processes.

The worker processes are forked (litellm is already imported, so they start at once); each
makes its own HTTP clients and Redis connections, and talks to the loopback servers of the
parent over real sockets.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from multiprocessing.queues import Queue
from typing import Any

import litellm
import pytest

from fixedmodel import (
    Budget,
    CooldownPolicy,
    RedisBudgetStore,
    RedisCooldownStore,
    RedisUnavailableError,
    bind_completion,
    responses,
    with_budget,
    with_load_balancing,
)
from fixedmodel.stores._budget_store import Caps
from tests.integration import redis_server as servers
from tests.integration.redis_server import own_redis_server, redis_server
from tests.support.openai_server import Fault, OpenAIServer

__all__ = ["own_redis_server", "redis_server"]  # Fixtures, used by name.

MESSAGES = [{"role": "user", "content": "Hello there?"}]
MODEL = "openai/gpt-4o-mini"
FORK = multiprocessing.get_context("fork")


@pytest.fixture
def http_servers() -> Iterator[list[OpenAIServer]]:
    started = [OpenAIServer().start() for _ in range(2)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def _balanced(urls: list[str], redis_url: str, namespace: str, owned: list[Any]) -> Any:
    """A load balancer over ``urls`` sharing cooldowns in Redis; what to close goes to owned."""
    store = RedisCooldownStore(redis_url, namespace=namespace)
    deployments = {
        f"region-{i}": bind_completion(MODEL, api_base=url, api_key="k")
        for i, url in enumerate(urls)
    }
    owned += [store, *deployments.values()]
    return with_load_balancing(deployments, "round_robin", store=store, key="gpt")


def second_process(urls: list[str], redis_url: str, namespace: str, results: Queue) -> None:
    stores: list[Any] = []
    chat = _balanced(urls, redis_url, namespace, stores)
    served = [responses.text(chat(messages=MESSAGES)) for _ in range(6)]
    for owned in stores:
        owned.close()
    results.put(served)


def test_a_second_process_skips_the_deployment_the_first_saw_failing(
    redis_server: servers.RedisServer, http_servers: list[OpenAIServer]
) -> None:
    failing, healthy = http_servers
    namespace = servers.unique_namespace("cooldown")
    urls = [failing.base_url, healthy.base_url]
    stores: list[Any] = []
    chat = _balanced(urls, redis_server.url, namespace, stores)
    failing.enqueue(Fault.status(429, retry_after=30))
    # The first call lands on region-0, which 429s with Retry-After: it cools down in Redis.
    assert responses.text(chat(messages=MESSAGES)) == healthy.reply_text
    assert failing.request_count() == 1
    for owned in stores:
        owned.close()

    results = FORK.Queue()
    worker = FORK.Process(target=second_process, args=(urls, redis_server.url, namespace, results))
    worker.start()
    served = results.get(timeout=60)
    worker.join(timeout=30)
    assert worker.exitcode == 0
    assert served == [healthy.reply_text] * 6
    assert failing.request_count() == 1  # Not one request from the second process.
    assert healthy.request_count() == 7


def test_the_circuit_rule_holds_in_redis(redis_server: servers.RedisServer) -> None:
    policy = CooldownPolicy(failures=2, cooldown=0.3, probe_timeout=5.0)
    namespace = servers.unique_namespace("rule")
    with RedisCooldownStore(redis_server.url, namespace=namespace) as store:
        assert store.enter("d", policy).granted
        store.failed("d", policy, probe=False, cool_for=None)
        assert store.enter("d", policy).failures == 1
        store.failed("d", policy, probe=False, cool_for=None)
        refused = store.enter("d", policy)
        assert not refused.granted and 0.2 < refused.retry_in <= 0.3
        time.sleep(0.31)
        assert store.enter("d", policy).probe  # Half-open: one probe.
        assert not store.enter("d", policy).granted  # ... at a time.
        store.failed("d", policy, probe=True, cool_for=None)
        assert not store.enter("d", policy).granted
        time.sleep(0.31)
        assert store.enter("d", policy).probe
        store.released("d")
        assert store.enter("d", policy).probe
        store.succeeded("d")
        closed = store.enter("d", policy)
        assert closed.granted and not closed.probe and closed.failures == 0
        store.failed("d", policy, probe=False, cool_for=2.0)  # A Retry-After of 2 s.
        assert 1.9 < store.enter("d", policy).retry_in <= 2.0


def test_cooldowns_follow_on_error_when_redis_is_down(
    own_redis_server: servers.RedisServer,
) -> None:
    policy = CooldownPolicy()
    url = own_redis_server.url
    with (
        RedisCooldownStore(url, on_error="open") as open_store,
        RedisCooldownStore(url, on_error="closed") as closed_store,
    ):
        own_redis_server.stop()
        assert open_store.enter("d", policy).granted
        open_store.failed("d", policy, probe=False, cool_for=None)  # Logged, not raised.
        with pytest.raises(RedisUnavailableError):
            closed_store.enter("d", policy)


def budget_worker(url: str, redis_url: str, namespace: str, cap: float, results: Queue) -> None:
    store = RedisBudgetStore(redis_url, namespace=namespace)
    budget = Budget(max_cost=cap, store=store, key="team")
    made = 0
    with bind_completion(MODEL, api_base=url, api_key="k") as bound:
        chat = with_budget(bound, budget)
        while made < 200:
            try:
                chat(messages=MESSAGES, max_tokens=30)
            except litellm.BudgetExceededError:
                break
            made += 1
    store.close()
    results.put(made)


def test_four_processes_never_spend_past_a_shared_budget(
    redis_server: servers.RedisServer, http_servers: list[OpenAIServer]
) -> None:
    server = http_servers[0]
    info = litellm.get_model_info(MODEL)
    prompt, completion = len(MESSAGES[0]["content"].split()), len(server.reply_text.split())
    real = prompt * info["input_cost_per_token"] + completion * info["output_cost_per_token"]
    cap = 40 * real  # Real spending would allow 40 calls; worst cases allow fewer at once.
    namespace = servers.unique_namespace("budget")
    results = FORK.Queue()
    workers = [
        FORK.Process(
            target=budget_worker,
            args=(server.base_url, redis_server.url, namespace, cap, results),
        )
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    made = [results.get(timeout=90) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    # Every request the server saw is paid for, priced by litellm the same way.
    spent = server.request_count() * real
    assert sum(made) == server.request_count()
    assert spent <= cap * (1 + 1e-9)
    # Settlement frees each worst case, so calls stop only when less than one worst case
    # is left under the cap.
    probe: Any = with_budget(bind_completion(MODEL), Budget(max_cost=1.0))
    worst, _ = probe._worst_case(probe._read({"messages": MESSAGES, "max_tokens": 30}))
    assert server.request_count() >= (cap - worst / 1e9) / real - 1e-6
    with RedisBudgetStore(redis_server.url, namespace=namespace) as store:
        status = Budget(max_cost=cap, store=store, key="team").status()
    assert status.cost == pytest.approx(spent, rel=1e-6)
    assert status.requests == sum(made)  # A refused call is no request.


def test_budget_windows_and_settlement_in_redis(redis_server: servers.RedisServer) -> None:
    caps = Caps(cost=1000, tokens=None, requests=3, period=0.5)
    with RedisBudgetStore(redis_server.url, namespace=servers.unique_namespace("w")) as store:
        first = store.reserve("b", caps, "first", 600, 10)
        assert first.granted and first.committed.cost == 600
        assert not store.reserve("b", caps, "second", 500, 10).granted
        store.settle("b", caps, "first", 200, 5)
        assert store.reserve("b", caps, "third", 500, 10).granted
        assert store.committed("b", caps).cost == 700
        time.sleep(0.5)
        fresh = store.committed("b", caps)
        assert fresh.cost == 0 and fresh.requests == 0
        assert fresh.resets_in is not None and 0 < fresh.resets_in <= 0.5
        store.settle("b", caps, "third", 10_000, 0)  # An old window: dropped.
        assert store.committed("b", caps).cost == 0


def test_a_budget_fails_closed_when_redis_is_down(
    own_redis_server: servers.RedisServer,
) -> None:
    with RedisBudgetStore(own_redis_server.url) as store:
        budget = Budget(max_requests=10, store=store)
        own_redis_server.stop()
        chat = with_budget(bind_completion(MODEL, api_base="http://127.0.0.1:9/v1"), budget)
        with pytest.raises(RedisUnavailableError):
            chat(messages=MESSAGES)
