"""RedisCacheStore against a real redis-server: shared entries, TTLs, outages."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from fixedmodel.middleware.cache import with_cache
from fixedmodel.stores._cache_store import CacheStore, CorruptEntryError, decode_entry, encode_entry
from fixedmodel.stores.disk import DiskCacheStore
from fixedmodel.stores.redis_cache import RedisCacheStore
from tests.integration import redis_server as servers

redis_server = servers.redis_server
own_redis_server = servers.own_redis_server

ROOT = Path(__file__).parents[2]
ENTRY = encode_entry(
    "completion",
    {"id": "c-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hé"}}]},
)

OTHER_PROCESS = """
import hashlib, sys
from fixedmodel.stores._cache_store import encode_entry
from fixedmodel.stores.redis_cache import RedisCacheStore
with RedisCacheStore(sys.argv[1], namespace=sys.argv[2]) as store:
    seen = store.get("from-parent")
    store.set("from-child", encode_entry("embedding", {"data": [{"embedding": [0.5]}]}), 60)
print(hashlib.sha256(seen).hexdigest() if seen is not None else "miss")
"""


def test_an_entry_stored_by_one_process_is_read_by_another(
    redis_server: servers.RedisServer,
) -> None:
    namespace = servers.unique_namespace("procs")
    with RedisCacheStore(redis_server.url, namespace=namespace) as store:
        store.set("from-parent", ENTRY, 60)
        child = subprocess.run(
            [sys.executable, "-c", OTHER_PROCESS, redis_server.url, namespace],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=True,
        )
        assert child.stdout.strip() == hashlib.sha256(ENTRY).hexdigest()
        kind, response = decode_entry(store.get("from-child"))
        assert (kind, response) == ("embedding", {"data": [{"embedding": [0.5]}]})


def test_entries_expire_with_their_ttl(redis_server: servers.RedisServer) -> None:
    namespace = servers.unique_namespace("ttl")
    client = redis.Redis.from_url(redis_server.url)
    with RedisCacheStore(redis_server.url, namespace=namespace) as store:
        store.set("short", ENTRY, 0.2)
        store.set("forever", ENTRY, None)
        assert store.get("short") == ENTRY
        assert 0 < client.pttl(namespace + "short") <= 200
        assert client.pttl(namespace + "forever") == -1
        asyncio.run(store.aset("async-short", ENTRY, 0.2))
        assert asyncio.run(store.aget("async-short")) == ENTRY
        time.sleep(0.3)
        assert store.get("short") is None
        assert asyncio.run(store.aget("async-short")) is None
        assert store.get("forever") == ENTRY
    client.close()


def test_namespaces_share_nothing(redis_server: servers.RedisServer) -> None:
    with (
        RedisCacheStore(redis_server.url, namespace=servers.unique_namespace("a")) as first,
        RedisCacheStore(redis_server.url, namespace=servers.unique_namespace("b")) as second,
    ):
        first.set("k", ENTRY, 60)
        assert first.get("k") == ENTRY
        assert second.get("k") is None


def test_another_data_type_under_the_key_is_a_corrupt_entry(
    redis_server: servers.RedisServer,
) -> None:
    namespace = servers.unique_namespace("type")
    client = redis.Redis.from_url(redis_server.url)
    client.hset(namespace + "k", "field", "value")
    with RedisCacheStore(redis_server.url, namespace=namespace) as store:
        with pytest.raises(CorruptEntryError):
            store.get("k")
        store.set("k", ENTRY, 60)  # The fresh answer replaces it.
        assert store.get("k") == ENTRY
    client.close()


def _response(content: str) -> Any:
    from litellm.types.utils import ModelResponse

    return ModelResponse(
        id="chatcmpl-1",
        created=1_700_000_000,
        model="fake-model",
        choices=[
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
        usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    )


def test_with_cache_entries_are_shared_and_in_the_disk_format(
    redis_server: servers.RedisServer, tmp_path: Path
) -> None:
    answer = _response("Paris")
    calls: list[dict[str, object]] = []

    def model(**kwargs: object) -> Any:
        calls.append(kwargs)
        return answer

    def unreachable(**kwargs: object) -> Any:
        raise AssertionError("the model was called on what should be a cache hit")

    async def aunreachable(**kwargs: object) -> Any:
        raise AssertionError("the model was called on what should be a cache hit")

    request = {"messages": [{"role": "user", "content": "Capital of France?"}], "seed": 1}
    namespace = servers.unique_namespace("mw")
    writer = RedisCacheStore(redis_server.url, namespace=namespace)
    reader = RedisCacheStore(redis_server.url, namespace=namespace)  # Its own connections.
    assert isinstance(writer, CacheStore)
    first = with_cache(model, store=writer, ttl=60, namespace="fake")
    assert first(**request).choices[0].message.content == "Paris"
    hit = with_cache(unreachable, store=reader, namespace="fake")(**request)
    assert hit.choices[0].message.content == "Paris"
    assert hit._hidden_params.get("cache_hit") is True
    ahit = asyncio.run(with_cache(aunreachable, store=reader, namespace="fake")(**request))
    assert ahit.choices[0].message.content == "Paris"
    assert len(calls) == 1

    # The same answer through the disk store is stored as the very same bytes.
    client = redis.Redis.from_url(redis_server.url)
    (name,) = client.keys(namespace + "*")
    assert name.decode().startswith(namespace + "fixedmodel:cache:v1:")
    key = name.decode()[len(namespace) :]
    with DiskCacheStore(tmp_path / "disk") as disk:
        with_cache(model, store=disk, ttl=60, namespace="fake")(**request)
        assert disk.get(key) == client.get(name)
    kind, fields = decode_entry(client.get(name))
    assert kind == "completion"
    assert fields["id"] == "chatcmpl-1"
    assert b'"content":"Paris"' in client.get(name)
    assert 0 < client.pttl(name) <= 60_000
    client.close()
    writer.close()
    reader.close()


def _timed(action: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = action()
    return time.monotonic() - started, result


def test_redis_down_is_a_miss_with_a_warning_then_recovers(
    own_redis_server: servers.RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fixedmodel.redis")
    store = RedisCacheStore(own_redis_server.url, timeout=0.25)
    store.set("k", ENTRY, 60)
    # Baseline under the same load: the slowest of the three operations with Redis up. An
    # outage may add the 0.25 s timeout and a little more, never a hang.
    healthy = max(
        _timed(lambda: store.get("k"))[0],
        _timed(lambda: store.set("k", ENTRY, 60))[0],
        _timed(lambda: asyncio.run(store.aget("k")))[0],
    )
    bound = 0.75 + 2 * healthy
    for outage in ("stopped", "frozen"):
        if outage == "stopped":
            own_redis_server.stop()
        else:
            own_redis_server.freeze()
        elapsed, value = _timed(lambda: store.get("k"))
        assert value is None
        assert elapsed < bound, (outage, elapsed, healthy)
        elapsed, _ = _timed(lambda: store.set("k", ENTRY, 60))
        assert elapsed < bound, (outage, elapsed, healthy)
        elapsed, value = _timed(lambda: asyncio.run(store.aget("k")))
        assert value is None
        assert elapsed < bound, (outage, elapsed, healthy)
        if outage == "stopped":
            own_redis_server.start()  # Same port, empty: nothing was persisted.
        else:
            own_redis_server.thaw()
            # After a timeout the store rests for one timeout before asking Redis again
            # (stores/_redis.py): what it writes and reads in that time is a miss.
            time.sleep(0.25)
        store.set("k", ENTRY, 60)
        assert store.get("k") == ENTRY
        assert asyncio.run(store.aget("k")) == ENTRY
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("failed on get" in m and "the lookup is a miss" in m for m in warnings)
    assert any("answers again" in r.getMessage() for r in caplog.records)
    store.close()


def test_clients_of_your_own(redis_server: servers.RedisServer) -> None:
    namespace = servers.unique_namespace("own")
    decoding = redis.Redis.from_url(redis_server.url, decode_responses=True)
    with RedisCacheStore(client=decoding, namespace=namespace) as store:
        store.set("k", ENTRY, 60)
        assert store.get("k") == ENTRY  # Still bytes, although the client decodes.

    async def async_only() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        store = RedisCacheStore(async_client=client, namespace=namespace)
        assert await store.aget("k") == ENTRY
        await store.aset("k2", ENTRY, 60)
        with pytest.raises(TypeError, match="only async_client"):
            store.get("k")
        await client.aclose()

    asyncio.run(async_only())
    assert decoding.get(namespace + "k2") == ENTRY.decode()
    decoding.close()


def test_password_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fixedmodel.redis")
    with RedisCacheStore("redis://:s3cret-pw@127.0.0.1:1/0") as store:
        assert "s3cret-pw" not in repr(store)
        assert store.get("k") is None
        store.set("k", ENTRY, None)
    assert "failed on get" in caplog.text
    assert "s3cret-pw" not in caplog.text
