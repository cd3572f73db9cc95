"""Storage backends for the cache, the rate limiter, cooldowns and budgets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fixedmodel._lazy import first_use

if TYPE_CHECKING:
    from fixedmodel.stores._budget_store import BudgetStore as BudgetStore
    from fixedmodel.stores._cache_store import CacheStore as CacheStore
    from fixedmodel.stores._cache_store import CorruptEntryError as CorruptEntryError
    from fixedmodel.stores._cooldown_store import CooldownStore as CooldownStore
    from fixedmodel.stores._limiter_store import Acquisition as Acquisition
    from fixedmodel.stores._limiter_store import LimiterStore as LimiterStore
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

# Where each name lives, imported on first use (see fixedmodel._lazy); a test keeps it
# equal to the imports above.
_HOME_OF: dict[str, str] = {
    "Acquisition": "fixedmodel.stores._limiter_store",
    "BudgetStore": "fixedmodel.stores._budget_store",
    "CacheStore": "fixedmodel.stores._cache_store",
    "CooldownStore": "fixedmodel.stores._cooldown_store",
    "CorruptEntryError": "fixedmodel.stores._cache_store",
    "DiskCacheStore": "fixedmodel.stores.disk",
    "LimiterStore": "fixedmodel.stores._limiter_store",
    "MemoryBudgetStore": "fixedmodel.stores.budget_memory",
    "MemoryCacheStore": "fixedmodel.stores.memory",
    "MemoryCooldownStore": "fixedmodel.stores.cooldown_memory",
    "MemoryLimiterStore": "fixedmodel.stores.limiter_memory",
    "RedisBudgetStore": "fixedmodel.stores.redis_budget",
    "RedisCacheStore": "fixedmodel.stores.redis_cache",
    "RedisCooldownStore": "fixedmodel.stores.redis_cooldown",
    "RedisLimiterStore": "fixedmodel.stores.redis_limiter",
}

if not TYPE_CHECKING:  # Hidden from checkers, which would accept any misspelled name.
    __getattr__, __dir__ = first_use("fixedmodel.stores", _HOME_OF, globals())
