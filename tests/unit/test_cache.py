"""with_cache and the cache stores without a network: counting fakes and a controllable clock."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from litellm.types.utils import EmbeddingResponse, ModelResponse

from fixedmodel import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    FixedModelCompletion,
    FixedModelEmbedding,
    bind_aembedding,
    bind_completion,
    responses,
)
from fixedmodel.middleware import _cache_codec
from fixedmodel.middleware._call import call_scope
from fixedmodel.middleware.cache import AsyncCache, SyncCache, is_cache_hit, with_cache
from fixedmodel.stores._cache_store import (
    CacheStore,
    CorruptEntryError,
    decode_entry,
    encode_entry,
)
from fixedmodel.stores.disk import DiskCacheStore
from fixedmodel.stores.memory import MemoryCacheStore

MESSAGES = [{"role": "user", "content": "Hi"}]
SECRET = "sk-SECRET-unit-0123456789"


def answer(text: str = "Cached answer.") -> ModelResponse:
    return ModelResponse(
        choices=[{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    )


class Fake:
    """Counts calls; answers ``reply`` after ``delay`` seconds, or raises ``error``."""

    model = "openai/fake"

    def __init__(self, reply: str = "Cached answer.") -> None:
        self.reply = reply
        self.calls = 0
        self.delay = 0.0
        self.error: BaseException | None = None

    def _answer(self, kwargs: dict[str, Any]) -> Any:
        if self.error is not None:
            raise self.error
        if "input" in kwargs:
            return EmbeddingResponse(
                model="e", data=[{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}]
            )
        return answer(f"{self.reply} #{self.calls}")


class AsyncFake(Fake):
    async def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self._answer(kwargs)


class SyncFake(Fake):
    def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        time.sleep(self.delay)
        return self._answer(kwargs)


class DictStore:
    """A minimal CacheStore over a dict that can be made to fail."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.fail_get = False
        self.fail_set = False

    def get(self, key: str) -> bytes | None:
        if self.fail_get:
            raise ConnectionError("store is down")
        return self.data.get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        if self.fail_set:
            raise ConnectionError("store is down")
        self.data[key] = value

    async def aget(self, key: str) -> bytes | None:
        return self.get(key)

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        self.set(key, value, ttl)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "fixedmodel.cache" and r.levelno == logging.WARNING
    ]


# Hits and misses ----------------------------------------------------------------------------


def test_no_configuration_a_hit_is_a_marked_real_response() -> None:
    fake = SyncFake()
    chat = with_cache(fake)
    first = chat(messages=MESSAGES)
    second = chat(messages=MESSAGES)
    assert fake.calls == 1
    assert isinstance(second, ModelResponse)
    assert responses.text(second) == responses.text(first) == "Cached answer. #1"
    assert second._hidden_params["cache_hit"] is True
    assert first._hidden_params.get("cache_hit") is not True
    assert responses.usage(second) == responses.usage(first)


async def test_async_hit_and_a_different_request_misses() -> None:
    fake = AsyncFake()
    chat = with_cache(fake)
    await chat(messages=MESSAGES)
    await chat(messages=MESSAGES)
    await chat(messages=MESSAGES, temperature=0.5)
    await chat(messages=[{"role": "user", "content": "Other"}])
    assert fake.calls == 3


def test_each_hit_is_an_independent_copy() -> None:
    chat = with_cache(SyncFake())
    chat(messages=MESSAGES)
    hit = chat(messages=MESSAGES)
    hit.choices[0].message.content = "changed"  # type: ignore[union-attr]
    hit._hidden_params["cache_hit"] = "changed"
    again = chat(messages=MESSAGES)
    assert responses.text(again) == "Cached answer. #1"
    assert again._hidden_params["cache_hit"] is True


def test_extra_fields_set_on_a_hit_do_not_reach_the_next_hit() -> None:
    # litellm's models allow extra fields; an empty extra dict must not be shared either.
    chat = with_cache(SyncFake())
    chat(messages=MESSAGES)
    hit = chat(messages=MESSAGES)
    hit.choices[0].annotation = "mine"  # type: ignore[union-attr]
    hit.choices[0].message.note = "mine too"  # type: ignore[union-attr]
    again = chat(messages=MESSAGES)
    assert not hasattr(again.choices[0], "annotation")
    assert not hasattr(again.choices[0].message, "note")  # type: ignore[union-attr]


def test_the_call_record_notes_a_hit() -> None:
    chat = with_cache(SyncFake())
    with call_scope() as miss:
        chat(messages=MESSAGES)
    with call_scope() as hit:
        chat(messages=MESSAGES)
    assert (miss.cache_hit, hit.cache_hit) == (False, True)
    assert hit.attempts == 0


