"""Retries with exponential backoff and jitter, for all four callable kinds.

The loop is tenacity's; this module gives it the policy's strategies. This layer owns the
retry policy: litellm and the openai SDK under it would retry each request themselves
(``max_retries=2`` by default), so every attempt is sent with those retries switched off,
and N attempts are exactly N requests on the wire.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, wait_exponential

from fixedmodel.middleware._attempts import attempt as observed_attempt
from fixedmodel.middleware._call import (
    CallInfo,
    ModelCallable,
    Wrapper,
    check_callable,
    check_type,
    is_async_callable,
    join_call,
    leave_call,
    request_kind,
)
from fixedmodel.middleware._errors import is_retryable, retry_after
from fixedmodel.middleware._give_up import give_up

if TYPE_CHECKING:
    from fixedmodel._protocols import ModelFn

__all__ = ["RetryPolicy", "with_retries"]

# How this layer sleeps between attempts. Looked up on every call, so that tests can put a
# recording fake clock in their place.
_async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
_sync_sleep: Callable[[float], None] = time.sleep

_RETRYABLE = retry_if_exception(is_retryable)
_Loop = TypeVar("_Loop", Retrying, AsyncRetrying)


def _check_attempts(value: object) -> None:
    allowed = "an int >= 1 (1 means no retries)"
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"RetryPolicy.max_attempts must be {allowed}, got {type(value).__name__}"
        raise TypeError(msg)
    if value < 1:
        msg = f"RetryPolicy.max_attempts must be {allowed}, got {value}"
        raise ValueError(msg)


def _check_number(name: str, value: object, allowed: str, within: Callable[[float], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"RetryPolicy.{name} must be {allowed}, got {type(value).__name__}"
        raise TypeError(msg)
    if not (math.isfinite(value) and within(float(value))):
        msg = f"RetryPolicy.{name} must be {allowed}, got {value!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class RetryPolicy:
    """How :func:`with_retries` tries a failed call again; the defaults suit most users.

    The n-th wait is ``initial_wait * multiplier ** (n - 1)``, at most ``max_wait``, then
    shortened by a random part of up to ``jitter`` of itself. A ``Retry-After`` (or
    ``retry-after-ms``) from the provider lengthens the wait to at least that.

    Attributes:
        max_attempts: Requests made at most for one call, the first one included (an int
            >= 1; 1 means no retries).
        initial_wait: Seconds to wait after the first failure, before jitter (>= 0).
        max_wait: Longest computed backoff, in seconds (>= initial_wait).
        multiplier: Growth of the backoff from one wait to the next (>= 1).
        jitter: Fraction of each backoff that is random, in [0, 1]: the wait is drawn
            uniformly from ``[backoff * (1 - jitter), backoff]``, so that clients that failed
            together do not come back together. 0 makes the waits exact.
        deadline: Seconds from the start of the first attempt within which a retry must
            start, or None for no limit (> 0). A running attempt is not cut short: bound it
            with the call's own ``timeout=``.
        max_retry_after: Longest ``Retry-After`` that is honoured, in seconds (>= 0). When
            the provider asks for a longer pause, the retries stop and its error is raised.
    """

    max_attempts: int = 4
    initial_wait: float = 1.0
    max_wait: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    deadline: float | None = None
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        _check_attempts(self.max_attempts)
        _check_number("initial_wait", self.initial_wait, "seconds >= 0", lambda v: v >= 0)
        _check_number(
            "max_wait",
            self.max_wait,
            f"seconds >= initial_wait ({self.initial_wait!r})",
            lambda v: v >= self.initial_wait,
        )
        _check_number("multiplier", self.multiplier, "a number >= 1", lambda v: v >= 1)
        _check_number("jitter", self.jitter, "a fraction in [0, 1]", lambda v: 0 <= v <= 1)
        if self.deadline is not None:
            _check_number("deadline", self.deadline, "None or seconds > 0", lambda v: v > 0)
        _check_number("max_retry_after", self.max_retry_after, "seconds >= 0", lambda v: v >= 0)


_DEFAULT_POLICY = RetryPolicy()


def _plural(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


class _Attempts:
    """The retry state of one call: tenacity's ``before``, ``wait`` and ``stop`` strategies.

    tenacity asks for the wait and for the stop decision after each retryable failure, in an
    order that differs between its versions. Both answers come from one plan per failure, so
    the jitter is drawn once and the deadline is judged on the wait that is really slept.
    """

    def __init__(self, policy: RetryPolicy, info: CallInfo, started: float) -> None:
        self._policy = policy
        self._info = info
        self._backoff = wait_exponential(
            multiplier=policy.initial_wait, max=policy.max_wait, exp_base=policy.multiplier
        )
        self._plan_for: tuple[int, float] | None = None
        self._started = started
        self.count = 0
        self.gave_up: str | None = None

    def before(self, state: RetryCallState) -> None:
        self.count += 1
        if self.count > 1:  # The first attempt, replayed, was counted when it was made.
            self._info.attempts += 1

    def wait(self, state: RetryCallState) -> float:
        return self._plan(state)

    def stop(self, state: RetryCallState) -> bool:
        self._plan(state)
        return self.gave_up is not None

    def _plan(self, state: RetryCallState) -> float:
        attempt = state.attempt_number
        if self._plan_for is not None and self._plan_for[0] == attempt:
            return self._plan_for[1]
        policy = self._policy
        wait = self._backoff(state) * (1.0 - policy.jitter * random.random())
        error = state.outcome.exception() if state.outcome is not None else None
        advice = retry_after(error) if error is not None else None
        judge = give_up.get()  # A load balancer above: told of every failure, may end them.
        reason = judge(error) if judge is not None and error is not None else None
        if attempt >= policy.max_attempts:
            self.gave_up = f"max_attempts={policy.max_attempts} reached"
        elif reason is not None:
            self.gave_up = reason
        elif advice is not None and advice > policy.max_retry_after:
            self.gave_up = (
                f"the provider asked to wait {advice:g} s, "
                f"more than max_retry_after={policy.max_retry_after:g} s"
            )
        else:
            wait = max(wait, advice or 0.0)
            elapsed = time.monotonic() - self._started
            if policy.deadline is not None and elapsed + wait > policy.deadline:
                self.gave_up = (
                    f"a retry after {wait:.2f} s would start past deadline={policy.deadline:g} s"
                )
        self._plan_for = (attempt, wait)
        return wait

    def annotate(self, error: BaseException) -> None:
        """Note on ``error`` how many attempts were made (counts and classes only: no secrets)."""
        elapsed = time.monotonic() - self._started
        done = f"{_plural(self.count)} in {elapsed:.2f} s"
        if self.gave_up is not None:
            _add_note(error, f"fixedmodel.with_retries: gave up after {done}: {self.gave_up}")
        elif self.count > 1:
            _add_note(error, f"fixedmodel.with_retries: not retryable, raised after {done}")

    def retrying(self, loop: type[_Loop], sleep: Callable[[float], Any]) -> _Loop:
        """tenacity's loop (``Retrying`` or ``AsyncRetrying``) driven by this state."""
        return loop(
            sleep=sleep,
            stop=self.stop,
            wait=self.wait,
            retry=_RETRYABLE,
            before=self.before,
            reraise=True,  # The original litellm exception, not tenacity.RetryError.
        )


