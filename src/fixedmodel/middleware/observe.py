"""Logging and metrics: one record per call, built from what the inner layers found out.

Both wrappers time the call, read token usage and litellm's cost from the response, and
take attempts, cache hits and limiter waits from the shared :class:`CallInfo`. Nothing from
the request is recorded except the model name, so secrets cannot leak through here.

For a stream the record is made when the stream ends (read to its end, failed, closed
early, or dropped unread and collected), not when litellm hands it back: its tokens are the
usage the stream reported in its last chunk (OpenAI sends one with
``stream_options={"include_usage": True}``), its latency runs to the end of the stream, and
``time_to_first_chunk`` tells when the first chunk arrived. A stream that reported no usage
is recorded with 0 tokens and ``usage_reported=False``: unknown, not zero.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeAlias, cast, runtime_checkable

from fixedmodel._faults import observer_fault
from fixedmodel._litellm import litellm_module
from fixedmodel._pickling import refuse_pickling
from fixedmodel._protocols import ModelFn
from fixedmodel._pydantic import read_attribute
from fixedmodel._streams import StreamEnd, StreamUsage, watch_stream
from fixedmodel.middleware._call import (
    CallInfo,
    ModelCallable,
    RequestKind,
    Wrapper,
    check_callable,
    is_async_callable,
    is_stream_request,
    join_call,
    leave_call,
    request_kind,
    request_reader,
    requests_made,
)

if TYPE_CHECKING:
    from contextvars import Token

    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

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
        error: Class name of the exception the call raised (for a stream, the exception
            reading it raised), or ``None``.
        usage_reported: The provider reported the token counts (False: they are unknown
            and recorded as 0, e.g. a stream without ``include_usage``).
        time_to_first_chunk: For a stream, seconds from the call to its first chunk
            (``None`` when no chunk was read, and for other calls).
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
    usage_reported: bool
    time_to_first_chunk: float | None
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
        usage_reported: bool = True,
        time_to_first_chunk: float | None = None,
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
                "usage_reported": usage_reported,
                "time_to_first_chunk": time_to_first_chunk,
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
        _aggregators.add(self)
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._calls = self._errors = self._prompt = self._completion = 0
        self._hits = self._retries = 0
        self._cost = 0.0

    def __reduce__(self) -> NoReturn:
        refuse_pickling(
            "InMemoryMetrics",
            "with_metrics(fn) (each process aggregates into its own default_metrics()), or "
            "with_tracing() and an OpenTelemetry metrics exporter",
        )

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


# Every aggregator, so that a forked child gets fresh locks: a lock another thread held at
# the fork would never be released in the child.
_aggregators: weakref.WeakSet[InMemoryMetrics] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for aggregator in list(_aggregators):
        aggregator._lock = threading.Lock()  # pyright: ignore[reportPrivateUsage]


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


_DEFAULT_METRICS = InMemoryMetrics()


def default_metrics() -> InMemoryMetrics:
    """Return the process-wide aggregator that ``with_metrics(fn)`` uses without a sink."""
    return _DEFAULT_METRICS


def _usage_and_cost(result: object) -> _Usage:
    usage = read_attribute(result, "usage")
    prompt: object = getattr(usage, "prompt_tokens", None)  # Declared fields: a plain lookup.
    completion: object = getattr(usage, "completion_tokens", None)
    hidden = read_attribute(result, "_hidden_params")
    cost: object = None
    if isinstance(hidden, dict):
        cost = hidden.get("response_cost")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # litellm dict
    return (
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
        float(cost) if isinstance(cost, (int, float)) else None,
        isinstance(prompt, int) or isinstance(completion, int),
    )


_Usage: TypeAlias = tuple[int, int, float | None, bool]
"""Prompt tokens, completion tokens, cost and whether the provider reported them."""

# A call that spent nothing (a cache hit: the original call paid for the usage it carries),
# and one that told nothing.
_SPENT_NOTHING: _Usage = (0, 0, 0.0, True)
_NO_USAGE: _Usage = (0, 0, None, False)


def _stream_usage(model: str | None, usage: StreamUsage | None) -> _Usage:
    """A stream's reported usage, priced by litellm (cost None when it has no price)."""
    if usage is None:
        return _NO_USAGE
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    cost = None
    if model is not None:
        try:
            # litellm boundary: cost_per_token is untyped.
            prices: Any = litellm_module().cost_per_token(
                model=model, prompt_tokens=prompt, completion_tokens=completion
            )
            cost = float(prices[0]) + float(prices[1])
        except Exception:  # a model litellm has no price for
            cost = None
    return prompt, completion, cost, True


def _record(
    model: str | None,
    kwargs: dict[str, Any],
    started: float,
    info: CallInfo,
    usage: _Usage,
    error: BaseException | None,
    stream: bool,
    first_chunk_at: float | None = None,
) -> CallRecord:
    prompt, completion, cost, reported = usage
    return CallRecord(
        model=model,
        kind=request_kind(kwargs),
        stream=stream,
        latency=time.perf_counter() - started,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost,
        cache_hit=info.cache_hit,
        attempts=requests_made(info),
        rate_limit_wait=info.rate_limit_wait,
        error=None if error is None else type(error).__name__,
        usage_reported=reported,
        time_to_first_chunk=None if first_chunk_at is None else max(first_chunk_at - started, 0.0),
        served_by=info.served_by,
        fallbacks_tried=info.fallbacks_tried,
        deployments_tried=info.deployments_tried,
        route_failures=info.route_failures,
    )