def test_streams_bypass_the_cache() -> None:
    fake = SyncFake()
    chat = with_cache(fake)
    chat(messages=MESSAGES, stream=True)
    chat(messages=MESSAGES, stream=True)
    assert fake.calls == 2
    chat(messages=MESSAGES, stream=False)
    chat(messages=MESSAGES)  # stream=False and no stream share one entry.
    assert fake.calls == 3


async def test_embeddings_are_cached_in_both_kinds() -> None:
    async_fake, sync_fake, store = AsyncFake(), SyncFake(), MemoryCacheStore()
    aembed = with_cache(async_fake, store)
    embed = with_cache(sync_fake, store)
    first = await aembed(input=["a"])
    assert isinstance(first, EmbeddingResponse)
    hit = embed(input=["a"])  # A sync callable of the same model shares the entry.
    assert isinstance(hit, EmbeddingResponse)
    assert responses.embeddings(hit) == [[0.5, 0.25]]
    assert hit._hidden_params["cache_hit"] is True
    assert (async_fake.calls, sync_fake.calls) == (1, 0)


def test_mock_response_bound_callable_is_cached_and_no_secret_is_stored() -> None:
    store = MemoryCacheStore()
    chat = with_cache(
        bind_completion("openai/gpt-4o-mini", mock_response="Mocked.", api_key=SECRET), store
    )
    chat(messages=MESSAGES)
    hit = chat(messages=MESSAGES)
    assert responses.text(hit) == "Mocked."
    assert hit._hidden_params == {"cache_hit": True}
    [(key, (value, _))] = store._entries.items()
    assert SECRET not in key
    assert SECRET.encode() not in value


async def test_bound_async_embedding_with_mock_response() -> None:
    embed = with_cache(bind_aembedding("openai/text-embedding-3-small", mock_response=[0.1, 0.2]))
    await embed(input="x")
    hit = await embed(input="x")
    assert responses.embeddings(hit) == [[0.1, 0.2]]
    assert hit._hidden_params["cache_hit"] is True


# What is stored ------------------------------------------------------------------------------


def test_errors_are_never_stored() -> None:
    fake = SyncFake()
    chat = with_cache(fake)
    fake.error = ValueError("upstream failed")
    with pytest.raises(ValueError, match="upstream failed"):
        chat(messages=MESSAGES)
    fake.error = None
    chat(messages=MESSAGES)
    chat(messages=MESSAGES)
    assert fake.calls == 2


def test_an_answer_the_validator_rejects_is_returned_but_not_stored() -> None:
    fake = SyncFake()
    seen: list[ModelResponse] = []

    def only_even(response: ModelResponse) -> bool:
        seen.append(response)
        return responses.text(response).endswith("#2")

    chat = with_cache(fake, validator=only_even)
    assert responses.text(chat(messages=MESSAGES)) == "Cached answer. #1"  # Rejected.
    assert responses.text(chat(messages=MESSAGES)) == "Cached answer. #2"  # Stored.
    assert responses.text(chat(messages=MESSAGES)) == "Cached answer. #2"  # A hit.
    assert fake.calls == 2
    assert len(seen) == 2


