"""Strictly typed, model-bound callables over litellm.

Every public name is imported on first use: ``import fixedmodel`` loads neither litellm nor
the layers a program does not touch (routing, batch jobs, workers, stores, tenacity). The
response types below are litellm's own, resolved from litellm on first access; litellm's
exception classes are in :mod:`fixedmodel.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fixedmodel._lazy import first_use

if TYPE_CHECKING:
    from litellm.litellm_core_utils.streaming_handler import (
        CustomStreamWrapper as CustomStreamWrapper,
    )
    from litellm.types.utils import ChatCompletionDeltaToolCall as ChatCompletionDeltaToolCall
    from litellm.types.utils import (
        ChatCompletionMessageCustomToolCall as ChatCompletionMessageCustomToolCall,
    )
    from litellm.types.utils import ChatCompletionMessageToolCall as ChatCompletionMessageToolCall
    from litellm.types.utils import Choices as Choices
    from litellm.types.utils import Delta as Delta
    from litellm.types.utils import EmbeddingResponse as EmbeddingResponse
    from litellm.types.utils import Function as Function
    from litellm.types.utils import Message as Message
    from litellm.types.utils import ModelResponse as ModelResponse
    from litellm.types.utils import ModelResponseStream as ModelResponseStream
    from litellm.types.utils import StreamingChoices as StreamingChoices
    from litellm.types.utils import Usage as Usage

    from fixedmodel import errors as errors
    from fixedmodel import responses as responses
    from fixedmodel._batch import CompletionRequest as CompletionRequest
    from fixedmodel._batch import EmbeddingRequest as EmbeddingRequest
    from fixedmodel._batch import abatch as abatch
    from fixedmodel._batch import aiter_batch as aiter_batch
    from fixedmodel._batch import batch as batch
    from fixedmodel._batch_lines import ProviderBatchLineError as ProviderBatchLineError
    from fixedmodel._batch_result import BatchCancelledError as BatchCancelledError
    from fixedmodel._batch_result import BatchFailure as BatchFailure
    from fixedmodel._batch_result import BatchResult as BatchResult
    from fixedmodel._batch_result import BatchSuccess as BatchSuccess
    from fixedmodel._batch_run import BatchRun as BatchRun
    from fixedmodel._bind import BoundACompletion as BoundACompletion
    from fixedmodel._bind import BoundAEmbedding as BoundAEmbedding
    from fixedmodel._bind import BoundCompletion as BoundCompletion
    from fixedmodel._bind import BoundEmbedding as BoundEmbedding
    from fixedmodel._bind import UnknownKeywordWarning as UnknownKeywordWarning
    from fixedmodel._bind import bind_acompletion as bind_acompletion
    from fixedmodel._bind import bind_aembedding as bind_aembedding
    from fixedmodel._bind import bind_completion as bind_completion
    from fixedmodel._bind import bind_embedding as bind_embedding
    from fixedmodel._params import CompletionParams as CompletionParams
    from fixedmodel._params import EmbeddingInput as EmbeddingInput
    from fixedmodel._params import EmbeddingParams as EmbeddingParams
    from fixedmodel._params import MessageParam as MessageParam
    from fixedmodel._params import Messages as Messages
    from fixedmodel._progress import BatchProgress as BatchProgress
    from fixedmodel._progress import ProgressCallback as ProgressCallback
    from fixedmodel._protocols import AFixedModelCompletion as AFixedModelCompletion
    from fixedmodel._protocols import AFixedModelEmbedding as AFixedModelEmbedding
    from fixedmodel._protocols import ClosableAFixedModelCompletion as ClosableAFixedModelCompletion
    from fixedmodel._protocols import ClosableAFixedModelEmbedding as ClosableAFixedModelEmbedding
    from fixedmodel._protocols import ClosableFixedModelCompletion as ClosableFixedModelCompletion
    from fixedmodel._protocols import ClosableFixedModelEmbedding as ClosableFixedModelEmbedding
    from fixedmodel._protocols import FixedModelCompletion as FixedModelCompletion
    from fixedmodel._protocols import FixedModelEmbedding as FixedModelEmbedding
    from fixedmodel._provider_batch import provider_batch as provider_batch
    from fixedmodel._workers import batch_on as batch_on
    from fixedmodel.middleware.cache import is_cache_hit as is_cache_hit
    from fixedmodel.middleware.cache import with_cache as with_cache
    from fixedmodel.middleware.observe import CallRecord as CallRecord
    from fixedmodel.middleware.observe import InMemoryMetrics as InMemoryMetrics
    from fixedmodel.middleware.observe import MetricsSink as MetricsSink
    from fixedmodel.middleware.observe import MetricsSummary as MetricsSummary
    from fixedmodel.middleware.observe import default_metrics as default_metrics
    from fixedmodel.middleware.observe import with_logging as with_logging
    from fixedmodel.middleware.observe import with_metrics as with_metrics
    from fixedmodel.middleware.rate_limit import Permit as Permit
    from fixedmodel.middleware.rate_limit import RateLimit as RateLimit
    from fixedmodel.middleware.rate_limit import RateLimiter as RateLimiter
    from fixedmodel.middleware.rate_limit import with_rate_limit as with_rate_limit
    from fixedmodel.middleware.retries import RetryPolicy as RetryPolicy
    from fixedmodel.middleware.retries import with_retries as with_retries
    from fixedmodel.middleware.tracing import with_tracing as with_tracing
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

# Where each public name lives: the module imported on first use. The imports above say the
# same for the type checkers; a test keeps the two equal.
_HOME_OF: dict[str, str] = {
    "AFixedModelCompletion": "fixedmodel._protocols",
    "AFixedModelEmbedding": "fixedmodel._protocols",
    "Acquisition": "fixedmodel.stores._limiter_store",
    "BatchCancelledError": "fixedmodel._batch_result",
    "BatchFailure": "fixedmodel._batch_result",
    "BatchProgress": "fixedmodel._progress",
    "BatchResult": "fixedmodel._batch_result",
    "BatchRun": "fixedmodel._batch_run",
    "BatchSuccess": "fixedmodel._batch_result",
    "BoundACompletion": "fixedmodel._bind",
    "BoundAEmbedding": "fixedmodel._bind",
    "BoundCompletion": "fixedmodel._bind",
    "BoundEmbedding": "fixedmodel._bind",
    "Budget": "fixedmodel.routing",
    "BudgetStatus": "fixedmodel.routing",
    "BudgetStore": "fixedmodel.stores._budget_store",
    "CacheStore": "fixedmodel.stores._cache_store",
    "CallRecord": "fixedmodel.middleware.observe",
    "ChatCompletionDeltaToolCall": "litellm.types.utils",
    "ChatCompletionMessageCustomToolCall": "litellm.types.utils",
    "ChatCompletionMessageToolCall": "litellm.types.utils",
    "Choices": "litellm.types.utils",
    "ClosableAFixedModelCompletion": "fixedmodel._protocols",
    "ClosableAFixedModelEmbedding": "fixedmodel._protocols",
    "ClosableFixedModelCompletion": "fixedmodel._protocols",
    "ClosableFixedModelEmbedding": "fixedmodel._protocols",
    "CompletionParams": "fixedmodel._params",
    "CompletionRequest": "fixedmodel._batch",
    "CooldownPolicy": "fixedmodel.routing",
    "CooldownStore": "fixedmodel.stores._cooldown_store",
    "CorruptEntryError": "fixedmodel.stores._cache_store",
    "CustomStreamWrapper": "litellm.litellm_core_utils.streaming_handler",
    "Delta": "litellm.types.utils",
    "DiskCacheStore": "fixedmodel.stores.disk",
    "EmbeddingInput": "fixedmodel._params",
    "EmbeddingParams": "fixedmodel._params",
    "EmbeddingRequest": "fixedmodel._batch",
    "EmbeddingResponse": "litellm.types.utils",
    "FallbackPolicy": "fixedmodel.routing",
    "FixedModelCompletion": "fixedmodel._protocols",
    "FixedModelEmbedding": "fixedmodel._protocols",
    "Function": "litellm.types.utils",
    "InMemoryMetrics": "fixedmodel.middleware.observe",
    "LimiterStore": "fixedmodel.stores._limiter_store",
    "MemoryBudgetStore": "fixedmodel.stores.budget_memory",
    "MemoryCacheStore": "fixedmodel.stores.memory",
    "MemoryCooldownStore": "fixedmodel.stores.cooldown_memory",
    "MemoryLimiterStore": "fixedmodel.stores.limiter_memory",
    "Message": "litellm.types.utils",
    "MessageParam": "fixedmodel._params",
    "Messages": "fixedmodel._params",
    "MetricsSink": "fixedmodel.middleware.observe",
    "MetricsSummary": "fixedmodel.middleware.observe",
    "ModelResponse": "litellm.types.utils",
    "ModelResponseStream": "litellm.types.utils",
    "OnError": "fixedmodel.stores.redis_limiter",
    "Permit": "fixedmodel.middleware.rate_limit",
    "ProgressCallback": "fixedmodel._progress",
    "ProviderBatchLineError": "fixedmodel._batch_lines",
    "RateLimit": "fixedmodel.middleware.rate_limit",
    "RateLimiter": "fixedmodel.middleware.rate_limit",
    "RedisBudgetStore": "fixedmodel.stores.redis_budget",
    "RedisCacheStore": "fixedmodel.stores.redis_cache",
    "RedisCooldownStore": "fixedmodel.stores.redis_cooldown",
    "RedisLimiterStore": "fixedmodel.stores.redis_limiter",
    "RedisUnavailableError": "fixedmodel.stores.redis_limiter",
    "ResponseContentError": "fixedmodel.responses",
    "RetryPolicy": "fixedmodel.middleware.retries",
    "Strategy": "fixedmodel.routing",
    "StreamingChoices": "litellm.types.utils",
    "UnknownKeywordWarning": "fixedmodel._bind",
    "Usage": "litellm.types.utils",
    "abatch": "fixedmodel._batch",
    "aiter_batch": "fixedmodel._batch",
    "batch": "fixedmodel._batch",
    "batch_on": "fixedmodel._workers",
    "bind_acompletion": "fixedmodel._bind",
    "bind_aembedding": "fixedmodel._bind",
    "bind_completion": "fixedmodel._bind",
    "bind_embedding": "fixedmodel._bind",
    "budget_pacing": "fixedmodel.routing",
    "default_metrics": "fixedmodel.middleware.observe",
    "errors": "fixedmodel.errors",
    "fallback_causes": "fixedmodel.routing",
    "is_cache_hit": "fixedmodel.middleware.cache",
    "is_fallback_worthy": "fixedmodel.routing",
    "provider_batch": "fixedmodel._provider_batch",
    "responses": "fixedmodel.responses",
    "with_budget": "fixedmodel.routing",
    "with_cache": "fixedmodel.middleware.cache",
    "with_fallbacks": "fixedmodel.routing",
    "with_load_balancing": "fixedmodel.routing",
    "with_logging": "fixedmodel.middleware.observe",
    "with_metrics": "fixedmodel.middleware.observe",
    "with_rate_limit": "fixedmodel.middleware.rate_limit",
    "with_retries": "fixedmodel.middleware.retries",
    "with_tracing": "fixedmodel.middleware.tracing",
}


# The subpackages users reach as attributes (fixedmodel.routing.with_budget, ...).
_SUBPACKAGES = ("middleware", "routing", "stores", "testing")

if not TYPE_CHECKING:
    # Hidden from checkers: a module __getattr__ would make them accept any misspelled name.
    __getattr__, __dir__ = first_use(
        "fixedmodel", {**_HOME_OF, **{n: f"fixedmodel.{n}" for n in _SUBPACKAGES}}, globals()
    )
