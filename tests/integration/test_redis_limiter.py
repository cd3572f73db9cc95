"""RedisLimiterStore against a real redis-server: one quota for several processes.

Admission times are recorded around each store call (``before``/``after`` by the system
clock, which the local redis-server shares), so a window check can tell a certain violation
from timing noise: an admission happened somewhere in its ``[before, after]`` interval.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
import redis.asyncio

from fixedmodel import bind_acompletion, bind_completion, bind_embedding
from fixedmodel.middleware.rate_limit import RateLimit, RateLimiter, with_rate_limit
from fixedmodel.stores._limiter_store import SEGMENTS_PER_PERIOD, Acquisition, LimiterStore
from fixedmodel.stores._redis import redact_url
from fixedmodel.stores.redis_limiter import RedisLimiterStore, RedisUnavailableError
from tests.integration import redis_server as servers

redis_server = servers.redis_server
own_redis_server = servers.own_redis_server

ROOT = Path(__file__).parents[2]
LIMIT = RateLimit(requests=20, period=1.0)
WORKERS = 4
DURATION = 4.0


class RecordingStore:
    """A LimiterStore that records when each granted acquire happened, by the system clock."""

    def __init__(self, inner: RedisLimiterStore) -> None:
        self.inner = inner
        self.admissions: list[tuple[float, float]] = []

    def acquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        before = time.time()
        decision = self.inner.acquire(key, limit, tokens)
        if decision.granted:
            self.admissions.append((before, time.time()))
        return decision

    async def aacquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        return self.acquire(key, limit, tokens)

    def adjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        self.inner.adjust(key, limit, segment, tokens)

    async def aadjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        self.inner.adjust(key, limit, segment, tokens)

    def pause(self, key: str, seconds: float) -> None:
        self.inner.pause(key, seconds)

    async def apause(self, key: str, seconds: float) -> None:
        self.inner.pause(key, seconds)


def _trivial(**kwargs: object) -> None:
    return None


def burst_worker(url: str, namespace: str, ready: Barrier, results: Queue) -> None:
    """Call through one shared quota as fast as the limiter lets it, for DURATION seconds."""
    store = RecordingStore(RedisLimiterStore(url, namespace=namespace))
    call = with_rate_limit(_trivial, RateLimiter(LIMIT, store=store, key="shared"))
    # Connect, and import litellm's token counter (seconds on a busy machine), before the
    # start: a first call after it would spend the whole measured window importing.
    warm_up = RateLimiter(RateLimit(requests=10**9), store=store.inner, key="warm-up")
    with_rate_limit(_trivial, warm_up)(messages=[{"role": "user", "content": "hi"}])
    ready.wait(timeout=120)
    deadline = time.time() + DURATION
    while time.time() < deadline:
        call(messages=[{"role": "user", "content": "hi"}])
    store.inner.close()
    results.put(store.admissions)


def _max_certainly_in_window(admissions: list[tuple[float, float]], period: float) -> int:
    """The most admissions that certainly fell into one window of ``period`` seconds."""
    most = 0
    for start, _ in admissions:
        # Windows starting just before an admission's earliest possible time are the tightest.
        inside = sum(
            1 for before, after in admissions if before >= start and after < start + period
        )
        most = max(most, inside)
    return most


@pytest.mark.heavy  # Starts worker processes; run at the newest litellm only.
def test_worker_processes_share_one_quota(redis_server: servers.RedisServer) -> None:
    namespace = servers.unique_namespace("workers")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ready = context.Barrier(WORKERS + 1)
    workers = [
        context.Process(target=burst_worker, args=(redis_server.url, namespace, ready, results))
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    ready.wait(timeout=120)  # Every worker has started, imported and connected.
    start = time.time()
    admissions = [item for _ in workers for item in results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    assert LIMIT.requests is not None
    assert _max_certainly_in_window(admissions, LIMIT.period) <= LIMIT.requests

    within = [a for a in admissions if a[1] <= start + DURATION]
    assert len(within) >= 0.9 * LIMIT.requests * DURATION / LIMIT.period, len(within)


def test_namespaces_keep_quotas_apart(redis_server: servers.RedisServer) -> None:
    limit = RateLimit(requests=2, period=10.0)
    with (
        RedisLimiterStore(redis_server.url, namespace=servers.unique_namespace("a")) as first,
        RedisLimiterStore(redis_server.url, namespace=servers.unique_namespace("b")) as second,
    ):
        assert all(first.acquire("quota", limit, 0).granted for _ in range(2))
        assert not first.acquire("quota", limit, 0).granted
        assert all(second.acquire("quota", limit, 0).granted for _ in range(2))
        assert not second.acquire("quota", limit, 0).granted


def test_token_budget_refund_and_oversized_request(redis_server: servers.RedisServer) -> None:
    limit = RateLimit(tokens=100, period=10.0)
    with RedisLimiterStore(redis_server.url, namespace=servers.unique_namespace("tok")) as store:
        first = store.acquire("q", limit, 60)
        assert first.granted
        refused = store.acquire("q", limit, 50)
        assert not refused.granted
        assert 10.0 < refused.retry_in <= 10.0 + 10.0 / SEGMENTS_PER_PERIOD
        store.adjust("q", limit, first.segment, -20)  # The call used 40 tokens.
        assert store.acquire("q", limit, 50).granted
        store.adjust("q", limit, first.segment, -10_000)  # A refund stops at zero: 0 of 100.
        assert store.acquire("q", limit, 100).granted
        assert not store.acquire("q", limit, 1).granted

        # A request larger than the whole budget goes alone, once the window is empty.
        assert store.acquire("big", limit, 150).granted
        assert not store.acquire("big", limit, 1).granted
        store.adjust("big", limit, -1, 5)  # Admitted while Redis was down: nothing to do.


def test_keys_expire_when_idle_and_hold_no_request_data(
    redis_server: servers.RedisServer,
) -> None:
    namespace = servers.unique_namespace("ttl")
    limit = RateLimit(requests=5, tokens=1000, period=0.05)
    client = redis.Redis.from_url(redis_server.url)
    state = {"head", "next", "requests", "tokens", "paused", "offset", "last"}
    with RedisLimiterStore(redis_server.url, namespace=namespace) as store:
        for _ in range(3):
            assert store.acquire("quota", limit, 7).granted
        fields = {name.decode() for name in client.hkeys(namespace + "quota")}
        assert state <= fields
        assert all(name.startswith("s") for name in fields - state)
        # An hour and a period: long enough to outlive a forward step of the server clock.
        assert 3600_000 < client.pttl(namespace + "quota") <= 3600_000 + 1051
    client.close()


# --- clock steps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [-1200.0, -5.0, 1200.0, 5.0],
    ids=["back 20 min", "back 5 s", "forward 20 min", "forward 5 s"],
)
def test_a_clock_step_keeps_the_window_within_one_period(
    redis_server: servers.RedisServer, step: float
) -> None:
    limit = RateLimit(requests=5, period=1.0)
    hold = limit.period * (1 + 1 / SEGMENTS_PER_PERIOD)
    namespace = servers.unique_namespace("step")
    with (
        RedisLimiterStore(redis_server.url, namespace=namespace) as first,
        RedisLimiterStore(redis_server.url, namespace=namespace) as second,
    ):
        assert second.acquire("quota", limit, 0).granted
        for _ in range(4):
            assert first.acquire("quota", limit, 0).granted
        started = time.monotonic()
        for store in (first, second):
            store._clock.skew = int(step * 1_000_000)  # The server's clock steps.
        for store in (first, second):
            decision = store.acquire("quota", limit, 0)
            assert not decision.granted  # Stepped forward: no second budget at once.
            assert decision.retry_in <= hold  # Stepped back: not refused for the step.
        time.sleep(max(0.0, hold - (time.monotonic() - started)) + 0.05)
        for _ in range(5):  # One period on, the window admits a full budget again.
            assert first.acquire("quota", limit, 0).granted
        assert not second.acquire("quota", limit, 0).granted


PAUSE_PROBE = """
import sys
from fixedmodel.middleware.rate_limit import RateLimit
from fixedmodel.stores.redis_limiter import RedisLimiterStore
with RedisLimiterStore(sys.argv[1], namespace=sys.argv[2]) as store:
    decision = store.acquire("shared", RateLimit(requests=1000, period=1.0), 0)
