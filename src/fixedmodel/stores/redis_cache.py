"""Response cache store in Redis: one cache for every process and host that uses it.

Each entry is one Redis string ``<namespace><key>``: the key is the cache's own
(``fixedmodel:cache:v1:<sha256 of the request>``), the namespace an optional prefix. It holds
the entry bytes exactly as every other store holds them
(:func:`fixedmodel.stores._cache_store.encode_entry`: a format header, then the answer as
JSON), and expires with the cache's TTL (``SET ... PX``). Keys are hashes, so neither keys
nor values contain credentials; values do contain the answers (and the prompt only as far as
an answer repeats it).

A Redis that is down or too slow never fails or holds a call: after at most ``timeout`` a
lookup is a miss and a write is skipped, with a WARNING in the ``fixedmodel.redis`` log; the
store uses Redis again as soon as it answers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fixedmodel.stores._cache_store import CorruptEntryError
from fixedmodel.stores._redis import DEFAULT_TIMEOUT, Command, Flow, RedisStore

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

__all__ = ["RedisCacheStore"]

_MISS = "the lookup is a miss"
_SKIPPED = "the answer is not stored"


def _expiry_ms(ttl: float | None) -> int | None:
    return None if ttl is None else max(1, math.ceil(ttl * 1000))


def _entry(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):  # A client made with decode_responses=True.
        return value.encode()
    msg = f"Redis returned a {type(value).__name__} for a cache entry, not bytes"
    raise CorruptEntryError(msg)


def _is_wrong_type(exc: Exception) -> bool:
    from redis.exceptions import ResponseError

    return isinstance(exc, ResponseError) and str(exc).startswith("WRONGTYPE")


class RedisCacheStore(RedisStore):
    """A response cache store in Redis, shared by processes and hosts; conforms to CacheStore.

    Entries expire with the TTL given to :func:`~fixedmodel.middleware.cache.with_cache`;
    without one they stay until Redis evicts them (set a ``maxmemory`` policy such as
    ``allkeys-lru`` on a Redis used as a cache).

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://...`` or
            ``unix://path``. The store builds its own client, with ``timeout``. The URL is
            shown in ``repr`` and logs with its password replaced by ``***``.
        client: Instead of ``url``, a ``redis.Redis`` client of yours (its timeouts and
            retries apply: keep them short). Async methods then run it on threads.
        async_client: A ``redis.asyncio.Redis`` client for the async methods (with or
            without ``client``); keep it to one event loop.
        namespace: Prefix of every key; stores with different namespaces share nothing. The
            cache's keys already start with ``fixedmodel:cache:v1:``, so by default there is
            no further prefix, and every application on the Redis shares answers to
            identical requests.
        timeout: Seconds to wait for Redis (connect, then reply) with a client built from
            ``url``.

    Raises:
        ImportError: redis-py is missing (``pip install 'fixedmodel[redis]'``).
        TypeError: Neither a URL nor a client was given, or both were, or an argument has
            the wrong type.
        ValueError: ``namespace`` is empty or ``timeout`` is out of range.
    """

    __slots__ = ()

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        async_client: AsyncRedis | None = None,
        namespace: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._open(url, client, async_client, namespace, timeout, example="myapp:", empty=True)

    def check_for(self, *, asynchronous: bool) -> None:
        """Refuse, when a cache is built, a callable kind this store has no client for.

        Any client serves async calls (a sync one on the store's threads); sync calls need
        a sync client, from ``client=`` or a URL.

        Raises:
            TypeError: ``asynchronous`` is false and the store was given only
                ``async_client=``.
        """
        if not (asynchronous or self._clients.has_sync):
            msg = (
                "this RedisCacheStore was given only async_client= (a redis.asyncio.Redis), "
                "so it cannot serve a synchronous callable: pass client= (a redis.Redis) as "
                "well, or build the store from a URL"
            )
            raise TypeError(msg)

    def get(self, key: str) -> bytes | None:
        """Return the entry under ``key``; ``None`` when absent, expired or Redis is down.

        Raises:
            CorruptEntryError: The key holds something other than a string (another program
                wrote it); the cache reads that as a corrupt entry and overwrites it.
        """
        return self._do(self._get(key))

    async def aget(self, key: str) -> bytes | None:
        """Async :meth:`get`."""
        return await self._ado(self._get(key))

    def _get(self, key: str) -> Flow[bytes | None]:
        name = self._namespace + key
        try:
            value = yield Command(lambda client: client.get(name), lambda client: client.get(name))
        except self._errors as exc:
            if _is_wrong_type(exc):
                msg = "the Redis key of this entry holds another data type, not a string"
                raise CorruptEntryError(msg) from None
            self._health.failed("get", exc, _MISS)
            return None
        self._health.succeeded()
        return _entry(value)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: until evicted).

        When Redis is down the entry is simply not stored.
        """
        self._do(self._set(key, value, ttl))

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        """Async :meth:`set`."""
        await self._ado(self._set(key, value, ttl))

    def _set(self, key: str, value: bytes, ttl: float | None) -> Flow[None]:
        name, expiry = self._namespace + key, _expiry_ms(ttl)
        try:
            yield Command(
                lambda client: client.set(name, value, px=expiry),
                lambda client: client.set(name, value, px=expiry),
            )
        except self._errors as exc:
            self._health.failed("set", exc, _SKIPPED)
            return
        self._health.succeeded()