def test_a_request_without_canonical_form_bypasses_the_cache(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = SyncFake()
    chat = with_cache(fake)
    chat(messages=MESSAGES, extra_body={"x": object()})
    chat(messages=MESSAGES, extra_body={"x": object()})
    assert fake.calls == 2
    assert any("'extra_body'" in message for message in cache_warnings(caplog))


# Corrupt entries and failing stores ---------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    [
        b"\x00\xffnot an entry",
        b"fixedmodel-cache/0\n{}",
        b"fixedmodel-cache/1\n{not json",
        b'fixedmodel-cache/1\n{"kind": "embedding", "response": {}}',
        b'fixedmodel-cache/1\n{"kind": "completion", "response": {"choices": 7}}',
        b'fixedmodel-cache/1\n{"kind": "completion", "response": '
        b'{"choices": [], "usage": {"prompt_tokens": "many"}}}',
        b'fixedmodel-cache/1\n["a list"]',
    ],
    ids=[
        "garbage",
        "old version",
        "bad json",
        "wrong kind",
        "no choices",
        "unbuildable",
        "not an object",
    ],
)
def test_a_corrupt_entry_is_a_logged_miss_and_is_overwritten(
    stored: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    fake, store = SyncFake(), DictStore()
    chat = with_cache(fake, store)
    chat(messages=MESSAGES)
    [key] = store.data
    store.data[key] = stored
    with caplog.at_level(logging.WARNING, "fixedmodel.cache"):
        assert responses.text(chat(messages=MESSAGES)) == "Cached answer. #2"
    assert fake.calls == 2
    [warning] = cache_warnings(caplog)
    assert "corrupt cache entry" in warning
    assert key in warning
    assert decode_entry(store.data[key])[0] == "completion"  # Overwritten by the answer.
    assert responses.text(chat(messages=MESSAGES)) == "Cached answer. #2"
    assert fake.calls == 2


def test_an_entry_of_another_version_names_the_version(caplog: pytest.LogCaptureFixture) -> None:
    store = DictStore()
    chat = with_cache(SyncFake(), store)
    chat(messages=MESSAGES)
    [key] = store.data
    store.data[key] = b"fixedmodel-cache/7\n{}"
    chat(messages=MESSAGES)
    assert "format version 7" in cache_warnings(caplog)[0]


@pytest.mark.parametrize("failing", ["get", "set", "both"])
async def test_a_failing_store_degrades_to_calling_the_model(
    failing: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = DictStore()
    store.fail_get = failing in ("get", "both")
    store.fail_set = failing in ("set", "both")
    async_fake, sync_fake = AsyncFake(), SyncFake()
    achat, chat = with_cache(async_fake, store), with_cache(sync_fake, store)
    assert responses.text(await achat(messages=MESSAGES)) == "Cached answer. #1"
    assert responses.text(chat(messages=MESSAGES)) == "Cached answer. #1"
    warnings = cache_warnings(caplog)
    assert warnings
    assert all("store is down" in w for w in warnings)
    if failing != "set":
        assert any("without the cache" in w for w in warnings)
    if failing != "get":
        assert any("is not stored" in w for w in warnings)
    assert all(SECRET not in w for w in warnings)


# Single flight --------------------------------------------------------------------------------


async def test_identical_concurrent_calls_make_one_upstream_call() -> None:
    fake = AsyncFake()
    fake.delay = 0.05
    chat = with_cache(fake)
    results = await asyncio.gather(*(chat(messages=MESSAGES) for _ in range(50)))
    assert fake.calls == 1
    assert {responses.text(r) for r in results} == {"Cached answer. #1"}
    assert len({id(r) for r in results}) == 50
    assert sum(r._hidden_params.get("cache_hit") is True for r in results) == 49


async def test_followers_get_the_leaders_exception() -> None:
    fake = AsyncFake()
    fake.delay = 0.05
    fake.error = ConnectionResetError("upstream went away")
    chat = with_cache(fake)
    results = await asyncio.gather(
        *(chat(messages=MESSAGES) for _ in range(10)), return_exceptions=True
    )
    assert fake.calls == 1
    assert all(isinstance(r, ConnectionResetError) for r in results)


async def test_followers_take_over_when_the_leader_is_cancelled() -> None:
    fake = AsyncFake()
    fake.delay = 0.05
    chat = with_cache(fake)
    leader = asyncio.ensure_future(chat(messages=MESSAGES))
    await asyncio.sleep(0.01)
    followers = [asyncio.ensure_future(chat(messages=MESSAGES)) for _ in range(5)]
    await asyncio.sleep(0.01)
    leader.cancel()
    results = await asyncio.gather(*followers)
    assert fake.calls == 2
    assert {responses.text(r) for r in results} == {"Cached answer. #2"}


async def test_followers_share_an_answer_the_validator_rejects() -> None:
    fake = AsyncFake()
    fake.delay = 0.05
    chat = with_cache(fake, validator=lambda response: False)
    results = await asyncio.gather(*(chat(messages=MESSAGES) for _ in range(5)))
    assert fake.calls == 1
    assert len(results) == 5
    await chat(messages=MESSAGES)
    assert fake.calls == 2  # Nothing was stored.


async def test_an_answer_json_cannot_hold_is_returned_but_not_stored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unserializable(AsyncFake):
        def _answer(self, kwargs: dict[str, Any]) -> Any:
            response = answer()
            response.choices[0].message.provider_specific_fields = {"handle": object()}  # type: ignore[union-attr]
            return response

    fake = Unserializable()
    store = DictStore()
    chat = with_cache(fake, store)
    with caplog.at_level(logging.WARNING, logger="fixedmodel.cache"):
        first = await chat(messages=MESSAGES)
        await chat(messages=MESSAGES)
    assert responses.text(first) == "Cached answer."
    assert fake.calls == 2
    assert store.data == {}
    assert "cannot be cached" in caplog.text


@pytest.mark.parametrize("kind", ["completion", "embedding"])
def test_a_stored_answer_decodes_to_the_same_fields(kind: str) -> None:
    fake = SyncFake("Grüße, 1e-05")
    chat = with_cache(fake, DictStore())
    fresh = chat(input=["a"]) if kind == "embedding" else chat(messages=MESSAGES)
    hit = chat(input=["a"]) if kind == "embedding" else chat(messages=MESSAGES)
    assert fake.calls == 1
    assert is_cache_hit(hit)
    assert hit.model_dump() == fresh.model_dump()


def test_a_miss_stores_its_answer_undecoded_and_the_first_hit_decodes_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[object] = []
    real_decode = _cache_codec._decode

    def counting_decode(data: object, kind: Any) -> Any:
        decoded.append(data)
        return real_decode(data, kind)

    monkeypatch.setattr(_cache_codec, "_decode", counting_decode)
    fake = SyncFake()
    chat = with_cache(fake)
    chat(messages=MESSAGES)
    assert decoded == []  # Rebuilding the answer is left to whoever asks for it again.
    first, second = chat(messages=MESSAGES), chat(messages=MESSAGES)
    assert len(decoded) == 1
    assert responses.text(first) == responses.text(second) == "Cached answer. #1"
    assert first is not second
    assert fake.calls == 1


async def test_an_answer_that_does_not_rebuild_never_fails_a_call(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_decode(data: object, kind: Any) -> Any:
        raise CorruptEntryError("does not rebuild")

    monkeypatch.setattr(_cache_codec, "_decode", broken_decode)
    fake = AsyncFake()
    fake.delay = 0.02
    chat = with_cache(fake)
    results = await asyncio.gather(*(chat(messages=MESSAGES) for _ in range(3)))
    assert all(isinstance(result, ModelResponse) for result in results)
    assert fake.calls == 3  # The waiters could not share the answer: each asked the model.
    assert responses.text(await chat(messages=MESSAGES)) == "Cached answer. #4"
    assert cache_warnings(caplog)


def test_identical_concurrent_sync_calls_make_one_upstream_call() -> None:
    fake = SyncFake()
    fake.delay = 0.2
    chat = with_cache(fake)
    results: list[ModelResponse] = []
    threads = [
        threading.Thread(target=lambda: results.append(chat(messages=MESSAGES))) for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake.calls == 1
    assert len(results) == 10
    assert {responses.text(r) for r in results} == {"Cached answer. #1"}


# Kinds and misuse --------------------------------------------------------------------------------


def test_the_wrapper_keeps_the_kind() -> None:
    assert isinstance(with_cache(AsyncFake()), AsyncCache)
    assert isinstance(with_cache(SyncFake()), SyncCache)
    wrapped = with_cache(bind_completion("openai/m", mock_response="x"))
    assert isinstance(wrapped, FixedModelCompletion)
    assert wrapped.model == "openai/m"  # type: ignore[attr-defined]
    assert "MemoryCacheStore" in repr(wrapped)
    assert isinstance(with_cache(AsyncFake()), (AFixedModelCompletion, AFixedModelEmbedding))
    assert isinstance(with_cache(SyncFake()), FixedModelEmbedding)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"ttl": -1}, ValueError, "positive"),
        ({"ttl": 0}, ValueError, "positive"),
        ({"ttl": float("inf")}, ValueError, "finite"),
        ({"ttl": "60"}, TypeError, "number"),
        ({"ttl": True}, TypeError, "number"),
        ({"store": object()}, TypeError, "CacheStore"),
        ({"store": MemoryCacheStore}, TypeError, "instance"),
        ({"validator": 3}, TypeError, "callable"),
        ({"namespace": ""}, ValueError, "empty"),
        ({"namespace": 3}, TypeError, "str"),
    ],
)
def test_misuse_fails_at_wrap_time(arguments: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        with_cache(SyncFake(), **arguments)


def test_a_callable_without_a_model_needs_a_namespace() -> None:
    class Anonymous:
        def __call__(self, **kwargs: Any) -> Any:
            return answer()

    with pytest.raises(TypeError, match="namespace="):
        with_cache(Anonymous())  # type: ignore[call-overload]
    chat = with_cache(Anonymous(), namespace="tests")  # type: ignore[call-overload]
    chat(messages=MESSAGES)
    assert chat(messages=MESSAGES)._hidden_params["cache_hit"] is True


def test_not_a_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="fixedmodel callable"):
        with_cache(3)  # type: ignore[call-overload]