print(decision.granted, decision.retry_in)
"""


@pytest.mark.heavy  # Starts other processes; run at the newest litellm only.
def test_a_429_pause_holds_for_other_processes(redis_server: servers.RedisServer) -> None:
    namespace = servers.unique_namespace("pause")
    store = RedisLimiterStore(redis_server.url, namespace=namespace)
    limiter = RateLimiter(RateLimit(requests=1000, period=1.0), store=store, key="shared")

    class TooManyRequests(Exception):
        """Shaped like a provider's 429 with a Retry-After header."""

        status_code = 429

        def __init__(self) -> None:
            super().__init__("429")
            self.response = SimpleNamespace(headers={"retry-after": "3"})

    def provider(**kwargs: object) -> None:
        raise TooManyRequests

    with pytest.raises(TooManyRequests):
        with_rate_limit(provider, limiter)(messages=[])
    probe = subprocess.run(
        [sys.executable, "-c", PAUSE_PROBE, redis_server.url, namespace],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    granted, retry_in = probe.stdout.split()
    assert granted == "False"
    assert 0.5 < float(retry_in) <= 3.0
    # A shorter pause never shortens the one in force.
    store.pause("shared", 0.1)
    assert not store.acquire("shared", limiter.limit, 0).granted
    store.close()


def test_script_is_loaded_again_after_a_flush(redis_server: servers.RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    with RedisLimiterStore(redis_server.url, namespace=servers.unique_namespace("flush")) as store:
        assert store.acquire("q", LIMIT, 0).granted
        client.script_flush()
        assert store.acquire("q", LIMIT, 0).granted
    client.close()


def test_an_async_client_of_your_own(redis_server: servers.RedisServer) -> None:
    limit = RateLimit(requests=2, tokens=100, period=10.0)

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        store = RedisLimiterStore(async_client=client, namespace=servers.unique_namespace("async"))
        first = await store.aacquire("q", limit, 90)
        assert first.granted
        assert not (await store.aacquire("q", limit, 20)).granted
        await client.script_flush()  # The async path loads the script again, too.
        await store.aadjust("q", limit, first.segment, -80)
        assert (await store.aacquire("q", limit, 20)).granted
        await store.apause("other", 5.0)
        refused = await store.aacquire("other", limit, 0)
        assert not refused.granted
        assert 4.0 < refused.retry_in <= 5.0
        with pytest.raises(TypeError, match="only async_client"):
            store.acquire("q", limit, 0)
        await client.aclose()

    asyncio.run(scenario())


def test_a_store_without_a_sync_client_is_refused_for_a_sync_callable_at_wrap_time(
    redis_server: servers.RedisServer,
) -> None:
    unused = redis.asyncio.Redis.from_url(redis_server.url)  # Never connects: nothing to close.
    async_only = RedisLimiterStore(async_client=unused, namespace=servers.unique_namespace("kinds"))
    limiter = RateLimiter(LIMIT, store=async_only)
    for sync_callable in (
        bind_completion("openai/gpt-4o-mini", mock_response="ok"),
        bind_embedding("openai/text-embedding-3-small", mock_response=[0.1]),
        _trivial,
    ):
        with pytest.raises(TypeError, match=r"only async_client=.*pass client="):
            with_rate_limit(sync_callable, limiter)  # type: ignore[call-overload]
    # Async callables are served by either client: an async-only store, or a sync-only one
    # (whose async methods run the sync client on threads).
    with_rate_limit(bind_acompletion("openai/gpt-4o-mini", mock_response="ok"), limiter)
    with RedisLimiterStore(redis_server.url, namespace=servers.unique_namespace("kinds")) as url:
        chat = with_rate_limit(
            bind_acompletion("openai/gpt-4o-mini", mock_response="ok"),
            RateLimiter(LIMIT, store=url),
        )
        asyncio.run(chat(messages=[{"role": "user", "content": "hi"}]))


def _timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.monotonic()
    try:
        result = action()
    except Exception as exc:
        result = exc
    return time.monotonic() - started, result


@pytest.mark.heavy  # Seconds of fixedmodel's own logic; run at the newest litellm only.
def test_redis_down_follows_the_policy_then_recovers(
    own_redis_server: servers.RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    limit = RateLimit(requests=3, period=1.0)
    namespace = servers.unique_namespace("down")
    fail_open = RedisLimiterStore(own_redis_server.url, namespace=namespace, timeout=0.25)
    fail_closed = RedisLimiterStore(
        own_redis_server.url, namespace=namespace, on_error="closed", timeout=0.25
    )
    open_limiter = RateLimiter(limit, store=fail_open, key="q")
    closed_limiter = RateLimiter(limit, store=fail_closed, key="q")
    assert open_limiter.acquire().segment >= 0
    # Baseline under the same load: the slowest acquire with Redis up (the async one builds a
    # loop and a client). An outage may add the 0.25 s timeout and a little more, never a hang.
    healthy = max(
        _timed(open_limiter.acquire)[0],
        _timed(lambda: asyncio.run(open_limiter.aacquire()))[0],
    )
    bound = 0.75 + 2 * healthy
    caplog.set_level(logging.INFO, logger="fixedmodel.redis")

    for outage in ("stopped", "frozen"):
        if outage == "stopped":
            own_redis_server.stop()
        else:
            own_redis_server.freeze()
        elapsed, permit = _timed(open_limiter.acquire)
        assert elapsed < bound, (outage, elapsed, healthy)
        assert getattr(permit, "segment", None) == -1, permit  # Let through, unlimited.
        elapsed, error = _timed(closed_limiter.acquire)
        assert elapsed < bound, (outage, elapsed, healthy)
        assert isinstance(error, RedisUnavailableError), error
        assert "on_error='closed'" in str(error)
        elapsed, _ = _timed(lambda: asyncio.run(open_limiter.aacquire()))
        assert elapsed < bound, (outage, elapsed, healthy)
        # Corrections and pauses are best effort: they never raise.
        fail_closed.adjust("q", limit, 12345, 10)
        fail_closed.pause("q", 1.0)
        if outage == "stopped":
            own_redis_server.start()
        else:
            own_redis_server.thaw()
        # What was admitted before (and, from a frozen Redis, during) the outage expires.
        time.sleep(1.3)
        # Same objects, same port: limiting resumes, the script is loaded again.
        granted = [fail_open.acquire("q", limit, 0).granted for _ in range(4)]
        assert granted == [True, True, True, False], (outage, granted)
        time.sleep(1.1)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("on_error='open'" in r.getMessage() for r in warnings)
    assert any("on_error='closed'" in r.getMessage() for r in warnings)
    assert any("answers again" in r.getMessage() for r in caplog.records)
    fail_open.close()
    fail_closed.close()


def test_password_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    url = "redis://user:hunter2@127.0.0.1:1/0?password=hunter2"
    caplog.set_level(logging.DEBUG, logger="fixedmodel.redis")
    with RedisLimiterStore(url, on_error="closed") as store:
        assert "hunter2" not in repr(store)
        assert "user:***@127.0.0.1:1" in repr(store)
        with pytest.raises(RedisUnavailableError) as raised:
            store.acquire("q", LIMIT, 0)
        assert "hunter2" not in str(raised.value)
    assert caplog.records
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("rediss://user:p%40ss@h:6380/2", "rediss://user:***@h:6380/2"),
        ("unix://:pw@/tmp/r.sock?db=1&password=pw", "unix://:***@/tmp/r.sock?db=1&password=***"),
        (  # redis-py passes ssl_password on as the TLS key's passphrase.
            "rediss://h:6380/0?ssl_password=pw&ssl_certfile=c.pem&SSL_Password=pw",
            "rediss://h:6380/0?ssl_password=***&ssl_certfile=c.pem&SSL_Password=***",
        ),
    ],
)
def test_urls_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_conforms_and_rejects_misconfiguration(redis_server: servers.RedisServer) -> None:
    with RedisLimiterStore(redis_server.url) as store:
        assert isinstance(store, LimiterStore)
    with pytest.raises(TypeError, match="needs a Redis URL"):
        RedisLimiterStore()
    with pytest.raises(ValueError, match="on_error"):
        RedisLimiterStore(redis_server.url, on_error="maybe")
    with pytest.raises(ValueError, match="namespace"):
        RedisLimiterStore(redis_server.url, namespace="")
    with pytest.raises(ValueError, match="timeout"):
        RedisLimiterStore(redis_server.url, timeout=0)
    client = redis.Redis.from_url(redis_server.url)
    with pytest.raises(TypeError, match="not both"):
        RedisLimiterStore(redis_server.url, client=client)
    client.close()


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
def test_a_forked_child_uses_a_url_store_even_with_its_locks_held_at_the_fork(
    redis_server: servers.RedisServer,
) -> None:
    limit = RateLimit(requests=1000, period=1.0)
    with RedisLimiterStore(redis_server.url, namespace=servers.unique_namespace("fork")) as store:
        assert store.acquire("q", limit, 0).granted
        assert asyncio.run(store.aacquire("q", limit, 0)).granted  # Its worker threads run.
        internals = (store._clients._lock, store._health._lock)  # pyright: ignore[reportPrivateUsage]
        taken, release = threading.Event(), threading.Event()

        def hold() -> None:
            with internals[0], internals[1]:
                taken.set()
                release.wait()

        holder = threading.Thread(target=hold)
        holder.start()
        taken.wait()

        def child() -> None:
            assert store.acquire("q", limit, 0).granted
            assert asyncio.run(store.aacquire("q", limit, 0)).granted
            store._health.failed("acquire", OSError("x"), "test")  # pyright: ignore[reportPrivateUsage]
            store._health.succeeded()  # pyright: ignore[reportPrivateUsage]

        try:
            assert in_forked_child(child) == 0
        finally:
            release.set()
            holder.join()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_closes_a_store_whose_pool_was_busy_at_the_fork(
    redis_server: servers.RedisServer,
) -> None:
    # A parent thread handing work to the store's pool at the fork holds the pool's shutdown
    # lock; the child's copy of the pool has no threads, and shutting it down hung forever.
    limit = RateLimit(requests=1000, period=1.0)
    with RedisLimiterStore(redis_server.url, namespace=servers.unique_namespace("fork")) as store:
        assert asyncio.run(store.aacquire("q", limit, 0)).granted  # The pool exists.
        pool = store._clients._executor  # pyright: ignore[reportPrivateUsage]
        assert pool is not None
        taken, release = threading.Event(), threading.Event()

        def hold() -> None:
            with pool._shutdown_lock:  # pyright: ignore[reportAttributeAccessIssue]
                taken.set()
                release.wait()

        holder = threading.Thread(target=hold)
        holder.start()
        taken.wait()
        try:
            assert in_forked_child(store.close, timeout=5.0) == 0
        finally:
            release.set()
            holder.join()


def test_a_forked_child_refuses_the_parents_async_client_clearly(
    redis_server: servers.RedisServer,
) -> None:
    limit = RateLimit(requests=1000, period=1.0)
    namespace = servers.unique_namespace("fork")

    async def use(store: RedisLimiterStore) -> None:
        assert (await store.aacquire("q", limit, 0)).granted

    def expect_clear_error(store: RedisLimiterStore) -> None:
        with pytest.raises(RuntimeError, match=r"async_client= was made in process \d+.*fork"):
            asyncio.run(use(store))

    loop = asyncio.new_event_loop()
    async_clients = [redis.asyncio.Redis.from_url(redis_server.url) for _ in range(2)]
    sync_client = redis.Redis.from_url(redis_server.url)
    async_only = RedisLimiterStore(async_client=async_clients[0], namespace=namespace)
    both = RedisLimiterStore(client=sync_client, async_client=async_clients[1], namespace=namespace)
    try:
        loop.run_until_complete(use(async_only))
        loop.run_until_complete(use(both))
        assert in_forked_child(lambda: expect_clear_error(async_only)) == 0
        # With a sync client too, the child goes through it (redis-py reconnects after a fork).
        assert in_forked_child(lambda: asyncio.run(use(both))) == 0
        loop.run_until_complete(use(async_only))  # The parent's connection is intact.
    finally:
        for client in async_clients:
            loop.run_until_complete(client.aclose())
        sync_client.close()
        both.close()
        loop.close()
