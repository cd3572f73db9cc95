"""A stalled Redis delays each async store operation by at most the store's timeout.

The server is frozen with SIGSTOP: it accepts connections and answers nothing, so each
operation runs into its socket timeout. With more concurrent async callers than the store
has threads, a caller used to queue behind the others (seconds, not the 0.25 s timeout).
Each delay is compared with the store's timeout plus a margin taken from a baseline measured
in the same test, while Redis answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.exceptions import TimeoutError as RedisTimeoutError

from fixedmodel import (
    CooldownPolicy,
    RateLimit,
    RateLimiter,
    RedisBudgetStore,
    RedisCooldownStore,
    RedisLimiterStore,
    RedisUnavailableError,
)
from fixedmodel.stores import RedisCacheStore
from fixedmodel.stores._budget_store import Caps
from fixedmodel.stores.redis_limiter import OnError
from tests.integration.redis_server import (
    RedisServer,
    own_redis_server,
    redis_server,
    unique_namespace,
)
from tests.integration.test_redis_limiter import in_forked_child

__all__ = ["own_redis_server", "redis_server"]  # Fixtures, used by name.

TIMEOUT = 0.25
CALLS = 200
CONCURRENCY = 64


async def _delays(operation: Callable[[int], Awaitable[object]]) -> list[float]:
    """Each call's seconds, ``CALLS`` calls at most ``CONCURRENCY`` at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def timed(index: int) -> float:
        async with gate:
            started = time.perf_counter()
            await operation(index)
            return time.perf_counter() - started

    return list(await asyncio.gather(*(timed(i) for i in range(CALLS))))


