"""Fallbacks: when one callable fails in a way another may not, the next serves the request.

``with_fallbacks(primary, cheaper, other_provider)`` calls ``primary``; when it raises an
error its :class:`FallbackPolicy` deems fallback-worthy, the same request goes to
``cheaper``, then to ``other_provider``. The first answer is returned. When every callable
fails, the last error is raised, with a note per earlier failure, and
:func:`fallback_causes` returns all of them.

A stream falls back while its provider fails before the first chunk reaches the caller:
when litellm opens it (HTTP errors such as 429, 5xx, 401, and connection failures arrive
then) and while its first chunk is read. Unless it is the last callable, the layer reads that
chunk itself before returning the stream, and hands it back first (the stream stays
litellm's own object). A failure after the first chunk is the caller's: text may already
have been shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

from fixedmodel._litellm import litellm_module
from fixedmodel._protocols import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    ClosableAFixedModelCompletion,
    ClosableAFixedModelEmbedding,
    ClosableFixedModelCompletion,
    ClosableFixedModelEmbedding,
    FixedModelCompletion,
    FixedModelEmbedding,
)
from fixedmodel.middleware._call import (
    CallInfo,
    ModelCallable,
    Wrapper,
    join_call,
    leave_call,
)
from fixedmodel.middleware._errors import is_retryable, is_unsupported_here, never_sent
from fixedmodel.routing._first_chunk import afirst_chunk, first_chunk, is_stream
from fixedmodel.routing._route import (
    LOGGER,
    add_note,
    check_one_kind,
    forward,
    name_of,
    note_failure,
    note_served,
)

__all__ = ["FallbackPolicy", "fallback_causes", "is_fallback_worthy", "with_fallbacks"]

_CAUSES = "_fixedmodel_fallback_causes"


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

    Raises:
        TypeError: A flag is not a bool, or ``when`` is not callable.
    """

    context_window: bool = True
    authentication: bool = True
    content_policy: bool = False
    when: Callable[[BaseException], bool] | None = None

    def __post_init__(self) -> None:
        _check_flag("context_window", self.context_window)
        _check_flag("authentication", self.authentication)
        _check_flag("content_policy", self.content_policy)
        if self.when is not None and not callable(self.when):
            msg = f"FallbackPolicy.when must be a function of the error, got {self.when!r}"
            raise TypeError(msg)

    def should_fall_back(self, error: BaseException) -> bool:
        """Tell whether ``error`` from one callable should send the request to the next."""
        if self.when is not None:
            return bool(self.when(error))
        return is_fallback_worthy(error, self)


_DEFAULT_POLICY = FallbackPolicy()


def _is_auth_failure(error: BaseException) -> bool:
    litellm = litellm_module()
    kinds = (litellm.AuthenticationError, litellm.PermissionDeniedError, litellm.NotFoundError)
    return isinstance(error, kinds)


def is_fallback_worthy(error: BaseException, policy: FallbackPolicy = _DEFAULT_POLICY) -> bool:
    """The default rule of :class:`FallbackPolicy` (its flags, without ``when``)."""
    litellm = litellm_module()
    # Subclasses of BadRequestError first: they are not retryable, but another model may
    # take them.
    if isinstance(error, litellm.ContextWindowExceededError):
        return policy.context_window
    if isinstance(error, litellm.ContentPolicyViolationError):
        return policy.content_policy
    if _is_auth_failure(error):
        return policy.authentication
    if isinstance(error, litellm.BudgetExceededError):
        return True
    if is_unsupported_here(error) and not never_sent(error):
        # 501, 505, ...: not worth retrying on this server, but another may serve it.
        return True
    return is_retryable(error)


def fallback_causes(error: BaseException) -> tuple[BaseException, ...]:
    """Every failure of a call that ``with_fallbacks`` gave up on, in order, ``error`` last.

    For any other exception, ``(error,)``.
    """
    causes: object = getattr(error, _CAUSES, None)
    if isinstance(causes, tuple):
        found: tuple[BaseException, ...] = causes  # pyright: ignore[reportUnknownVariableType]
        return found
    return (error,)


def _give_up(failures: list[tuple[str, BaseException]]) -> None:
    """Make the last failure, the one raised, carry the earlier ones."""
    last = failures[-1][1]
    for name, error in failures[:-1]:
        status = getattr(error, "status_code", None)
        shown = f" (HTTP {status})" if isinstance(status, int) else ""
        add_note(
            last,
            f"fixedmodel.with_fallbacks: {name} failed with {type(error).__name__}{shown}",
        )
    add_note(
        last,
        f"fixedmodel.with_fallbacks: {len(failures)} callables failed; "
        "fixedmodel.fallback_causes(error) returns every failure",
    )
    # A nested with_fallbacks that gave up brings its own causes: keep them all.
    causes = tuple(cause for _, error in failures for cause in fallback_causes(error))
    setattr(last, _CAUSES, causes)