def _add_note(error: BaseException, note: str) -> None:
    if sys.version_info >= (3, 11):
        error.add_note(note)
    else:  # No add_note() before 3.11: set PEP 678's __notes__ (3.10 tracebacks do not print it)
        notes: list[str] = [*getattr(error, "__notes__", ()), note]
        setattr(error, "__notes__", notes)  # noqa: B010 - not declared on 3.10's BaseException


class _NoRetries(int):
    """An int equal to 0 that is true: see :func:`_without_inner_retries`."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return True


def _without_inner_retries(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Add the keywords that keep litellm and the openai SDK from retrying under this layer.

    ``max_retries=0`` stops the openai SDK's loop. ``num_retries=0`` stops litellm's own
    completion retries and keeps it from turning ``num_retries`` into the SDK's
    ``max_retries``. A ``max_retries`` or ``num_retries`` the call passes itself is kept; a
    bound default is overridden.

    The global ``litellm.num_retries``: litellm's sync ``completion`` reads
    ``kwargs.get("num_retries") or litellm.num_retries`` when a request fails (``client`` in
    ``litellm/utils.py``, 1.100.0 to 1.110.2), so the ``0`` given here is replaced by the
    global and one failure costs ``1 + litellm.num_retries`` requests. A ``retry_policy`` takes
    precedence there: one that grants 0 retries for every error class (or none for the
    classes it does not list, 1.100.0) turns litellm's retries off whatever the global says.
    The async path reads ``num_retries`` with ``is None``, so the ``0`` already holds there.

    Embeddings (litellm 1.110.2): ``OpenAIChatCompletion.embedding`` in
    ``litellm/llms/openai/openai.py`` computes ``max_retries or litellm.DEFAULT_MAX_RETRIES``,
    so 0 becomes 2 and one 429 still costs up to three requests (BerriAI/litellm#7003 saw it
    for Azure). That path reads no ``num_retries`` nor ``litellm.num_retries``, and
    ``DEFAULT_MAX_RETRIES`` is global. An int equal to 0 that is true passes the ``or`` and
    reaches the SDK as ``max_retries=0``.
    """
    # Any: the keywords go to litellm unchanged; the Protocols type them at the call site.
    if request_kind(kwargs) == "embedding":
        if "max_retries" in kwargs or "num_retries" in kwargs:
            return kwargs
        return {**kwargs, "max_retries": _NoRetries(0)}
    given = "max_retries" in kwargs or "num_retries" in kwargs
    arguments = dict(kwargs) if given else {**kwargs, "max_retries": 0, "num_retries": 0}
    if not arguments.get("num_retries") and arguments.get("retry_policy") is None:
        # A litellm retry_policy that grants 0 retries to every error class it names.
        arguments["retry_policy"] = dict.fromkeys(_retry_policy_fields(), 0)
    return arguments