def _assert_bounded(server: RedisServer, operation: Callable[[int], Awaitable[object]]) -> None:
    baseline = asyncio.run(_delays(operation))
    # What the machine adds to a call that Redis answers at once (scheduling, the thread hop),
    # with room for a loaded machine; queueing behind 8 threads added seconds (2 s here).
    margin = 0.5 + 3 * max(baseline)
    server.freeze()
    try:
        stalled = asyncio.run(_delays(operation))
    finally:
        server.thaw()
    assert max(stalled) <= TIMEOUT + margin, (max(stalled), max(baseline))
    # It did reach the stall: the first wave of callers waited for their timeout (those after
    # it fail at once while the store rests, see stores/_redis.py).
    assert sorted(stalled)[-CONCURRENCY // 2] >= TIMEOUT * 0.5, sorted(stalled)[-CONCURRENCY:]


def test_cooldown_store(own_redis_server: RedisServer) -> None:
    store = RedisCooldownStore(
        own_redis_server.url,
        namespace=unique_namespace("stall"),
        timeout=TIMEOUT,
        on_error="open",
    )
    policy = CooldownPolicy()
    try:
        _assert_bounded(own_redis_server, lambda i: store.aenter(f"deployment-{i % 4}", policy))
    finally:
        store.close()


def test_cache_store(own_redis_server: RedisServer) -> None:
    store = RedisCacheStore(
        own_redis_server.url, namespace=unique_namespace("stall"), timeout=TIMEOUT
    )
    try:
        _assert_bounded(own_redis_server, lambda i: store.aget(f"key-{i}"))
    finally:
        store.close()


@pytest.mark.parametrize("concurrency", [8, 64])
def test_a_stall_shorter_than_the_timeout_is_waited_out(
    own_redis_server: RedisServer, concurrency: int
) -> None:
    """A slow answer within the timeout is still an answer, not a failure."""
    store = RedisCacheStore(own_redis_server.url, namespace=unique_namespace("stall"), timeout=2.0)

    async def main() -> list[bytes | None]:
        await store.aset("present", b"value", None)
        own_redis_server.freeze()
        asyncio.get_running_loop().call_later(0.3, own_redis_server.thaw)
        return list(await asyncio.gather(*(store.aget("present") for _ in range(concurrency))))

    try:
        assert asyncio.run(main()) == [b"value"] * concurrency
    finally:
        own_redis_server.thaw()
        store.close()


# --- callers that ask one after another ---------------------------------------------------


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_a_rate_limiters_line_waits_one_timeout_not_one_per_caller(
    own_redis_server: RedisServer, on_error: OnError
) -> None:
    # The line asks Redis for one caller at a time: 64 callers each waited out the timeout
    # of the one before (16 s) until a timeout made the store rest.
    store = RedisLimiterStore(
        own_redis_server.url,
        namespace=unique_namespace("stall"),
        timeout=TIMEOUT,
        on_error=on_error,
    )
    limiter = RateLimiter(RateLimit(requests=10_000), store=store)

    async def callers() -> list[float]:
        await limiter.aacquire()  # Connected while Redis answers.
        own_redis_server.freeze()
        started = time.perf_counter()

        async def one() -> float:
            with contextlib.suppress(RedisUnavailableError):
                await limiter.aacquire()
            return time.perf_counter() - started

        return list(await asyncio.gather(*(one() for _ in range(CONCURRENCY))))

    try:
        waited = asyncio.run(callers())
    finally:
        own_redis_server.thaw()
        store.close()
    assert max(waited) <= 4 * TIMEOUT, sorted(waited)[-5:]
    assert min(waited) >= TIMEOUT * 0.5  # The first in line did reach the stall.


def test_a_balancer_asking_about_each_deployment_waits_one_timeout(
    own_redis_server: RedisServer,
) -> None:
    # A balancer's call asks about its deployment, then reports on it; each question used to
    # wait out its own timeout (here 6 in a row: 1.5 s).
    store = RedisCooldownStore(
        own_redis_server.url,
        namespace=unique_namespace("stall"),
        timeout=TIMEOUT,
        on_error="open",
    )
    policy = CooldownPolicy()

    def ask_about_each() -> float:
        started = time.perf_counter()
        for index in range(6):
            assert store.enter(f"deployment-{index}", policy).granted  # Open: let through.
        return time.perf_counter() - started

    try:
        assert store.enter("deployment-0", policy).granted
        own_redis_server.freeze()
        waited = ask_about_each()
    finally:
        own_redis_server.thaw()
    try:
        assert TIMEOUT * 0.5 <= waited <= 3 * TIMEOUT, waited
        time.sleep(TIMEOUT)  # The rest is over: Redis is asked, and answers, again.
        assert store.enter("deployment-0", policy).granted
    finally:
        store.close()


# --- a burst on a healthy Redis is not a stall ------------------------------------------------


class _SlowRedis(redis.Redis):
    """A client whose every command takes 50 ms more: a busy Redis that still answers."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        time.sleep(0.05)
        return super().execute_command(*args, **options)


def test_callers_queued_behind_answered_ones_wait_their_turn(redis_server: RedisServer) -> None:
    # 64 reservations at once on 8 threads, 50 ms each: the last wait 0.4 s for their turn
    # while Redis answers every one. Counted as a timeout, a third of them were refused
    # (on_error="closed") and the store then rested, refusing the next calls too.
    client = _SlowRedis.from_url(redis_server.url, socket_timeout=TIMEOUT)
    store = RedisBudgetStore(client=client, namespace=unique_namespace("burst"))
    caps = Caps(cost=None, tokens=None, requests=1000, period=None)

    async def main() -> list[bool]:
        calls = [store.areserve("b", caps, f"call-{i}", 0, 0) for i in range(CONCURRENCY)]
        return [reservation.granted for reservation in await asyncio.gather(*calls)]

    try:
        assert asyncio.run(main()) == [True] * CONCURRENCY
        assert store.reserve("b", caps, "after", 0, 0).granted
    finally:
        store.close()
        client.close()


class _OneConnectionHangs(redis.Redis):
    """A client whose commands about a key named ``hung`` take 1 s (a connection to a dead
    primary, tried again by redis-py's retries) while every other command is answered."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if any("hung" in str(arg) for arg in args):
            time.sleep(4 * TIMEOUT)
        return super().execute_command(*args, **options)


def test_a_running_operation_still_fails_after_the_timeout_while_others_are_answered(
    redis_server: RedisServer,
) -> None:
    # Only waiting in the queue is excused by Redis answering others: an operation already
    # running had its caller wait 1 s (four timeouts) because other callers were answered
    # meanwhile.
    client = _OneConnectionHangs.from_url(redis_server.url, socket_timeout=TIMEOUT)
    namespace = unique_namespace("one-hangs")
    store = RedisBudgetStore(client=client, namespace=namespace, on_error="open")
    caps = Caps(cost=None, tokens=None, requests=10_000, period=None)

    async def others(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await store.areserve("busy", caps, "call", 0, 0)

    async def main() -> float:
        stop = asyncio.Event()
        background = asyncio.ensure_future(others(stop))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await store.areserve("hung", caps, "call", 0, 0)
        elapsed = time.monotonic() - start
        stop.set()
        await background
        return elapsed

    try:
        assert asyncio.run(main()) < TIMEOUT * 2.5
    finally:
        store.close()
        client.close()


# --- what the rest must not do --------------------------------------------------------------


def _start_a_rest(store: RedisBudgetStore | RedisLimiterStore) -> None:
    """As after an operation that timed out (what a frozen Redis does, without the wait)."""
    store._health.timed_out(RedisTimeoutError("as if frozen"))  # pyright: ignore[reportPrivateUsage]


def test_a_settlement_made_while_the_store_rests_reaches_redis(
    own_redis_server: RedisServer,
) -> None:
    # An async-only store has no thread that retries a skipped settlement: it stayed held.
    caps = Caps(cost=1000, tokens=None, requests=None, period=None)
    client = redis.asyncio.Redis.from_url(own_redis_server.url, socket_timeout=TIMEOUT)
    store = RedisBudgetStore(async_client=client, namespace=unique_namespace("rest"))

    async def main() -> int:
        assert (await store.areserve("b", caps, "one", 800, 0)).granted
        _start_a_rest(store)
        await store.asettle("b", caps, "one", 100, 0)
        committed = await store.acommitted("b", caps)  # Asked during the rest too.
        await client.aclose()
        return committed.held_cost

    try:
        assert asyncio.run(main()) == 0
    finally:
        store.close()


def test_the_rest_is_as_long_as_the_callers_own_client_waits(
    own_redis_server: RedisServer,
) -> None:
    # A store given client= waits for Redis as long as the client's socket_timeout; its own
    # timeout argument does not apply to it, and did set the rest (0.25 s here).
    client = redis.Redis.from_url(own_redis_server.url, socket_timeout=0.05)
    store = RedisLimiterStore(client=client, namespace=unique_namespace("rest"), on_error="closed")
    limit = RateLimit(requests=1000)
    try:
        assert store.acquire("q", limit, 0).granted
        own_redis_server.freeze()
        try:
            with pytest.raises(RedisUnavailableError):
                store.acquire("q", limit, 0)
        finally:
            own_redis_server.thaw()
        time.sleep(0.1)
        assert store.acquire("q", limit, 0).granted
    finally:
        store.close()
        client.close()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_does_not_inherit_the_rest(own_redis_server: RedisServer) -> None:
    store = RedisLimiterStore(
        own_redis_server.url, namespace=unique_namespace("rest"), on_error="closed"
    )
    limit = RateLimit(requests=1000)
    try:
        assert store.acquire("q", limit, 0).granted
        _start_a_rest(store)
        with pytest.raises(RedisUnavailableError):  # Resting here.
            store.acquire("q", limit, 0)
        assert in_forked_child(lambda: store.acquire("q", limit, 0)) == 0
    finally:
        store.close()
