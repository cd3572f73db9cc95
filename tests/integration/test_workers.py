"""One batch over many worker processes sharing one Redis quota: a process pool and Dask.

Every request is answered once, in input order, and no window of the limiter's period
certainly holds more admissions than the shared limit (admissions are recorded, with the
interval each happened in, by every worker into Redis).
"""

from __future__ import annotations

import multiprocessing
import pickle
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import cast

import litellm
import pytest
import redis

from fixedmodel import (
    CompletionRequest,
    DiskCacheStore,
    RateLimit,
    RateLimiter,
    RedisCacheStore,
    RedisLimiterStore,
    batch_on,
    bind_acompletion,
    bind_completion,
    with_cache,
    with_rate_limit,
    with_retries,
)
from fixedmodel.stores._limiter_store import Acquisition
from fixedmodel.testing.server import Fault, OpenAIServer
from tests.integration import redis_server as servers

# Starts other interpreters or engines; run at the newest litellm only (see scripts/test.sh).
pytestmark = pytest.mark.heavy

redis_server = servers.redis_server

LIMIT = RateLimit(requests=60, period=1.0)
ITEMS = 400


def _requests(count: int) -> list[CompletionRequest]:
    return [{"messages": [{"role": "user", "content": f"item {i}"}]} for i in range(count)]


class RecordingStore:
    """A Redis limiter store that also writes when each granted admission happened.

    It travels to the workers like the real store (rebuilt from the URL) and records into a
    Redis list, by the system clock: ``before`` and ``after`` the store's decision, so a
    window check can tell a certain excess from timing noise.
    """

    def __init__(self, url: str, namespace: str) -> None:
        self.url, self.namespace = url, namespace
        self.inner = RedisLimiterStore(url, namespace=namespace)
        self.log = redis.Redis.from_url(url)

    def __reduce__(self) -> tuple[object, ...]:
        return (RecordingStore, (self.url, self.namespace))

    def _note(self, before: float, decision: Acquisition) -> Acquisition:
        if decision.granted:
            self.log.rpush(self.namespace + "admissions", f"{before} {time.time()}")
        return decision

    def acquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        before = time.time()
        return self._note(before, self.inner.acquire(key, limit, tokens))

    async def aacquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        before = time.time()
        return self._note(before, await self.inner.aacquire(key, limit, tokens))

    def adjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        self.inner.adjust(key, limit, segment, tokens)

    async def aadjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        await self.inner.aadjust(key, limit, segment, tokens)

    def pause(self, key: str, seconds: float) -> None:
        self.inner.pause(key, seconds)

    async def apause(self, key: str, seconds: float) -> None:
        await self.inner.apause(key, seconds)

    def admissions(self) -> list[tuple[float, float]]:
        entries = self.log.lrange(self.namespace + "admissions", 0, -1)
        pairs = [entry.decode().split() for entry in cast("list[bytes]", entries)]
        return [(float(before), float(after)) for before, after in pairs]


def _max_certainly_in_window(admissions: list[tuple[float, float]], period: float) -> int:
    """The most admissions that certainly fell into one window of ``period`` seconds."""
    return max(
        (
            sum(1 for before, after in admissions if before >= start and after < start + period)
            for start, _ in admissions
        ),
        default=0,
    )


def _check_shared_quota(executor: Executor, server: OpenAIServer, url: str, label: str) -> None:
    store = RecordingStore(url, servers.unique_namespace(label))
    bound = bind_acompletion("openai/test", api_base=server.base_url, api_key="k")
    stack = with_retries(with_rate_limit(bound, RateLimiter(LIMIT, store=store, key="shared")))
    server.fault_rule = lambda body: (
        Fault.status(400) if body["messages"][0]["content"] == "item 7" else None
    )
    results = list(batch_on(executor, stack, _requests(ITEMS), chunk_size=25, concurrency=8))
    assert [result.index for result in results] == list(range(ITEMS))
    assert [result.ok for result in results] == [i != 7 for i in range(ITEMS)]
    assert isinstance(results[7].error, litellm.BadRequestError)  # rebuilt in this process
    sent = sorted(str(request.body["messages"][0]["content"]) for request in server.requests)
    assert sent == sorted(f"item {i}" for i in range(ITEMS))  # each answered once
    admissions = store.admissions()
    assert len(admissions) == ITEMS  # every request on the wire was admitted once
    assert _max_certainly_in_window(admissions, LIMIT.period) <= (LIMIT.requests or 0)


@pytest.fixture
def process_pool() -> Iterator[ProcessPoolExecutor]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        yield pool


def test_a_process_pool_shares_one_redis_quota(
    process_pool: ProcessPoolExecutor, server: OpenAIServer, redis_server: servers.RedisServer
) -> None:
    _check_shared_quota(process_pool, server, redis_server.url, "pool")


def test_dask_workers_share_one_redis_quota(
    server: OpenAIServer, redis_server: servers.RedisServer
) -> None:
    distributed = pytest.importorskip("distributed")  # a dev dependency: always there in CI
    # Loopback only, and no fixed port (another cluster on this machine may hold 8787).
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    with cluster, distributed.Client(cluster) as client:
        _check_shared_quota(client.get_executor(), server, redis_server.url, "dask")


def test_a_redis_and_disk_backed_stack_round_trips_through_pickle(
    redis_server: servers.RedisServer, tmp_path: object
) -> None:
    limiter = RateLimiter(LIMIT, store=RedisLimiterStore(redis_server.url), key="k")
    bound = bind_completion("openai/test", api_base="http://127.0.0.1:9/v1", api_key="sk-1")
    stack = with_cache(with_rate_limit(bound, limiter), RedisCacheStore(redis_server.url))
    copy = pickle.loads(pickle.dumps(stack))
    assert repr(copy) == repr(stack)
    assert copy.model == "openai/test"
    disk = with_cache(bound, DiskCacheStore(str(tmp_path)))
    assert pickle.loads(pickle.dumps(disk)).store.directory == str(tmp_path)


def test_in_process_state_refuses_to_travel_and_names_the_shared_store() -> None:
    bound = bind_completion("openai/test", mock_response="x")
    with pytest.raises(TypeError, match=r"RedisCacheStore\(url\)"):
        pickle.dumps(with_cache(bound))
    with pytest.raises(TypeError, match=r"RedisLimiterStore\(url\)"):
        pickle.dumps(with_rate_limit(bound, RateLimiter(LIMIT)))
    with pytest.raises(TypeError, match="RedisLimiterStore"):
        batch_on(ProcessPoolExecutor(1), with_rate_limit(bound, RateLimiter(LIMIT)), [])


def test_a_store_built_from_a_client_cannot_travel(redis_server: servers.RedisServer) -> None:
    store = RedisLimiterStore(client=redis.Redis.from_url(redis_server.url))
    with pytest.raises(TypeError, match="build it from a URL"):
        pickle.dumps(store)
