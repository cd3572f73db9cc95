"""with_cache, issue 10 without a network: bounded memory, values with no JSON form, store
misuse refused at wrap time, os.fork(), and call records of callers that waited."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import select
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from litellm.types.utils import ModelResponse

from fixedmodel import bind_completion, responses
from fixedmodel.middleware._call import call_scope
from fixedmodel.middleware.cache import with_cache
from fixedmodel.stores.disk import DiskCacheStore
from fixedmodel.stores.memory import MemoryCacheStore
from fixedmodel.stores.redis_cache import RedisCacheStore

MESSAGES = [{"role": "user", "content": "Hi"}]
MiB = 2**20


def _answer(text: str) -> ModelResponse:
    return ModelResponse(
        choices=[{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    )


class SyncFake:
    model = "openai/fake"

    def __init__(self, size: int = 16) -> None:
        self.calls = 0
        self.size = size
        self.delay = 0.0
        self.seen: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        self.seen.append(kwargs)
        time.sleep(self.delay)
        return _answer(f"{self.calls:08d}" + "x" * self.size)


class AsyncFake(SyncFake):
    async def __call__(self, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls += 1
        self.seen.append(kwargs)
        await asyncio.sleep(self.delay)
        return _answer(f"{self.calls:08d}" + "x" * self.size)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "fixedmodel.cache" and r.levelno == logging.WARNING
    ]


# Item 9: the memory the cache layer holds is bounded by configuration.


def _grown_by(store: Any, answers: int, size: int) -> int:
    fake = SyncFake(size)
    chat = with_cache(fake, store)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(answers):
            messages = [{"role": "user", "content": f"question {i}"}]
            chat(messages=messages)
            hit = chat(messages=messages)  # A hit decodes the entry into the memo.
            assert hit._hidden_params["cache_hit"] is True
            del hit
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_decoded_answers_respect_the_memory_stores_bound() -> None:
    grown = _grown_by(MemoryCacheStore(max_entries=4), answers=40, size=MiB)
    # 4 entries in the store, at most 4 decoded answers: ~8 MiB. Unbounded: over 80 MiB.
    assert grown < 16 * MiB


def test_decoded_answers_of_other_stores_are_bounded_in_bytes(tmp_path: Path) -> None:
    with DiskCacheStore(tmp_path) as store:
        grown = _grown_by(store, answers=40, size=MiB)
    # Nothing in memory but the memo: at most 16 MiB of entries and their answers.
    assert grown < 40 * MiB


def test_an_answer_too_large_for_the_memo_is_still_a_hit(tmp_path: Path) -> None:
    fake = SyncFake(20 * MiB)
    with DiskCacheStore(tmp_path) as store:
        chat = with_cache(fake, store)
        first = chat(messages=MESSAGES)
        hits = [chat(messages=MESSAGES) for _ in range(2)]
    assert fake.calls == 1
    assert all(responses.text(h) == responses.text(first) for h in hits)
    assert hits[0] is not hits[1]


# Item 10: credentials that are callables, and other values with no JSON form.


def _token_provider() -> str:
    return "token-from-the-provider"


@pytest.mark.parametrize(
    "call",
    [
        {"azure_ad_token_provider": _token_provider},
        {"extra_params": {"azure_ad_token_provider": _token_provider}},
        {"extra_params": {"aws_credential_provider": _token_provider}},
    ],
    ids=["keyword", "extra_params", "other-provider"],
)
def test_a_callable_credential_is_a_credential(
    call: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    fake = SyncFake()
    chat = with_cache(fake)
    chat(messages=MESSAGES, **call)
    hit = chat(messages=MESSAGES, **call)
    assert hit._hidden_params["cache_hit"] is True
    assert fake.calls == 1
    assert _warnings(caplog) == []


def test_a_value_with_no_json_form_warns_once_per_parameter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = SyncFake()
    chat = with_cache(fake)
    for _ in range(5):
        chat(messages=MESSAGES, extra_body={"hook": object()})
    for _ in range(3):
        chat(messages=MESSAGES, extra_params={"on_token": lambda: None})
    assert fake.calls == 8  # Never cached, never failed.
    warned = _warnings(caplog)
    assert len(warned) == 2
    assert "'extra_body'" in warned[0]
    assert "'on_token'" in warned[1]


# Item 11: a store that cannot serve the callable's kind is refused at wrap time.


def test_a_redis_store_with_only_an_async_client_refuses_a_sync_callable() -> None:
    client = redis.asyncio.Redis(host="127.0.0.1", port=1)
    store = RedisCacheStore(async_client=client)
    with pytest.raises(TypeError, match=r"only async_client=.*pass client="):
        with_cache(SyncFake(), store)
    with pytest.raises(TypeError, match="only async_client="):
        with_cache(bind_completion("openai/m"), store)
    assert with_cache(AsyncFake(), store) is not None  # The async client serves it.


def test_a_redis_store_with_a_sync_client_serves_both_kinds() -> None:
    with RedisCacheStore(client=redis.Redis(host="127.0.0.1", port=1)) as store:
        assert with_cache(SyncFake(), store) is not None
        assert with_cache(AsyncFake(), store) is not None  # On the store's threads.
    with RedisCacheStore("redis://127.0.0.1:1/0") as store:
        assert with_cache(SyncFake(), store) is not None
        assert with_cache(AsyncFake(), store) is not None


class _SyncOnlyStore:
    """Has all four methods, but its "async" ones are plain functions."""

    def get(self, key: str) -> bytes | None:
        return None

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        pass

    def aget(self, key: str) -> bytes | None:
        return None

    def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        pass


class _AsyncOnlyStore:
    """Has all four methods, but its sync ones are coroutine functions."""

    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        pass

    async def aget(self, key: str) -> bytes | None:
        return None

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        pass


def test_a_store_whose_methods_cannot_serve_the_kind_is_refused() -> None:
    with pytest.raises(TypeError, match=r"_SyncOnlyStore\.aget must be a coroutine function"):
        with_cache(AsyncFake(), _SyncOnlyStore())  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"_AsyncOnlyStore\.get must be a plain function"):
        with_cache(SyncFake(), _AsyncOnlyStore())  # type: ignore[call-overload]
    assert with_cache(SyncFake(), _SyncOnlyStore()) is not None  # type: ignore[call-overload]
    assert with_cache(AsyncFake(), _AsyncOnlyStore()) is not None  # type: ignore[call-overload]


@pytest.mark.parametrize("make", [MemoryCacheStore, DiskCacheStore])
def test_memory_and_disk_stores_serve_both_kinds(make: Callable[..., Any], tmp_path: Path) -> None:
    store = make(tmp_path) if make is DiskCacheStore else make()
    assert with_cache(SyncFake(), store) is not None
    assert with_cache(AsyncFake(), store) is not None
    if isinstance(store, DiskCacheStore):
        store.close()


# Item 12: os.fork(). The child's calls work, or fail clearly; they never hang.

fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")


def _in_child(child: Callable[[], None], timeout: float = 20.0) -> None:
    """Run ``child`` in a forked child; fail if it fails or does not end within ``timeout``."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python warns that forking a process with threads may deadlock: what is tested.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read)
        status = b"ok"
        try:
            child()
        except BaseException as exc:
            status = repr(exc).encode()[:500]
        os.write(write, status)
        os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], timeout)
        if not ready:
            os.kill(pid, 9)
            pytest.fail(f"the forked child did not finish within {timeout} s")
        message = os.read(read, 1000).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert message == "ok", message


