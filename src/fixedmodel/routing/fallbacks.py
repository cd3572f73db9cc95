"""Fallbacks: when one callable fails in a way another may not, the next serves the request.

``with_fallbacks(primary, cheaper, other_provider)`` calls ``primary``; when it raises an
error its :class:`FallbackPolicy` deems fallback-worthy (by class and HTTP status, the rule
load balancing shares), the same request goes to ``cheaper``, then to ``other_provider``.
The first answer is returned. When every callable fails, the last error is raised, with a
note per earlier failure, and :func:`fallback_causes` returns all of them.

Callables are passed over without a request when their provider asked for time
(``Retry-After``: until then, at most ``FallbackPolicy.max_retry_after``) or, for a
fallback, when litellm knows its context window and the request does not fit. A callable
appears once in a chain.

A stream falls back while its provider fails before its first chunk with content reaches
the caller: when litellm opens it (HTTP errors such as 429, 5xx, 401, and connection
failures arrive then) and while it is read up to that chunk (the role-only chunk that opens
OpenAI-compatible streams is not content). Unless it is the last callable, the layer reads
those chunks itself before returning the stream, and hands them back first (the stream
stays litellm's own object). A failure after that is the caller's: text may already have
been shown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass
from typing import Any, cast

from fixedmodel._litellm import litellm_module
from fixedmodel._protocols import ModelFn
from fixedmodel.middleware._attempts import attempt
from fixedmodel.middleware._call import (
    ModelCallable,
    Wrapper,
    check_type,
    join_call,
    leave_call,
)
from fixedmodel.middleware._errors import (
    is_denied,
    is_not_found,
    is_route_failure,
    retry_after,
    status_of,
)
from fixedmodel.routing._chain import has_next_in_chain
from fixedmodel.routing._first_chunk import afirst_chunk, first_chunk, is_stream
from fixedmodel.routing._route import (
    LOGGER,
    add_note,
    check_once,
    check_one_kind,
    forward,
    name_of,
    note_failure,
    note_served,
    note_skipped,
)
from fixedmodel.routing._windows import Fit

__all__ = ["FallbackPolicy", "fallback_causes", "is_fallback_worthy", "with_fallbacks"]

_CAUSES = "_fixedmodel_fallback_causes"

# The clock of retry advice, looked up on every call so that tests can drive it.
_clock: Callable[[], float] = time.monotonic


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        msg = f"FallbackPolicy.{name} must be True or False, got {type(value).__name__}"
        raise TypeError(msg)


@dataclass(frozen=True)
class FallbackPolicy:
    """Which failures send a request on to the next callable; the defaults suit most users.

    Always fallback-worthy: rate limits (429, after any retries inside), 5xx answers,
    timeouts and connection errors (what ``with_retries`` retries), and a budget refusal
    (``litellm.BudgetExceededError`` from a ``with_budget`` under one callable: the next may
    have its own budget). Never: other bad requests (400, 422), which would fail the same
    way everywhere, and errors raised by fixedmodel or your code before any request
    (``TypeError``, ``ValueError``).

    Attributes:
        context_window: Fall back on ``ContextWindowExceededError``: a fallback with a
            larger context can take the prompt. On by default.
        authentication: Fall back on 401/403 (``AuthenticationError``,
            ``PermissionDeniedError``) and 404 (``NotFoundError``: a model withdrawn from
            one provider). On by default: for the caller, a revoked key or a withdrawn model
            is an outage of that route, and the next provider can answer. Each such fallback
            is logged at WARNING on the ``fixedmodel.routing`` logger, so that a
            misconfigured key does not go unnoticed.
        content_policy: Fall back on ``ContentPolicyViolationError``. Off by default: it
            would send a prompt one provider refused on policy grounds to another company,
            silently working around the moderation the user may rely on. Turn it on
            deliberately (litellm Router calls this ``content_policy_fallbacks``).
        when: Instead of the rules above, your own predicate: ``when(error)`` returns
            whether to fall back. :func:`is_fallback_worthy` gives the default answer.
        max_retry_after: Longest time, in seconds, a provider's ``Retry-After`` (or
            ``retry-after-ms``) keeps its callable out of the chain (300 s, as load
            balancing's ``CooldownPolicy``).

    Raises:
        TypeError: A flag is not a bool, or ``when`` is not callable.
        ValueError: ``max_retry_after`` is negative or not a number.
    """

    context_window: bool = True
    authentication: bool = True
    content_policy: bool = False
    when: Callable[[BaseException], bool] | None = None
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        _check_flag("context_window", self.context_window)
        _check_flag("authentication", self.authentication)
        _check_flag("content_policy", self.content_policy)
        limit = cast("object", self.max_retry_after)  # checked: callers without a checker
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit >= 0:
            msg = f"FallbackPolicy.max_retry_after must be seconds >= 0, got {limit!r}"
            raise ValueError(msg)
        if self.when is not None and not callable(self.when):
            msg = f"FallbackPolicy.when must be a function of the error, got {self.when!r}"
            raise TypeError(msg)

    def should_fall_back(self, error: BaseException) -> bool:
        """Tell whether ``error`` from one callable should send the request to the next."""
        if self.when is not None:
            return bool(self.when(error))
        return is_fallback_worthy(error, self)


_DEFAULT_POLICY = FallbackPolicy()


def is_fallback_worthy(error: BaseException, policy: FallbackPolicy = _DEFAULT_POLICY) -> bool:
    """The default rule of :class:`FallbackPolicy` (its flags, without ``when``).

    Decided by class and by HTTP status (``status_code``), the way load balancing decides
    which failures cool a deployment down (``fixedmodel.middleware._errors``): a plain
    ``litellm.APIError`` with ``status_code=403``, as litellm raises for some
    OpenAI-compatible servers, is a permission failure like ``PermissionDeniedError``.
    """
    litellm = litellm_module()
    # Subclasses of BadRequestError first: they are not retryable, but another model may
    # take them.
    if isinstance(error, litellm.ContextWindowExceededError):
        return policy.context_window
    if isinstance(error, litellm.ContentPolicyViolationError):
        return policy.content_policy
    if is_denied(error) or is_not_found(error):
        return policy.authentication
    if isinstance(error, litellm.BudgetExceededError):
        return True
    # 429, 408, 409, 5xx, timeouts, connection failures, an account out of quota.
    return is_route_failure(error)


def fallback_causes(error: BaseException) -> tuple[BaseException, ...]:
    """Every failure of a call that ``with_fallbacks`` gave up on, in order, ``error`` last.

    For any other exception, ``(error,)``.
    """
    causes: object = getattr(error, _CAUSES, None)
    if isinstance(causes, tuple):
        found: tuple[BaseException, ...] = causes  # pyright: ignore[reportUnknownVariableType]
        return found
    return (error,)


def _error_with_headers(kind: str, message: str, model: str, retry_in: float | None) -> Exception:
    """A litellm exception raised by this layer itself (no provider answered)."""
    import httpx

    litellm = litellm_module()
    headers = {} if retry_in is None else {"retry-after-ms": str(max(1, round(retry_in * 1000)))}
    status = 429 if kind == "RateLimitError" else 400
    response = httpx.Response(
        status,
        headers=headers,
        request=httpx.Request("POST", "http://fixedmodel.invalid/fallbacks"),
    )
    cls: Any = getattr(litellm, kind)
    error: Exception = cls(message, model=model, llm_provider="fixedmodel", response=response)
    return error


class _Call:
    """One call through the chain: the request, where it is, what it found out.

    ``with`` joins the call's record (or opens it). Leaving notes the callable that answered
    (when the call returns), and gives back the chain flag each attempt sets and the record.
    """

    __slots__ = (
        "arguments",
        "chain",
        "failures",
        "flag",
        "further",
        "index",
        "info",
        "name",
        "now",
        "opened",
        "outer_has_next",
        "skips",
        "start",
    )

    def __init__(self, chain: _Fallbacks, arguments: dict[str, Any]) -> None:
        self.chain = chain
        self.arguments = arguments
        self.now = _clock()  # When the call began; a failure moves it on (_failed).
        self.outer_has_next = has_next_in_chain.get()
        self.flag: Token[object] | None = None
        self.index = 0  # The callable tried.
        self.start = 0  # Where the search for the next callable to try begins.
        self.further = False  # Whether a callable after the one tried may still be tried.
        self.name = ""  # The name of the callable tried.
        self.failures: list[tuple[str, BaseException]] = []
        # (index, reason, detail) of every callable passed over without a request.
        self.skips: list[tuple[int, str, str]] = []

    def __enter__(self) -> _Call:
        self.info, self.opened = join_call()
        return self

    def __bool__(self) -> bool:
        """The chain flag: whether a callable after the one tried can take the request now
        (not waiting out retry advice, and its context window takes it), or one after this
        chain in a chain around it. Worked out when a layer below reads it. False once the
        chain's call has ended: no callable of it follows any more."""
        if self.arguments is _ENDED:
            return False
        return self.chain._can_follow(self) or bool(self.outer_has_next)  # pyright: ignore[reportPrivateUsage]

    def __exit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        if kind is None:
            note_served(self.info, self.name)
        if self.flag is not None:
            has_next_in_chain.reset(self.flag)
            # A task or thread started during the call keeps a copy of the context, and so
            # this object, as long as it lives (litellm's logging worker: the whole process):
            # let go of the request and the failures (their tracebacks' frames) it holds.
            self.arguments = _ENDED
            self.failures = []
        leave_call(self.opened)


_ENDED: dict[str, Any] = {}
"""``_Call.arguments`` once the call has ended (see ``_Call.__exit__``)."""


class _Fallbacks(Wrapper):
    """What the sync and async fallback wrappers share: every decision lives here."""

    __slots__ = ("_calls", "_fits", "_lock", "_names", "_policy", "_until")

    def __init__(self, functions: tuple[ModelCallable, ...], policy: FallbackPolicy) -> None:
        super().__init__(functions[0])
        # Any: the four kinds return litellm's objects; the Protocols type the results.
        self._calls: tuple[Callable[..., Any], ...] = functions
        self._names = tuple(name_of(f, i) for i, f in enumerate(functions))
        self._policy = policy
        # Per callable: whether a request fits its model's context window.
        self._fits = tuple(Fit(f) for f in functions)
        # Per callable: until when (on _clock) its provider asked not to be called again.
        self._until = [0.0] * len(functions)
        self._lock = threading.Lock()

    @property
    def policy(self) -> FallbackPolicy:
        """The policy that decides which failures fall back."""
        return self._policy

    @property
    def callables(self) -> tuple[ModelCallable, ...]:
        """The primary, then the fallbacks, in the order they are tried."""
        calls: tuple[Any, ...] = self._calls
        return calls

    def _next(self, call: _Call) -> int | None:
        """The next callable to try, noting each one passed over and each fallback tried, and
        telling the layers below (the chain flag) whether another may follow it."""
        until = self._until
        for index in range(call.start, len(self._calls)):
            if until[index] > call.now:  # Its provider asked not to be called yet.
                left = until[index] - call.now
                self._skip(call, index, "retry_after", f"asked to wait {left:.3f} s more")
                continue
            if index > 0:
                detail = self._fits[index].misfit(call.arguments)
                if detail is not None:
                    self._skip(call, index, "context_window", detail)
                    continue
            # Whether a callable after this one may still be tried (advice known now); a
            # loop, not any() over a generator: this runs on every call.
            further = False
            for later in range(index + 1, len(self._calls)):
                if until[later] <= call.now:
                    further = True
                    break
            call.further = further
            call.index = index
            if call.flag is None:  # Set once; leaving the call resets the flag through it.
                call.flag = has_next_in_chain.set(call)
            if call.start:  # After a failure: a fallback.
                call.info.fallbacks_tried += 1
            call.name = self._names[index]
            return index
        return None

    def _skip(self, call: _Call, index: int, reason: str, detail: str) -> None:
        call.skips.append((index, reason, detail))
        note_skipped(call.info, self._names[index], reason)
        LOGGER.info("with_fallbacks: skipping %s: %s", self._names[index], detail)

    def _can_follow(self, call: _Call) -> bool:
        """Whether a callable after the one ``call`` tries can take its request now: not
        waiting out retry advice, and not too small for it (measured only when asked).

        "Now" is when the flag is read, not when the call began: a balancer reading it
        while it waits out its cooldowns sees a fallback's retry advice run out."""
        until, now = self._until, _clock()
        return any(
            until[i] <= now and self._fits[i].misfit(call.arguments) is None
            for i in range(call.index + 1, len(self._calls))
        )

    def _failed(self, call: _Call, index: int, error: Exception) -> bool:
        """Record a failure; tell whether to go on to the next callable (else give up)."""
        name = self._names[index]
        note_failure(call.info, name, error)
        call.failures.append((name, error))
        # The time now, not when the call began: the failed attempt may have taken long (a
        # balancer waiting out its cooldowns), and the search for the next callable below
        # must not skip one whose retry advice ran out meanwhile. Read only after a failure,
        # so that a successful call reads the clock once.
        call.now = now = _clock()
        advice = retry_after(error)
        if advice is not None and advice > 0:
            until = now + min(advice, self._policy.max_retry_after)
            with self._lock:  # Only ever later: a shorter advice does not shorten a longer one.
                self._until[index] = max(self._until[index], until)
        if index + 1 >= len(self._calls) or not self._policy.should_fall_back(error):
            self._give_up(call)
            return False
        level = 30 if is_denied(error) or is_not_found(error) else 20  # a key or model problem
        LOGGER.log(level, "with_fallbacks: %s failed (%s)", name, type(error).__name__)
        call.start = index + 1
        return True

    def _exhausted(self, call: _Call) -> BaseException:
        """The error to raise when no callable is left to try."""
        described = "; ".join(f"{self._names[i]}: {detail}" for i, _, detail in call.skips)
        model = self.model or ""
        if not call.failures:  # The primary asked to be left alone for now.
            # The soonest end of retry advice: a callable skipped for its context window
            # has none, and waiting does not make the request fit it.
            advised = [self._until[i] for i, reason, _ in call.skips if reason == "retry_after"]
            retry_in = min(advised) - call.now
            message = (
                "fixedmodel.with_fallbacks: no callable can be called now: each asked not "
                f"to be called yet or cannot take the request ({described}); the first can "
                f"be called again in {retry_in:.3f} s"
            )
            return _error_with_headers("RateLimitError", message, model, max(retry_in, 0.0))
        only_context = all(reason == "context_window" for _, reason, _ in call.skips)
        if len(call.failures) == 1 and only_context:
            name, cause = call.failures[0]
            message = (
                f"fixedmodel.with_fallbacks: {name} failed with {type(cause).__name__} and no "
                f"fallback can take the request ({described})"
            )
            error = _error_with_headers("ContextWindowExceededError", message, model, None)
            error.__cause__ = cause
            setattr(error, _CAUSES, (*fallback_causes(cause), error))
            return error
        self._give_up(call)
        return call.failures[-1][1]

    def _give_up(self, call: _Call) -> None:
        """Make the last failure, the one raised, carry the earlier ones and the skips."""
        failures = call.failures
        last = failures[-1][1]
        for name, error in failures[:-1]:
            status = status_of(error)
            shown = "" if status is None else f" (HTTP {status})"
            add_note(
                last,
                f"fixedmodel.with_fallbacks: {name} failed with {type(error).__name__}{shown}",
            )
        for index, _, detail in call.skips:
            add_note(last, f"fixedmodel.with_fallbacks: {self._names[index]} skipped: {detail}")
        if len(failures) > 1:
            add_note(
                last,
                f"fixedmodel.with_fallbacks: {len(failures)} callables failed; "
                "fixedmodel.fallback_causes(error) returns every failure",
            )
            # A nested with_fallbacks that gave up brings its own causes: keep them all.
            causes = tuple(cause for _, error in failures for cause in fallback_causes(error))
            setattr(last, _CAUSES, causes)

    def __repr__(self) -> str:
        inner = ", ".join(repr(f) for f in self._calls)
        return f"with_fallbacks({inner}, policy={self._policy!r})"


class _AsyncFallbacks(_Fallbacks):
    __slots__ = ()

    async def __call__(self, **kwargs: Any) -> Any:
        with _Call(self, forward(kwargs)) as call:
            while (index := self._next(call)) is not None:
                try:
                    with attempt("fallback", self._calls[index], call.name):
                        result = await self._calls[index](**call.arguments)
                        if call.further and is_stream(result):
                            await afirst_chunk(result)  # A failure before it still falls back.
                    return result
                except Exception as error:
                    if not self._failed(call, index, error):
                        raise
            raise self._exhausted(call)


class _SyncFallbacks(_Fallbacks):
    __slots__ = ()

    def __call__(self, **kwargs: Any) -> Any:
        with _Call(self, forward(kwargs)) as call:
            while (index := self._next(call)) is not None:
                try:
                    with attempt("fallback", self._calls[index], call.name):
                        result = self._calls[index](**call.arguments)
                        if call.further and is_stream(result):
                            first_chunk(result)  # A failure before it still falls back.
                    return result
                except Exception as error:
                    if not self._failed(call, index, error):
                        raise
            raise self._exhausted(call)


def with_fallbacks(
    primary: ModelFn, *fallbacks: ModelFn, policy: FallbackPolicy = _DEFAULT_POLICY
) -> ModelFn:
    """Serve each call with ``primary``, or with the next callable when one fails.

    Each callable receives the same keywords. A failure the policy deems fallback-worthy
    (see :class:`FallbackPolicy`) sends the request to the next callable at once, with no
    wait; any other failure is raised at once. The call's record (``with_logging``,
    ``with_metrics``) names the callable that answered (``served_by``), counts the fallbacks
    tried and lists the error class of each failure.

    litellm's and the openai SDK's own retries are switched off underneath (as
    ``with_retries`` does), so a failing primary costs one request before the fallback is
    asked; put ``with_retries`` under each callable (or over the whole) to retry first.

    Args:
        primary: Any of the four callable kinds.
        *fallbacks: Callables of the same kind, tried in order.
        policy: Which failures fall back.

    Returns:
        A callable of the same kind. When every callable fails, it raises the last failure
        (a litellm exception, unchanged) with a note per earlier failure and per skipped
        callable; :func:`fallback_causes` returns them all. When every callable is skipped
        for its retry advice, it raises ``litellm.RateLimitError`` at once (no request),
        naming each and with ``retry-after-ms`` set to the soonest end. When the primary
        failed and every fallback was skipped for its context window (prompt tokens plus
        ``max_tokens`` over litellm's ``max_input_tokens``), it raises
        ``litellm.ContextWindowExceededError`` naming each, with the primary's failure as
        ``__cause__``.

    Raises:
        TypeError: A value is not callable, the callables are not all of one kind (sync
            and async, or completion and embedding, mixed), or ``policy`` is not a
            FallbackPolicy.
        ValueError: A callable appears twice in the chain, directly or inside a nested
            ``with_fallbacks`` or ``with_load_balancing`` (the same object; two callables
            bound to one model name are distinct).
    """
    functions: tuple[ModelCallable, ...] = (primary, *fallbacks)
    asynchronous = check_one_kind(functions, "with_fallbacks")
    check_once(functions, "with_fallbacks", "callable", "a chain tries each callable once")
    example = "with_fallbacks(primary, backup, policy=FallbackPolicy(content_policy=True))"
    checked = check_type(policy, FallbackPolicy, "with_fallbacks() takes policy= as a", example)
    kind = _AsyncFallbacks if asynchronous else _SyncFallbacks
    wrapped = kind(functions, checked).made_by(with_fallbacks, *functions, policy=checked)
    return cast("ModelFn", wrapped)