def test_the_stores_are_cache_stores() -> None:
    assert isinstance(MemoryCacheStore(), CacheStore)
    assert isinstance(DictStore(), CacheStore)


# Memory store ----------------------------------------------------------------------------------


def test_memory_store_evicts_the_least_recently_used() -> None:
    store = MemoryCacheStore(max_entries=2)
    store.set("a", b"1", None)
    store.set("b", b"2", None)
    assert store.get("a") == b"1"  # "b" is now the least recently used.
    store.set("c", b"3", None)
    assert (store.get("a"), store.get("b"), store.get("c")) == (b"1", None, b"3")
    assert len(store) == 2


def test_memory_store_expires_entries_by_its_clock() -> None:
    clock = Clock()
    store = MemoryCacheStore(clock=clock)
    store.set("short", b"1", 10.0)
    store.set("forever", b"2", None)
    clock.now += 9.9
    assert store.get("short") == b"1"
    clock.now += 0.1
    assert store.get("short") is None
    assert store.get("forever") == b"2"
    assert len(store) == 1


async def test_memory_store_async_methods_and_clear() -> None:
    store = MemoryCacheStore()
    await store.aset("k", b"v", None)
    assert await store.aget("k") == b"v"
    store.clear()
    assert await store.aget("k") is None


def test_ttl_through_with_cache() -> None:
    clock, fake = Clock(), SyncFake()
    chat = with_cache(fake, MemoryCacheStore(clock=clock), ttl=60)
    chat(messages=MESSAGES)
    clock.now += 59
    chat(messages=MESSAGES)
    assert fake.calls == 1
    clock.now += 1
    chat(messages=MESSAGES)
    assert fake.calls == 2