@functools.cache
def _retry_policy_fields() -> tuple[str, ...]:
    """The installed litellm's ``RetryPolicy`` fields (1.110.2 added ``DefaultRetries`` and
    others): an unknown field name would fail its validation. Imported once, not on every
    call: this runs on every routed and retried call."""
    from litellm.types.router import RetryPolicy

    return tuple(RetryPolicy.model_fields)


class _Retries(Wrapper):
    """Shared state of the sync and async retrying wrappers."""

    __slots__ = ("_call", "_policy")

    def __init__(self, inner: ModelCallable, policy: RetryPolicy) -> None:
        super().__init__(inner)
        # Any: the inner call returns litellm's objects; the Protocols type the results.
        self._call: Callable[..., Any] = inner
        self._policy = policy

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy of this wrapper."""
        return self._policy

    def __repr__(self) -> str:
        return f"with_retries({self._inner!r}, {self._policy!r})"


class _AsyncRetries(_Retries):
    __slots__ = ()

    async def __call__(self, **kwargs: Any) -> Any:
        info, opened = join_call()
        try:
            return await self._attempt(_without_inner_retries(kwargs), info)
        finally:
            leave_call(opened)

    async def _attempt(self, arguments: dict[str, Any], info: CallInfo) -> Any:
        # The first attempt runs outside tenacity: most calls succeed at once, and entering
        # tenacity's loop cost more than every other layer of the stack together. A failure
        # is handed to the loop as its first attempt, which raises it again without a request.
        started = time.monotonic()
        try:
            with observed_attempt("retry", self._call, number=1):
                return await self._call(**arguments)
        except Exception as error:
            failed = error  # Retried below, outside this handler: no chained "during handling".
        finally:  # Answered, failed, cancelled or interrupted: the attempt was made.
            info.attempts += 1
        return await self._retry(arguments, info, started, failed)

    async def _retry(
        self, arguments: dict[str, Any], info: CallInfo, started: float, first: Exception
    ) -> Any:
        attempts = _Attempts(self._policy, info, started)
        failed: Exception | None = first

        async def attempt() -> Any:
            nonlocal failed
            if failed is not None:
                error, failed = failed, None
                raise error
            with observed_attempt("retry", self._call, number=attempts.count):
                return await self._call(**arguments)

        try:
            return await attempts.retrying(AsyncRetrying, _async_sleep)(attempt)
        except Exception as error:
            attempts.annotate(error)
            raise


class _SyncRetries(_Retries):
    __slots__ = ()

    def __call__(self, **kwargs: Any) -> Any:
        info, opened = join_call()
        try:
            return self._attempt(_without_inner_retries(kwargs), info)
        finally:
            leave_call(opened)

    def _attempt(self, arguments: dict[str, Any], info: CallInfo) -> Any:
        # As in _AsyncRetries._attempt: the first attempt runs outside tenacity.
        started = time.monotonic()
        try:
            with observed_attempt("retry", self._call, number=1):
                return self._call(**arguments)
        except Exception as error:
            failed = error  # Retried below, outside this handler: no chained "during handling".
        finally:  # Answered, failed, cancelled or interrupted: the attempt was made.
            info.attempts += 1
        return self._retry(arguments, info, started, failed)

    def _retry(
        self, arguments: dict[str, Any], info: CallInfo, started: float, first: Exception
    ) -> Any:
        attempts = _Attempts(self._policy, info, started)
        failed: Exception | None = first

        def attempt() -> Any:
            nonlocal failed
            if failed is not None:
                error, failed = failed, None
                raise error
            with observed_attempt("retry", self._call, number=attempts.count):
                return self._call(**arguments)

        try:
            return attempts.retrying(Retrying, _sync_sleep)(attempt)
        except Exception as error:
            attempts.annotate(error)
            raise


def with_retries(fn: ModelFn, policy: RetryPolicy = _DEFAULT_POLICY) -> ModelFn:
    """Wrap ``fn`` so that failures that can succeed on retry are tried again.

    Retried: rate limits (429), 5xx answers, timeouts and connection errors. Raised at once:
    bad requests, authentication and permission errors, missing models, context-window and
    content-policy errors, the 5xx that say this server cannot serve the request (501, 505,
    506, 508, 510, 511: RFC 9110 §15.6, RFC 2295, 5842, 2774, 6585); an account out of
    credit or quota (OpenAI's 429 ``insufficient_quota``, HTTP 402, a Gemini per-day
    ``RESOURCE_EXHAUSTED``), and a failure
    raised in this process before any request was sent (a missing API key, a lone surrogate
    in a message, credentials in ``api_base``), whatever class litellm gives it; see
    docs/middleware/retries.md. A stream is retried only until litellm has returned it; a failure
    while iterating it is the caller's. Each attempt is counted in the call's record, which
    ``with_logging`` and ``with_metrics`` report as ``attempts``.

    Args:
        fn: Any of the four callable kinds, e.g. from ``bind_acompletion``.
        policy: Attempts, backoff, jitter, deadline and the ``Retry-After`` cap.

    Returns:
        A callable of the same kind as ``fn``. When it gives up, it raises the last litellm
        exception itself, with a note of the attempts made.

    Raises:
        TypeError: ``fn`` is not callable, or ``policy`` is not a :class:`RetryPolicy`.
    """
    check_callable(fn, "with_retries")
    example = "with_retries(chat, RetryPolicy(max_attempts=5))"
    check_type(policy, RetryPolicy, "with_retries() takes its policy as a", example)
    layer = _AsyncRetries(fn, policy) if is_async_callable(fn) else _SyncRetries(fn, policy)
    return cast("ModelFn", layer.made_by(with_retries, fn, policy))
