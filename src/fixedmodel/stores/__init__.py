"""Storage backends for the cache, the rate limiter, cooldowns and budgets."""

from fixedmodel.stores._budget_store import BudgetStore as BudgetStore
from fixedmodel.stores._cache_store import (
    CacheStore as CacheStore,
)
from fixedmodel.stores._cache_store import (
    CorruptEntryError as CorruptEntryError,
)
from fixedmodel.stores._cooldown_store import CooldownStore as CooldownStore
from fixedmodel.stores._limiter_store import (
    Acquisition as Acquisition,
)
from fixedmodel.stores._limiter_store import (
    LimiterStore as LimiterStore,
)
from fixedmodel.stores.budget_memory import MemoryBudgetStore as MemoryBudgetStore
from fixedmodel.stores.cooldown_memory import MemoryCooldownStore as MemoryCooldownStore
from fixedmodel.stores.disk import DiskCacheStore as DiskCacheStore
from fixedmodel.stores.limiter_memory import MemoryLimiterStore as MemoryLimiterStore
from fixedmodel.stores.memory import MemoryCacheStore as MemoryCacheStore
from fixedmodel.stores.redis_budget import RedisBudgetStore as RedisBudgetStore
from fixedmodel.stores.redis_cache import RedisCacheStore as RedisCacheStore
from fixedmodel.stores.redis_cooldown import RedisCooldownStore as RedisCooldownStore
from fixedmodel.stores.redis_limiter import RedisLimiterStore as RedisLimiterStore

__all__ = [
    "Acquisition",
    "BudgetStore",
    "CacheStore",
    "CooldownStore",
    "CorruptEntryError",
    "DiskCacheStore",
    "LimiterStore",
    "MemoryBudgetStore",
    "MemoryCacheStore",
    "MemoryCooldownStore",
    "MemoryLimiterStore",
    "RedisBudgetStore",
    "RedisCacheStore",
    "RedisCooldownStore",
    "RedisLimiterStore",
]
