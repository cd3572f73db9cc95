"""Storage backends for the cache and the rate limiter."""

from fixedmodel.stores._cache_store import (
    CacheStore as CacheStore,
)
from fixedmodel.stores._cache_store import (
    CorruptEntryError as CorruptEntryError,
)
from fixedmodel.stores.disk import DiskCacheStore as DiskCacheStore
from fixedmodel.stores.memory import MemoryCacheStore as MemoryCacheStore

__all__ = ["CacheStore", "CorruptEntryError", "DiskCacheStore", "MemoryCacheStore"]