@fork_only
def test_a_disk_store_works_in_a_child_forked_after_an_async_call(tmp_path: Path) -> None:
    fake = AsyncFake()
    with DiskCacheStore(tmp_path) as store:
        chat = with_cache(fake, store)
        first = asyncio.run(chat(messages=MESSAGES))  # Starts the store's worker thread.

        def child() -> None:
            hit = asyncio.run(chat(messages=MESSAGES))
            assert responses.text(hit) == responses.text(first)
            fresh = asyncio.run(chat(messages=[{"role": "user", "content": "new"}]))
            assert fresh._hidden_params.get("cache_hit") is not True
            assert store.get("absent") is None

        _in_child(child)
    assert fake.calls == 1  # The parent's fake: the child's call ran on a copy.


@fork_only
def test_a_sync_flight_in_progress_at_the_fork_does_not_hold_the_child() -> None:
    fake = SyncFake()
    fake.delay = 1.0
    chat = with_cache(fake)
    leader = threading.Thread(target=lambda: chat(messages=MESSAGES))
    leader.start()
    try:
        time.sleep(0.2)  # The leader's flight is registered; its thread is not in the child.

        def child() -> None:
            fake.delay = 0.0
            answer = chat(messages=MESSAGES)
            assert answer._hidden_params.get("cache_hit") is not True

        _in_child(child, timeout=10.0)
    finally:
        leader.join()


