"""A stalled Redis delays each async store operation by at most the store's timeout.

The server is frozen with SIGSTOP: it accepts connections and answers nothing, so each
operation runs into its socket timeout. With more concurrent async callers than the store
has threads, a caller used to queue behind the others (seconds, not the 0.25 s timeout).
Each delay is compared with the store's timeout plus a margin taken from a baseline measured
in the same test, while Redis answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from fixedmodel import CooldownPolicy, RedisCooldownStore
from fixedmodel.stores import RedisCacheStore
from tests.integration.redis_server import RedisServer, own_redis_server, unique_namespace

__all__ = ["own_redis_server"]  # A fixture, used by name.

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
    # It did reach the stall: most calls waited for their timeout.
    assert sorted(stalled)[CALLS // 2] >= TIMEOUT * 0.5, sorted(stalled)[CALLS // 2]


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
