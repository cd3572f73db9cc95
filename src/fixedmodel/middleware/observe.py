"""Logging and metrics: one record per call, built from what the inner layers found out.

Both wrappers time the call, read token usage and litellm's cost from the response, and
take attempts, cache hits and limiter waits from the shared :class:`CallInfo`. Nothing from
the request is recorded except the model name, so secrets cannot leak through here.

For ``stream=True`` the record is made when litellm hands back the stream: latency is the
time to the stream, and tokens are unknown (0) because the chunks have not been read yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, overload, runtime_checkable

from fixedmodel._protocols import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    FixedModelCompletion,
    FixedModelEmbedding,
)
from fixedmodel._pydantic import read_attribute
from fixedmodel.middleware._call import (
    CallInfo,
    ModelCallable,
    RequestKind,
    Wrapper,
    check_callable,
    is_async_callable,
    join_call,
    leave_call,
    request_kind,
)

__all__ = [
    "CallRecord",
    "InMemoryMetrics",
    "MetricsSink",
    "MetricsSummary",
    "default_metrics",
    "with_logging",
    "with_metrics",
]

LOGGER = logging.getLogger("fixedmodel")
_set_attribute = object.__setattr__


@dataclass(frozen=True, init=False)
class CallRecord:
    """What one call did, as seen from outside the whole middleware stack.

    Attributes:
        model: The bound model, or ``None`` for a callable that does not say.
        kind: ``"completion"`` or ``"embedding"``.
        stream: The call asked for a stream.
        latency: Seconds from the call to its result (to the stream for streams).
        prompt_tokens: Prompt tokens the provider reported (0 when unknown).
        completion_tokens: Completion tokens the provider reported (0 when unknown).
        cost: Cost in USD where litellm knows the price, else ``None``.
        cache_hit: The answer came from a cache.
        attempts: Requests made: counted by ``with_retries`` when it is in the stack, else 1
            for a call that reached the model (0 for a cache hit).
        rate_limit_wait: Seconds spent waiting for the rate limiter.
        error: Class name of the exception the call raised, or ``None``.
        served_by: Name of the routed callable that answered (``with_fallbacks``,
            ``with_load_balancing``), or ``None``.
        fallbacks_tried: Fallback callables tried after the primary failed.
        deployments_tried: Deployments a load balancer sent the call to.
        route_failures: ``(callable name, error class name)`` of every routed attempt that
            failed, in order.
    """

    model: str | None
    kind: RequestKind
    stream: bool
    latency: float
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    cache_hit: bool
    attempts: int
    rate_limit_wait: float
    error: str | None
    served_by: str | None
    fallbacks_tried: int
    deployments_tried: int
    route_failures: tuple[tuple[str, str], ...]

    def __init__(
        self,
        model: str | None,
        kind: RequestKind,
        stream: bool,
        latency: float,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float | None,
        cache_hit: bool,
        attempts: int,
        rate_limit_wait: float,
        error: str | None,
        served_by: str | None = None,
        fallbacks_tried: int = 0,
        deployments_tried: int = 0,
        route_failures: tuple[tuple[str, str], ...] = (),
    ) -> None:
        # All fields in one assignment, where a frozen dataclass's own __init__ makes one
        # object.__setattr__ call per field: two records are made per call, and on a cache
        # hit through the whole stack the difference was 8% of its time.
        _set_attribute(
            self,
            "__dict__",
            {
                "model": model,
                "kind": kind,
                "stream": stream,
                "latency": latency,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "cost": cost,
                "cache_hit": cache_hit,
                "attempts": attempts,
                "rate_limit_wait": rate_limit_wait,
                "error": error,
                "served_by": served_by,
                "fallbacks_tried": fallbacks_tried,
                "deployments_tried": deployments_tried,
                "route_failures": route_failures,
            },
        )

    @property
    def retries(self) -> int:
        """Attempts beyond the first."""
        return max(self.attempts - 1, 0)


@runtime_checkable
class MetricsSink(Protocol):
    """Where :func:`with_metrics` sends each :class:`CallRecord`."""

    def record(self, call: CallRecord) -> None:
        """Take one record; must be quick and must not raise."""
        ...


@dataclass(frozen=True)
class MetricsSummary:
    """Aggregates over the calls an :class:`InMemoryMetrics` has seen."""

    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    cache_hits: int
    retries: int
    latency_p50: float
    latency_p90: float
    latency_p99: float

    @property
    def cache_hit_rate(self) -> float:
        """Share of calls answered from a cache (0.0 with no calls)."""
        return self.cache_hits / self.calls if self.calls else 0.0


class InMemoryMetrics:
    """A thread-safe in-process aggregator; latency percentiles over the last calls.

    Args:
        latency_window: How many recent latencies the percentiles are taken over; memory
            stays bounded however many calls are recorded.
    """

    def __init__(self, latency_window: int = 10_000) -> None:
        if latency_window < 1:
            msg = f"latency_window must be at least 1, got {latency_window}"
            raise ValueError(msg)
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._calls = self._errors = self._prompt = self._completion = 0
        self._hits = self._retries = 0
        self._cost = 0.0

    def record(self, call: CallRecord) -> None:
        """Add one call to the aggregates."""
        with self._lock:
            self._calls += 1
            self._errors += call.error is not None
            self._prompt += call.prompt_tokens
            self._completion += call.completion_tokens
            self._cost += call.cost or 0.0
            self._hits += call.cache_hit
            self._retries += call.retries
            self._latencies.append(call.latency)

    def summary(self) -> MetricsSummary:
        """Return the aggregates so far."""
        with self._lock:
            ordered = sorted(self._latencies)
            return MetricsSummary(
                calls=self._calls,
                errors=self._errors,
                prompt_tokens=self._prompt,
                completion_tokens=self._completion,
                cost=self._cost,
                cache_hits=self._hits,
                retries=self._retries,
                latency_p50=_percentile(ordered, 0.50),
                latency_p90=_percentile(ordered, 0.90),
                latency_p99=_percentile(ordered, 0.99),
            )

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._latencies.clear()
            self._calls = self._errors = self._prompt = self._completion = 0
            self._hits = self._retries = 0
            self._cost = 0.0


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


_DEFAULT_METRICS = InMemoryMetrics()


def default_metrics() -> InMemoryMetrics:
    """Return the process-wide aggregator that ``with_metrics(fn)`` uses without a sink."""
    return _DEFAULT_METRICS


def _usage_and_cost(result: object) -> tuple[int, int, float | None]:
    usage = read_attribute(result, "usage")
    prompt: object = getattr(usage, "prompt_tokens", 0)  # Declared fields: a plain lookup.
    completion: object = getattr(usage, "completion_tokens", 0)
    hidden = read_attribute(result, "_hidden_params")
    cost: object = None
    if isinstance(hidden, dict):
        cost = hidden.get("response_cost")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # litellm dict
    return (
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
        float(cost) if isinstance(cost, (int, float)) else None,
    )


def _record(
    model: str | None,
    kwargs: dict[str, Any],
    started: float,
    info: CallInfo,
    result: object,
    error: BaseException | None,
) -> CallRecord:
    # A cache hit spends nothing: the usage it carries was paid for by the original call.
    prompt, completion, cost = (0, 0, 0.0) if info.cache_hit else _usage_and_cost(result)
    return CallRecord(
        model=model,
        kind=request_kind(kwargs),
        stream=bool(kwargs.get("stream")),
        latency=time.perf_counter() - started,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost,
        cache_hit=info.cache_hit,
        attempts=info.attempts or (0 if info.cache_hit else 1),
        rate_limit_wait=info.rate_limit_wait,
        error=None if error is None else type(error).__name__,
        served_by=info.served_by,
        fallbacks_tried=info.fallbacks_tried,
        deployments_tried=info.deployments_tried,
        route_failures=info.route_failures,
    )


class _Observed(Wrapper):
    """Runs the inner call in a call scope and hands the finished record to ``emit``."""

    __slots__ = ("_call", "_emit", "_model", "_wants")

    def __init__(
        self,
        inner: Callable[..., Any],
        emit: Callable[[CallRecord], None],
        wants: Callable[[bool], bool],
    ) -> None:
        super().__init__(inner)
        self._call = inner  # Any: the inner callable returns litellm's untyped result
        self._emit = emit
        self._wants = wants  # asked with "did the call fail?" before a record is built
        self._model = self.model  # The stack below never changes: look it up once.

    def _finish(
        self,
        kwargs: dict[str, Any],
        started: float,
        info: CallInfo,
        result: object,
        error: BaseException | None,
    ) -> None:
        try:
            if self._wants(error is not None):
                self._emit(_record(self._model, kwargs, started, info, result, error))
        except Exception:  # an observer must never fail the call it observes
            LOGGER.exception("fixedmodel: recording call metrics failed")


class _AsyncObserved(_Observed):
    __slots__ = ()

    async def __call__(self, **kwargs: Any) -> Any:  # Any: litellm's untyped result
        started = time.perf_counter()
        info, opened = join_call()  # An outer observer may have opened the call's record.
        try:
            result = await self._call(**kwargs)
        except BaseException as exc:
            self._finish(kwargs, started, info, None, exc)
            raise
        finally:
            leave_call(opened)
        self._finish(kwargs, started, info, result, None)
        return result


class _SyncObserved(_Observed):
    __slots__ = ()

    def __call__(self, **kwargs: Any) -> Any:  # Any: litellm's untyped result
        started = time.perf_counter()
        info, opened = join_call()  # An outer observer may have opened the call's record.
        try:
            result = self._call(**kwargs)
        except BaseException as exc:
            self._finish(kwargs, started, info, None, exc)
            raise
        finally:
            leave_call(opened)
        self._finish(kwargs, started, info, result, None)
        return result


def _always(failed: bool) -> bool:
    return True


def _observe(
    fn: ModelCallable,
    emit: Callable[[CallRecord], None],
    wrapper: str,
    wants: Callable[[bool], bool] = _always,
) -> Any:
    check_callable(fn, wrapper)
    return (_AsyncObserved if is_async_callable(fn) else _SyncObserved)(fn, emit, wants)


_LOG_MESSAGE = (
    "llm %s model=%s latency_ms=%.1f prompt_tokens=%d completion_tokens=%d "
    "attempts=%d cache_hit=%s stream=%s error=%s"
)
# A call a routing layer handled also says where it went (added only then, so that the
# records of other calls keep their text).
_ROUTED = " served_by=%s fallbacks_tried=%d deployments_tried=%d route_failures=%s"


def _routing_text(call: CallRecord) -> tuple[str, tuple[object, ...]]:
    if call.served_by is None and not call.route_failures:
        return "", ()
    failures = ",".join(f"{name}:{error}" for name, error in call.route_failures) or "-"
    return _ROUTED, (call.served_by, call.fallbacks_tried, call.deployments_tried, failures)


def _log_emitter(logger: logging.Logger, level: int) -> Callable[[CallRecord], None]:
    def emit(call: CallRecord) -> None:
        log_level = level if call.error is None else max(level, logging.WARNING)
        # Made and handled directly, as logger.log would after finding its caller: walking
        # the stack for that costs as much as the rest of a cache hit, and the caller is
        # always this function. (with_logging asked logger.isEnabledFor before this.)
        routed, routing = _routing_text(call)
        record = logger.makeRecord(
            logger.name,
            log_level,
            _EMIT_FILE,
            _EMIT_LINE,
            _LOG_MESSAGE + routed,
            (
                call.kind,
                call.model,
                call.latency * 1000,
                call.prompt_tokens,
                call.completion_tokens,
                call.attempts,
                call.cache_hit,
                call.stream,
                call.error,
                *routing,
            ),
            None,
            "emit",
            {"fixedmodel_call": call},
        )
        logger.handle(record)

    return emit


# Where the records of with_logging say they were made (logger.log would find the same).
_EMIT_FILE = _log_emitter.__code__.co_filename
_EMIT_LINE = _log_emitter.__code__.co_firstlineno + 1


@overload
def with_logging(
    fn: AFixedModelCompletion, *, logger: logging.Logger | None = ..., level: int = ...
) -> AFixedModelCompletion: ...
@overload
def with_logging(
    fn: FixedModelCompletion, *, logger: logging.Logger | None = ..., level: int = ...
) -> FixedModelCompletion: ...
@overload
def with_logging(
    fn: AFixedModelEmbedding, *, logger: logging.Logger | None = ..., level: int = ...
) -> AFixedModelEmbedding: ...
@overload
def with_logging(
    fn: FixedModelEmbedding, *, logger: logging.Logger | None = ..., level: int = ...
) -> FixedModelEmbedding: ...
def with_logging(
    fn: ModelCallable, *, logger: logging.Logger | None = None, level: int = logging.INFO
) -> ModelCallable:
    """Log one stdlib ``logging`` record per call.

    The record carries model, latency, tokens, attempts, cache hit and error class (as text
    and as the :class:`CallRecord` in ``record.fixedmodel_call``). Failed calls are logged at
    WARNING or above. Request contents and credentials are never logged.

    Args:
        fn: Any of the four callable kinds.
        logger: Where to log; the ``"fixedmodel"`` logger by default.
        level: Level of the record for successful calls.

    Returns:
        A callable of the same kind as ``fn``.
    """
    if type(level) is not int:
        msg = f"level must be a logging level such as logging.INFO, got {level!r}"
        raise TypeError(msg)
    target = logger or LOGGER
    failure_level = max(level, logging.WARNING)

    def wants(failed: bool) -> bool:
        # Skip building the record at all when nothing would be logged.
        return target.isEnabledFor(failure_level if failed else level)

    wrapped: ModelCallable = _observe(fn, _log_emitter(target, level), "with_logging", wants)
    return wrapped


@overload
def with_metrics(
    fn: AFixedModelCompletion, sink: MetricsSink | None = ...
) -> AFixedModelCompletion: ...
@overload
def with_metrics(
    fn: FixedModelCompletion, sink: MetricsSink | None = ...
) -> FixedModelCompletion: ...
@overload
def with_metrics(
    fn: AFixedModelEmbedding, sink: MetricsSink | None = ...
) -> AFixedModelEmbedding: ...
@overload
def with_metrics(
    fn: FixedModelEmbedding, sink: MetricsSink | None = ...
) -> FixedModelEmbedding: ...
def with_metrics(fn: ModelCallable, sink: MetricsSink | None = None) -> ModelCallable:
    """Send a :class:`CallRecord` per call to ``sink``.

    Args:
        fn: Any of the four callable kinds.
        sink: Anything with ``record(CallRecord)``; the process-wide
            :func:`default_metrics` aggregator when omitted.

    Returns:
        A callable of the same kind as ``fn``.
    """
    target = default_metrics() if sink is None else sink
    if not callable(getattr(target, "record", None)):
        msg = f"sink must have a record(CallRecord) method, got {type(target).__name__}"
        raise TypeError(msg)
    wrapped: ModelCallable = _observe(fn, target.record, "with_metrics")
    return wrapped
