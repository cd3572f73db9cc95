"""Storage backends for the cache and the rate limiter."""

from fixedmodel.stores._cache_store import (
    CacheStore as CacheStore,
)
from fixedmodel.stores._cache_store import (
    CorruptEntryError as CorruptEntryError,
)
from fixedmodel.stores._limiter_store import (
    Acquisition as Acquisition,
)
from fixedmodel.stores._limiter_store import (
    LimiterStore as LimiterStore,
)
from fixedmodel.stores.disk import DiskCacheStore as DiskCacheStore
from fixedmodel.stores.limiter_memory import MemoryLimiterStore as MemoryLimiterStore
from fixedmodel.stores.memory import MemoryCacheStore as MemoryCacheStore
from fixedmodel.stores.redis_cache import RedisCacheStore as RedisCacheStore
from fixedmodel.stores.redis_limiter import RedisLimiterStore as RedisLimiterStore

__all__ = [
    "Acquisition",
    "CacheStore",
    "CorruptEntryError",
    "DiskCacheStore",
    "LimiterStore",
    "MemoryCacheStore",
    "MemoryLimiterStore",
    "RedisCacheStore",
    "RedisLimiterStore",
]