def _is_stream(result: object) -> bool:
    stream_class: object = getattr(litellm_module(), "CustomStreamWrapper", None)
    return isinstance(stream_class, type) and isinstance(result, stream_class)


class _Observed(Wrapper):
    """Runs the inner call in a call scope and hands the finished record to ``emit``."""

    __slots__ = ("_call", "_emit", "_model", "_read", "_role", "_wants")

    def __init__(
        self,
        inner: Callable[..., Any],
        emit: Callable[[CallRecord], None],
        wants: Callable[[bool], bool],
        role: str,
    ) -> None:
        super().__init__(inner)
        self._role = role  # "with_logging" or "with_metrics", for the log of a fault
        self._call = inner  # Any: the inner callable returns litellm's untyped result
        self._emit = emit
        self._wants = wants  # asked with "did the call fail?" before a record is built
        self._model = self.model  # The stack below never changes: look it up once.
        self._read = request_reader(inner)

    def _ended(
        self,
        kwargs: dict[str, Any],
        started: float,
        info: CallInfo,
        opened: Token[CallInfo | None] | None,
        result: object,
        error: BaseException | None,
    ) -> None:
        """Leave the call's record, then record the call (a stream: when it ends)."""
        leave_call(opened)
        try:
            if error is None and _is_stream(result):
                # Recorded when the stream ends, with the usage it reported.
                watched = cast("CustomStreamWrapper", result)  # checked by _is_stream
                watch_stream(watched, lambda end: self._stream_ended(kwargs, started, info, end))
            elif self._wants(error is not None):
                if info.cache_hit:
                    usage = _SPENT_NOTHING
                else:
                    usage = _NO_USAGE if error is not None else _usage_and_cost(result)
                # The request litellm received says whether a failed call was a stream.
                stream = error is not None and is_stream_request(self._read(kwargs))
                self._emit(_record(self._model, kwargs, started, info, usage, error, stream))
        except Exception as fault:  # an observer must never fail the call it observes
            observer_fault(f"{self._role}: recording a call", fault)

    def _stream_ended(
        self, kwargs: dict[str, Any], started: float, info: CallInfo, end: StreamEnd
    ) -> None:
        try:
            if self._wants(end.error is not None):
                usage = _SPENT_NOTHING if info.cache_hit else _stream_usage(self._model, end.usage)
                first, error = end.first_chunk_at, end.error
                self._emit(_record(self._model, kwargs, started, info, usage, error, True, first))
        except Exception as fault:  # an observer must never fail the stream it observes
            observer_fault(f"{self._role}: recording a stream", fault)


class _AsyncObserved(_Observed):
    __slots__ = ()

    async def __call__(self, **kwargs: Any) -> Any:  # Any: litellm's untyped result
        started = time.perf_counter()
        info, opened = join_call()  # An outer observer may have opened the call's record.
        try:
            result = await self._call(**kwargs)
        except BaseException as exc:
            self._ended(kwargs, started, info, opened, None, exc)
            raise
        self._ended(kwargs, started, info, opened, result, None)
        return result


class _SyncObserved(_Observed):
    __slots__ = ()

    def __call__(self, **kwargs: Any) -> Any:  # Any: litellm's untyped result
        started = time.perf_counter()
        info, opened = join_call()  # An outer observer may have opened the call's record.
        try:
            result = self._call(**kwargs)
        except BaseException as exc:
            self._ended(kwargs, started, info, opened, None, exc)
            raise
        self._ended(kwargs, started, info, opened, result, None)
        return result


def _always(failed: bool) -> bool:
    return True


def _observe(
    fn: ModelCallable,
    emit: Callable[[CallRecord], None],
    wrapper: str,
    wants: Callable[[bool], bool] = _always,
) -> _AsyncObserved | _SyncObserved:
    check_callable(fn, wrapper)
    return (_AsyncObserved if is_async_callable(fn) else _SyncObserved)(fn, emit, wants, wrapper)


_LOG_MESSAGE = (
    "llm %s model=%s latency_ms=%.1f prompt_tokens=%s completion_tokens=%s "
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
                call.prompt_tokens if call.usage_reported else "unknown",
                call.completion_tokens if call.usage_reported else "unknown",
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


def with_logging(
    fn: ModelFn, *, logger: logging.Logger | None = None, level: int = logging.INFO
) -> ModelFn:
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

    wrapped = _observe(fn, _log_emitter(target, level), "with_logging", wants)
    return cast("ModelFn", wrapped.made_by(with_logging, fn, logger=logger, level=level))


def with_metrics(fn: ModelFn, sink: MetricsSink | None = None) -> ModelFn:
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
    wrapped = _observe(fn, target.record, "with_metrics")
    # In another process, sink=None means that process's own default aggregator.
    return cast("ModelFn", wrapped.made_by(with_metrics, fn, sink))