def test_lru_bound_through_with_cache() -> None:
    fake = SyncFake()
    chat = with_cache(fake, MemoryCacheStore(max_entries=2))
    for content in ("a", "b", "c", "a"):
        chat(messages=[{"role": "user", "content": content}])
    assert fake.calls == 4  # "a" was evicted by "c".


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"max_entries": 0}, ValueError),
        ({"max_entries": 1.5}, TypeError),
        ({"clock": 3}, TypeError),
    ],
)
def test_memory_store_misuse(arguments: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        MemoryCacheStore(**arguments)


# Disk store -----------------------------------------------------------------------------------


def test_disk_store_persists_across_instances(tmp_path: Path) -> None:
    fake = SyncFake()
    with DiskCacheStore(tmp_path) as store:
        with_cache(fake, store)(messages=MESSAGES)
    with DiskCacheStore(tmp_path) as reopened:
        hit = with_cache(fake, reopened)(messages=MESSAGES)
    assert fake.calls == 1
    assert hit._hidden_params["cache_hit"] is True


async def test_disk_store_async_and_ttl(tmp_path: Path) -> None:
    with DiskCacheStore(tmp_path) as store:
        await store.aset("k", b"v", 0.2)
        assert await store.aget("k") == b"v"
        assert store.get("k") == b"v"
        await asyncio.sleep(0.3)
        assert await store.aget("k") is None
        store.set("k", b"w", None)
        store.clear()
        assert store.get("k") is None


def test_disk_store_value_that_is_not_bytes_is_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import diskcache

    fake = SyncFake()
    with DiskCacheStore(tmp_path) as store:
        chat = with_cache(fake, store)
        chat(messages=MESSAGES)
        with diskcache.Cache(str(tmp_path)) as raw:
            [key] = list(raw)
            raw.set(key, {"not": "bytes"})
        with pytest.raises(CorruptEntryError):
            store.get(key)
        chat(messages=MESSAGES)
        assert fake.calls == 2
        assert "corrupt cache entry" in cache_warnings(caplog)[0]
        assert isinstance(store.get(key), bytes)


def test_disk_store_without_diskcache_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "diskcache", None)
    with pytest.raises(ImportError, match=r"pip install 'fixedmodel\[disk\]'"):
        DiskCacheStore(tmp_path)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"size_limit": 10}, ValueError),
        ({"size_limit": "big"}, TypeError),
        ({"timeout": 0}, ValueError),
    ],
)
def test_disk_store_misuse(tmp_path: Path, arguments: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        DiskCacheStore(tmp_path, **arguments)


# Entry format ---------------------------------------------------------------------------------


def test_entry_format_round_trip_and_refusals() -> None:
    entry = encode_entry("embedding", {"data": [1.5]})
    assert entry.startswith(b"fixedmodel-cache/1\n")
    assert decode_entry(entry) == ("embedding", {"data": [1.5]})
    with pytest.raises(CorruptEntryError, match="bytes"):
        decode_entry("fixedmodel-cache/1\n{}")
    with pytest.raises(CorruptEntryError, match="header"):
        decode_entry(b"")
