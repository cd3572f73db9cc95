"""In-process response cache store: a bounded LRU map with per-entry expiry.

The default store of :func:`fixedmodel.middleware.cache.with_cache`. It lives and dies with
the process and is shared by whatever holds a reference to it (several cache wrappers may
use one store, e.g. a sync and an async callable of the same model).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NoReturn

from fixedmodel._pickling import refuse_pickling
from fixedmodel.stores._cache_store import after_fork_in_child

__all__ = ["MemoryCacheStore"]


class MemoryCacheStore:
    """A least-recently-used map of at most ``max_entries`` entries, each with its own TTL.

    Conforms to :class:`~fixedmodel.stores.CacheStore`. Reading an entry makes it the most
    recently used; storing into a full map evicts the least recently used one. Expired
    entries read as absent and are dropped when met. Safe to share between threads; the
    async methods never wait (everything is in memory). A forked child keeps a copy of the
    entries and uses it on its own.

    Args:
        max_entries: Most entries kept; at least 1.
        clock: Monotonic seconds used for expiry; tests pass a controllable clock.

    Raises:
        ValueError: ``max_entries`` is smaller than 1.
        TypeError: ``max_entries`` is not an int, or ``clock`` is not callable.
    """

    __slots__ = ("__weakref__", "_clock", "_entries", "_lock", "_max_entries")

    def __init__(
        self, max_entries: int = 1024, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        _check_count("max_entries", max_entries, 1)
        if not callable(clock):
            msg = f"clock must be a callable returning seconds, got {type(clock).__name__}"
            raise TypeError(msg)
        self._max_entries = max_entries
        self._clock = clock
        # key -> (value, expiry in clock seconds or inf); ordered oldest use first.
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()
        after_fork_in_child(self)

    def __reduce__(self) -> NoReturn:
        refuse_pickling("MemoryCacheStore", "DiskCacheStore(path) or RedisCacheStore(url)")

    def _after_fork(self) -> None:
        # The entries are the parent's, copied, and stay valid; a lock another thread held
        # at the fork would stay locked in the child forever.
        self._lock = threading.Lock()

    @property
    def max_entries(self) -> int:
        """Most entries kept before the least recently used one is evicted."""
        return self._max_entries

    def __len__(self) -> int:
        """Count stored entries, expired ones not yet dropped included."""
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        """Return the value under ``key`` and mark it recently used; ``None`` if absent."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[1] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: until evicted)."""
        expiry = math.inf if ttl is None else self._clock() + ttl
        with self._lock:
            self._entries[key] = (value, expiry)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    async def aget(self, key: str) -> bytes | None:
        """Async :meth:`get` (does not suspend)."""
        return self.get(key)

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        """Async :meth:`set` (does not suspend)."""
        self.set(key, value, ttl)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()

    def __repr__(self) -> str:
        return f"MemoryCacheStore(max_entries={self._max_entries}, entries={len(self)})"


def _check_count(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name} must be an int, got {type(value).__name__}"
        raise TypeError(msg)
    if value < least:
        msg = f"{name} must be at least {least}, got {value}"
        raise ValueError(msg)