@fork_only
def test_an_async_flight_in_progress_at_the_fork_does_not_hold_the_child() -> None:
    fake = AsyncFake()
    fake.delay = 1.0
    chat = with_cache(fake)
    leader = threading.Thread(target=lambda: asyncio.run(chat(messages=MESSAGES)))
    leader.start()
    try:
        time.sleep(0.2)  # The leader's flight is registered; its loop is not in the child.

        def child() -> None:
            fake.delay = 0.0
            answer = asyncio.run(chat(messages=MESSAGES))
            assert answer._hidden_params.get("cache_hit") is not True

        _in_child(child, timeout=10.0)
    finally:
        leader.join()


@fork_only
@pytest.mark.parametrize("where", ["memory store", "memo", "cache"])
def test_a_lock_held_at_the_fork_does_not_hold_the_child(where: str) -> None:
    store = MemoryCacheStore()
    chat = with_cache(SyncFake(), store)
    chat(messages=MESSAGES)
    lock = {
        "memory store": store._lock,  # pyright: ignore[reportPrivateUsage]
        "memo": chat._answers._lock,  # type: ignore[attr-defined]
        "cache": chat._lock,  # type: ignore[attr-defined]
    }[where]

    def child() -> None:
        hit = chat(messages=MESSAGES)
        assert hit._hidden_params["cache_hit"] is True
        chat(messages=[{"role": "user", "content": "new"}])

    with lock:  # As if another thread were inside the lock when the process forked.
        _in_child(child, timeout=10.0)


@fork_only
def test_a_redis_store_works_in_a_child_forked_after_an_async_call() -> None:
    # No Redis listens on port 1: lookups are misses; what matters is that the child's
    # worker threads exist and its calls return.
    fake = AsyncFake()
    with RedisCacheStore("redis://127.0.0.1:1/0", timeout=0.05) as store:
        chat = with_cache(fake, store)
        asyncio.run(chat(messages=MESSAGES))

        def child() -> None:
            answer = asyncio.run(chat(messages=MESSAGES))
            assert responses.text(answer).startswith("00000002")

        _in_child(child)


@fork_only
@pytest.mark.parametrize("lock", ["clients", "health"])
def test_a_redis_store_lock_held_at_the_fork_does_not_hold_the_child(lock: str) -> None:
    fake = AsyncFake()
    with RedisCacheStore("redis://127.0.0.1:1/0", timeout=0.05) as store:
        chat = with_cache(fake, store)
        asyncio.run(chat(messages=MESSAGES))  # Redis is down: the health record is failing.
        held = store._clients._lock if lock == "clients" else store._health._lock  # type: ignore[attr-defined]

        def child() -> None:
            answer = asyncio.run(chat(messages=MESSAGES))
            assert responses.text(answer).startswith("00000002")

        with held:  # As if another thread were inside the lock when the process forked.
            _in_child(child, timeout=10.0)


# Item 16: callers that waited made no request.


def test_sync_followers_of_a_failed_leader_record_no_attempt() -> None:
    class Failing(SyncFake):
        def __call__(self, **kwargs: Any) -> Any:
            self.calls += 1
            time.sleep(0.3)
            raise ConnectionError("down")

    fake = Failing()
    chat = with_cache(fake)
    infos: list[Any] = []

    def call() -> None:
        with call_scope() as info:
            infos.append(info)
            with contextlib.suppress(ConnectionError):
                chat(messages=MESSAGES)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake.calls == 1
    assert sorted(info.cache_hit for info in infos) == [False] + [True] * 4
    assert all(info.attempts == 0 for info in infos)
