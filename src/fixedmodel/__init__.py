"""Strictly typed, model-bound callables over litellm.

``import fixedmodel`` does not import litellm; the response types below are resolved from
litellm on first access, and litellm's exception classes from :mod:`fixedmodel.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fixedmodel import errors as errors
from fixedmodel import responses as responses
from fixedmodel._batch import (
    BatchCancelledError as BatchCancelledError,
)
from fixedmodel._batch import (
    BatchFailure as BatchFailure,
)
from fixedmodel._batch import (
    BatchProgress as BatchProgress,
)
from fixedmodel._batch import (
    BatchResult as BatchResult,
)
from fixedmodel._batch import (
    BatchRun as BatchRun,
)
from fixedmodel._batch import (
    BatchSuccess as BatchSuccess,
)
from fixedmodel._batch import (
    CompletionRequest as CompletionRequest,
)
from fixedmodel._batch import (
    EmbeddingRequest as EmbeddingRequest,
)
from fixedmodel._batch import (
    abatch as abatch,
)
from fixedmodel._batch import (
    aiter_batch as aiter_batch,
)
from fixedmodel._batch import (
    batch as batch,
)
from fixedmodel._batch_lines import (
    ProviderBatchLineError as ProviderBatchLineError,
)
from fixedmodel._bind import (
    BoundACompletion as BoundACompletion,
)
from fixedmodel._bind import (
    BoundAEmbedding as BoundAEmbedding,
)
from fixedmodel._bind import (
    BoundCompletion as BoundCompletion,
)
from fixedmodel._bind import (
    BoundEmbedding as BoundEmbedding,
)
from fixedmodel._bind import (
    UnknownKeywordWarning as UnknownKeywordWarning,
)
from fixedmodel._bind import (
    bind_acompletion as bind_acompletion,
)
from fixedmodel._bind import (
    bind_aembedding as bind_aembedding,
)
from fixedmodel._bind import (
    bind_completion as bind_completion,
)
from fixedmodel._bind import (
    bind_embedding as bind_embedding,
)
from fixedmodel._params import (
    CompletionParams as CompletionParams,
)
from fixedmodel._params import (
    EmbeddingInput as EmbeddingInput,
)
from fixedmodel._params import (
    EmbeddingParams as EmbeddingParams,
)
from fixedmodel._params import (
    MessageParam as MessageParam,
)
from fixedmodel._params import (
    Messages as Messages,
)
from fixedmodel._progress import (
    ProgressCallback as ProgressCallback,
)
from fixedmodel._protocols import (
    AFixedModelCompletion as AFixedModelCompletion,
)
from fixedmodel._protocols import (
    AFixedModelEmbedding as AFixedModelEmbedding,
)
from fixedmodel._protocols import (
    ClosableAFixedModelCompletion as ClosableAFixedModelCompletion,
)
from fixedmodel._protocols import (
    ClosableAFixedModelEmbedding as ClosableAFixedModelEmbedding,
)
from fixedmodel._protocols import (
    ClosableFixedModelCompletion as ClosableFixedModelCompletion,
)
from fixedmodel._protocols import (
    ClosableFixedModelEmbedding as ClosableFixedModelEmbedding,
)
from fixedmodel._protocols import (
    FixedModelCompletion as FixedModelCompletion,
)
from fixedmodel._protocols import (
    FixedModelEmbedding as FixedModelEmbedding,
)
from fixedmodel._provider_batch import (
    provider_batch as provider_batch,
)
from fixedmodel._workers import (
    batch_on as batch_on,
)
from fixedmodel.middleware.cache import (
    is_cache_hit as is_cache_hit,
)
from fixedmodel.middleware.cache import (
    with_cache as with_cache,
)
from fixedmodel.middleware.observe import (
    CallRecord as CallRecord,
)
from fixedmodel.middleware.observe import (
    InMemoryMetrics as InMemoryMetrics,
)
from fixedmodel.middleware.observe import (
    MetricsSink as MetricsSink,
)
from fixedmodel.middleware.observe import (
    MetricsSummary as MetricsSummary,
)
from fixedmodel.middleware.observe import (
    default_metrics as default_metrics,
)
from fixedmodel.middleware.observe import (
    with_logging as with_logging,
)
from fixedmodel.middleware.observe import (
    with_metrics as with_metrics,
)
from fixedmodel.middleware.rate_limit import (
    Permit as Permit,
)
from fixedmodel.middleware.rate_limit import (
    RateLimit as RateLimit,
)
from fixedmodel.middleware.rate_limit import (
    RateLimiter as RateLimiter,
)
from fixedmodel.middleware.rate_limit import (
    with_rate_limit as with_rate_limit,
)
from fixedmodel.middleware.retries import (
    RetryPolicy as RetryPolicy,
)
from fixedmodel.middleware.retries import (
    with_retries as with_retries,
)
from fixedmodel.middleware.tracing import (
    with_tracing as with_tracing,
)
from fixedmodel.responses import ResponseContentError as ResponseContentError
from fixedmodel.routing import Budget as Budget
from fixedmodel.routing import BudgetStatus as BudgetStatus
from fixedmodel.routing import CooldownPolicy as CooldownPolicy
from fixedmodel.routing import FallbackPolicy as FallbackPolicy
from fixedmodel.routing import Strategy as Strategy
from fixedmodel.routing import budget_pacing as budget_pacing
from fixedmodel.routing import fallback_causes as fallback_causes
from fixedmodel.routing import is_fallback_worthy as is_fallback_worthy
from fixedmodel.routing import with_budget as with_budget
from fixedmodel.routing import with_fallbacks as with_fallbacks
from fixedmodel.routing import with_load_balancing as with_load_balancing
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
from fixedmodel.stores.redis_limiter import OnError as OnError
from fixedmodel.stores.redis_limiter import RedisLimiterStore as RedisLimiterStore
from fixedmodel.stores.redis_limiter import RedisUnavailableError as RedisUnavailableError

if TYPE_CHECKING:
    from litellm.litellm_core_utils.streaming_handler import (
        CustomStreamWrapper as CustomStreamWrapper,
    )
    from litellm.types.utils import (
        ChatCompletionDeltaToolCall as ChatCompletionDeltaToolCall,
    )
    from litellm.types.utils import (
        ChatCompletionMessageCustomToolCall as ChatCompletionMessageCustomToolCall,
    )
    from litellm.types.utils import (
        ChatCompletionMessageToolCall as ChatCompletionMessageToolCall,
    )
    from litellm.types.utils import (
        Choices as Choices,
    )
    from litellm.types.utils import (
        Delta as Delta,
    )
    from litellm.types.utils import (
        EmbeddingResponse as EmbeddingResponse,
    )
    from litellm.types.utils import (
        Function as Function,
    )
    from litellm.types.utils import (
        Message as Message,
    )
    from litellm.types.utils import (
        ModelResponse as ModelResponse,
    )
    from litellm.types.utils import (
        ModelResponseStream as ModelResponseStream,
    )
    from litellm.types.utils import (
        StreamingChoices as StreamingChoices,
    )
    from litellm.types.utils import (
        Usage as Usage,
    )

__all__ = [
    "AFixedModelCompletion",
    "AFixedModelEmbedding",
    "Acquisition",
    "BatchCancelledError",
    "BatchFailure",
    "BatchProgress",
    "BatchResult",
    "BatchRun",
    "BatchSuccess",
    "BoundACompletion",
    "BoundAEmbedding",
    "BoundCompletion",
    "BoundEmbedding",
    "Budget",
    "BudgetStatus",
    "BudgetStore",
    "CacheStore",
    "CallRecord",
    "ChatCompletionDeltaToolCall",
    "ChatCompletionMessageCustomToolCall",
    "ChatCompletionMessageToolCall",
    "Choices",
    "ClosableAFixedModelCompletion",
    "ClosableAFixedModelEmbedding",
    "ClosableFixedModelCompletion",
    "ClosableFixedModelEmbedding",
    "CompletionParams",
    "CompletionRequest",
    "CooldownPolicy",
    "CooldownStore",
    "CorruptEntryError",
    "CustomStreamWrapper",
    "Delta",
    "DiskCacheStore",
    "EmbeddingInput",
    "EmbeddingParams",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "FallbackPolicy",
    "FixedModelCompletion",
    "FixedModelEmbedding",
    "Function",
    "InMemoryMetrics",
    "LimiterStore",
    "MemoryBudgetStore",
    "MemoryCacheStore",
    "MemoryCooldownStore",
    "MemoryLimiterStore",
    "Message",
    "MessageParam",
    "Messages",
    "MetricsSink",
    "MetricsSummary",
    "ModelResponse",
    "ModelResponseStream",
    "OnError",
    "Permit",
    "ProgressCallback",
    "ProviderBatchLineError",
    "RateLimit",
    "RateLimiter",
    "RedisBudgetStore",
    "RedisCacheStore",
    "RedisCooldownStore",
    "RedisLimiterStore",
    "RedisUnavailableError",
    "ResponseContentError",
    "RetryPolicy",
    "Strategy",
    "StreamingChoices",
    "UnknownKeywordWarning",
    "Usage",
    "abatch",
    "aiter_batch",
    "batch",
    "batch_on",
    "bind_acompletion",
    "bind_aembedding",
    "bind_completion",
    "bind_embedding",
    "budget_pacing",
    "default_metrics",
    "errors",
    "fallback_causes",
    "is_cache_hit",
    "is_fallback_worthy",
    "provider_batch",
    "responses",
    "with_budget",
    "with_cache",
    "with_fallbacks",
    "with_load_balancing",
    "with_logging",
    "with_metrics",
    "with_rate_limit",
    "with_retries",
    "with_tracing",
]

_LAZY_TYPES = {
    "ChatCompletionDeltaToolCall": "litellm.types.utils",
    "ChatCompletionMessageCustomToolCall": "litellm.types.utils",
    "ChatCompletionMessageToolCall": "litellm.types.utils",
    "Choices": "litellm.types.utils",
    "CustomStreamWrapper": "litellm.litellm_core_utils.streaming_handler",
    "Delta": "litellm.types.utils",
    "EmbeddingResponse": "litellm.types.utils",
    "Function": "litellm.types.utils",
    "Message": "litellm.types.utils",
    "ModelResponse": "litellm.types.utils",
    "ModelResponseStream": "litellm.types.utils",
    "StreamingChoices": "litellm.types.utils",
    "Usage": "litellm.types.utils",
}


if not TYPE_CHECKING:
    # Hidden from checkers: a module __getattr__ would make them accept any misspelled name.

    def __getattr__(name: str) -> object:
        # Resolve litellm's response types on first use so that importing fixedmodel stays cheap.
        if name in _LAZY_TYPES:
            import importlib

            from fixedmodel._litellm import litellm_module

            litellm_module()
            value: object = getattr(importlib.import_module(_LAZY_TYPES[name]), name)
            globals()[name] = value
            return value
        msg = f"module 'fixedmodel' has no attribute {name!r}"
        raise AttributeError(msg)