class _Fallbacks(Wrapper):
    """What the sync and async fallback wrappers share."""

    __slots__ = ("_calls", "_names", "_policy")

    def __init__(self, functions: tuple[ModelCallable, ...], policy: FallbackPolicy) -> None:
        super().__init__(functions[0])
        # Any: the four kinds return litellm's objects; the overloads type the results.
        self._calls: tuple[Callable[..., Any], ...] = functions
        self._names = tuple(name_of(f, i) for i, f in enumerate(functions))
        self._policy = policy

    @property
    def policy(self) -> FallbackPolicy:
        """The policy that decides which failures fall back."""
        return self._policy

    @property
    def callables(self) -> tuple[ModelCallable, ...]:
        """The primary, then the fallbacks, in the order they are tried."""
        calls: tuple[Any, ...] = self._calls
        return calls

    def _failed(
        self,
        info: CallInfo,
        index: int,
        error: Exception,
        failures: list[tuple[str, BaseException]],
    ) -> bool:
        """Record a failure; tell whether to go on to the next callable."""
        name = self._names[index]
        note_failure(info, name, error)
        failures.append((name, error))
        if index + 1 >= len(self._calls) or not self._policy.should_fall_back(error):
            return False
        level = 30 if _is_auth_failure(error) else 20  # WARNING for a key or model problem
        LOGGER.log(
            level,
            "with_fallbacks: %s failed (%s); trying %s",
            name,
            type(error).__name__,
            self._names[index + 1],
        )
        info.fallbacks_tried += 1
        return True

    def __repr__(self) -> str:
        inner = ", ".join(repr(f) for f in self._calls)
        return f"with_fallbacks({inner}, policy={self._policy!r})"


class _AsyncFallbacks(_Fallbacks):
    __slots__ = ()

    async def __call__(self, **kwargs: Any) -> Any:
        info, opened = join_call()
        arguments = forward(kwargs)
        failures: list[tuple[str, BaseException]] = []
        last = len(self._calls) - 1
        try:
            for index, call in enumerate(self._calls):
                try:
                    result = await call(**arguments)
                    if index < last and is_stream(result):
                        await afirst_chunk(result)  # A failure before it still falls back.
                except Exception as error:
                    if self._failed(info, index, error, failures):
                        continue
                    if len(failures) > 1:  # Raised as it is, carrying the earlier ones.
                        _give_up(failures)
                    raise
                note_served(info, self._names[index])
                return result
        finally:
            leave_call(opened)
        raise AssertionError("unreachable: the last callable's failure is raised")


class _SyncFallbacks(_Fallbacks):
    __slots__ = ()

    def __call__(self, **kwargs: Any) -> Any:
        info, opened = join_call()
        arguments = forward(kwargs)
        failures: list[tuple[str, BaseException]] = []
        last = len(self._calls) - 1
        try:
            for index, call in enumerate(self._calls):
                try:
                    result = call(**arguments)
                    if index < last and is_stream(result):
                        first_chunk(result)  # A failure before it still falls back.
                except Exception as error:
                    if self._failed(info, index, error, failures):
                        continue
                    if len(failures) > 1:  # Raised as it is, carrying the earlier ones.
                        _give_up(failures)
                    raise
                note_served(info, self._names[index])
                return result
        finally:
            leave_call(opened)
        raise AssertionError("unreachable: the last callable's failure is raised")


def _check_policy(policy: object) -> FallbackPolicy:
    if not isinstance(policy, FallbackPolicy):
        msg = (
            f"with_fallbacks() takes policy= as a FallbackPolicy, got {type(policy).__name__}; "
            "e.g. with_fallbacks(primary, backup, policy=FallbackPolicy(content_policy=True))"
        )
        raise TypeError(msg)
    return policy


@overload
def with_fallbacks(
    primary: ClosableAFixedModelCompletion,
    *fallbacks: ClosableAFixedModelCompletion,
    policy: FallbackPolicy = ...,
) -> ClosableAFixedModelCompletion: ...
@overload
def with_fallbacks(
    primary: ClosableFixedModelCompletion,
    *fallbacks: ClosableFixedModelCompletion,
    policy: FallbackPolicy = ...,
) -> ClosableFixedModelCompletion: ...
@overload
def with_fallbacks(
    primary: ClosableAFixedModelEmbedding,
    *fallbacks: ClosableAFixedModelEmbedding,
    policy: FallbackPolicy = ...,
) -> ClosableAFixedModelEmbedding: ...
@overload
def with_fallbacks(
    primary: ClosableFixedModelEmbedding,
    *fallbacks: ClosableFixedModelEmbedding,
    policy: FallbackPolicy = ...,
) -> ClosableFixedModelEmbedding: ...
@overload
def with_fallbacks(
    primary: AFixedModelCompletion,
    *fallbacks: AFixedModelCompletion,
    policy: FallbackPolicy = ...,
) -> AFixedModelCompletion: ...
@overload
def with_fallbacks(
    primary: FixedModelCompletion,
    *fallbacks: FixedModelCompletion,
    policy: FallbackPolicy = ...,
) -> FixedModelCompletion: ...
@overload
def with_fallbacks(
    primary: AFixedModelEmbedding,
    *fallbacks: AFixedModelEmbedding,
    policy: FallbackPolicy = ...,
) -> AFixedModelEmbedding: ...
@overload
def with_fallbacks(
    primary: FixedModelEmbedding,
    *fallbacks: FixedModelEmbedding,
    policy: FallbackPolicy = ...,
) -> FixedModelEmbedding: ...
def with_fallbacks(
    primary: ModelCallable, *fallbacks: ModelCallable, policy: FallbackPolicy = _DEFAULT_POLICY
) -> ModelCallable:
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
        (a litellm exception, unchanged) with a note per earlier failure;
        :func:`fallback_causes` returns them all.

    Raises:
        TypeError: A value is not callable, the callables are not all of one kind (sync
            and async, or completion and embedding, mixed), or ``policy`` is not a
            FallbackPolicy.
    """
    functions = (primary, *fallbacks)
    asynchronous = check_one_kind(functions, "with_fallbacks")
    checked = _check_policy(policy)
    if asynchronous:
        return _AsyncFallbacks(functions, checked).made_by(
            with_fallbacks, *functions, policy=checked
        )
    return _SyncFallbacks(functions, checked).made_by(with_fallbacks, *functions, policy=checked)
