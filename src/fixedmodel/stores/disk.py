"""Persistent response cache store on local disk, backed by ``diskcache``.

``diskcache`` keeps entries in an SQLite database (write-ahead log) plus files for large
values, so one directory can be shared by several threads and processes at once, and
entries outlive the process that wrote them. It is the optional extra
``fixedmodel[disk]`` and is imported only when a :class:`DiskCacheStore` is created.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from fixedmodel._closing import Closing
from fixedmodel.stores._cache_store import CorruptEntryError, after_fork_in_child

__all__ = ["DiskCacheStore"]

_T = TypeVar("_T")


class _DiskCache(Protocol):
    """The part of ``diskcache.Cache`` this store uses (diskcache ships no type hints)."""

    def get(self, key: str, default: None = None) -> object: ...

    def set(self, key: str, value: bytes, expire: float | None = None) -> object: ...

    def clear(self) -> object: ...

    def close(self) -> None: ...


def _open_cache(directory: str, timeout: float, size_limit: int) -> _DiskCache:
    try:
        diskcache = importlib.import_module("diskcache")
    except ImportError as exc:
        msg = (
            "DiskCacheStore needs the optional 'diskcache' package; "
            "install it with: pip install 'fixedmodel[disk]'"
        )
        raise ImportError(msg, name="diskcache") from exc
    cache: _DiskCache = diskcache.Cache(directory, timeout=timeout, size_limit=size_limit)
    return cache


def _check_size_limit(size_limit: object) -> None:
    if isinstance(size_limit, bool) or not isinstance(size_limit, int):
        msg = f"size_limit must be an int number of bytes, got {type(size_limit).__name__}"
        raise TypeError(msg)
    if size_limit < 2**20:
        msg = f"size_limit must be at least 1 MiB (1048576 bytes), got {size_limit}"
        raise ValueError(msg)


class DiskCacheStore(Closing):
    """A response cache store in a directory, shared by threads and processes.

    Conforms to :class:`~fixedmodel.stores.CacheStore`. Entries persist across restarts
    until their TTL passes or the directory outgrows ``size_limit`` (then the least recently
    stored entries go first). The async methods run the SQLite work on one worker thread
    owned by the store, so the event loop never blocks on disk or on another process's lock.
    A store may be used in a forked child: it starts its own worker thread and SQLite
    connection there.

    Args:
        directory: Where the entries live; created if missing.
        size_limit: Approximate most bytes on disk; at least 1 MiB.
        timeout: Seconds to wait for another process's database lock before the operation
            fails (the cache then calls the model instead).

    Raises:
        ImportError: ``diskcache`` is not installed (``pip install 'fixedmodel[disk]'``).
        ValueError: ``size_limit`` or ``timeout`` is out of range.
    """

    __slots__ = (
        "__weakref__",
        "_cache",
        "_directory",
        "_executor",
        "_executor_lock",
        "_size_limit",
        "_timeout",
    )

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        size_limit: int = 2**30,
        timeout: float = 5.0,
    ) -> None:
        _check_size_limit(size_limit)
        if not timeout > 0:
            msg = f"timeout must be a positive number of seconds, got {timeout!r}"
            raise ValueError(msg)
        self._directory = os.fspath(directory)
        self._timeout = float(timeout)
        self._size_limit = size_limit
        self._cache = _open_cache(self._directory, float(timeout), size_limit)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        after_fork_in_child(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # The entries live in the directory: another process opens the same one.
        options = {"size_limit": self._size_limit, "timeout": self._timeout}
        return (_reopen, (self._directory, options))

    def _after_fork(self) -> None:
        # The worker thread does not exist in a forked child (an executor that believes it
        # has one would queue work forever), and another thread may have held the lock.
        # diskcache itself reconnects to SQLite when it sees a new process id.
        self._executor = None
        self._executor_lock = threading.Lock()

    @property
    def directory(self) -> str:
        """The directory holding the entries."""
        return self._directory

    def get(self, key: str) -> bytes | None:
        """Return the value under ``key``, or ``None`` when absent or expired.

        Raises:
            CorruptEntryError: The directory holds something other than bytes under ``key``
                (another program wrote into it); the cache reads that as a corrupt entry.
        """
        value = self._cache.get(key)
        if value is None or isinstance(value, bytes):
            return value
        msg = f"the disk cache holds a {type(value).__name__} under this key, not bytes"
        raise CorruptEntryError(msg)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: until evicted)."""
        self._cache.set(key, value, expire=ttl)

    async def aget(self, key: str) -> bytes | None:
        """Async :meth:`get`, run on the store's worker thread."""
        return await self._in_worker(lambda: self.get(key))

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        """Async :meth:`set`, run on the store's worker thread."""
        await self._in_worker(lambda: self.set(key, value, ttl))

    def clear(self) -> None:
        """Remove every entry from the directory."""
        self._cache.clear()

    def close(self) -> None:
        """Close the database connections; the store reopens them if used again."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            # diskcache keeps one connection per thread: close the worker's in the worker.
            executor.submit(self._cache.close).result()
            executor.shutdown(wait=True)
        self._cache.close()

    async def _in_worker(self, function: Callable[[], _T]) -> _T:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="fixedmodel-disk-cache"
                )
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, function)

    def __repr__(self) -> str:
        return f"DiskCacheStore({self._directory!r})"


def _reopen(directory: str, options: dict[str, Any]) -> DiskCacheStore:
    """Unpickle a disk store: open its directory again."""
    return DiskCacheStore(directory, **options)
