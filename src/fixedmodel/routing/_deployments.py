"""What a load balancer knows about its deployments, and how it reads their failures."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fixedmodel._litellm import litellm_module
from fixedmodel.middleware._call import ModelCallable, Wrapper, request_reader
from fixedmodel.middleware._errors import (
    is_rate_limit,
    is_route_failure,
    never_sent,
    retry_after,
)
from fixedmodel.middleware.rate_limit import RateLimit, RateLimiter

if TYPE_CHECKING:
    from fixedmodel._cooldown import CooldownPolicy

__all__ = [
    "Deployment",
    "Usage",
    "all_cooling",
    "cool_for",
    "counts_against",
    "is_budget_refusal",
    "limit_of",
    "sent_nothing",
]


def limit_of(function: object) -> RateLimit | None:
    """The rate limit of the first ``with_rate_limit`` in a stack of middleware, if any."""
    while isinstance(function, Wrapper):
        limiter: object = getattr(function, "limiter", None)
        if isinstance(limiter, RateLimiter):
            return limiter.limit
        function = function._inner  # pyright: ignore[reportPrivateUsage]
    return None


class Usage:
    """Requests and tokens one deployment was sent over the last period, from this process.

    Each call is one entry ``[time, tokens, requests, live]``: ``requests`` is 1, or 0 once
    refunded (nothing was sent: a cache hit, a budget refusal); ``live`` is 1 until the entry
    leaves the window. A correction (the real token count, a refund) changes the totals only
    while its entry is live, so a call that outlasts the window is counted once, never
    subtracted twice. The caller holds the balancer's lock.
    """

    __slots__ = ("limit", "period", "requests", "sent", "tokens")

    def __init__(self, limit: RateLimit | None) -> None:
        self.limit = limit
        self.period = limit.period if limit is not None else 60.0
        self.sent: deque[list[float]] = deque()
        self.requests = 0
        self.tokens = 0.0

    def add(self, now: float, tokens: int) -> list[float]:
        entry = [now, float(tokens), 1.0, 1.0]
        self.sent.append(entry)
        self.requests += 1
        self.tokens += tokens
        return entry

    def correct(self, entry: list[float], tokens: float) -> None:
        """The call of ``entry`` used ``tokens`` tokens in the end."""
        if entry[3]:
            self.tokens += tokens - entry[1]
        entry[1] = tokens

    def refund(self, entry: list[float]) -> None:
        """The call of ``entry`` sent nothing: it no longer counts."""
        if entry[3]:
            self.requests -= round(entry[2])
            self.tokens -= entry[1]
        entry[1] = entry[2] = 0.0

    def used_share(self, now: float) -> float:
        sent, horizon = self.sent, now - self.period
        while sent and sent[0][0] <= horizon:
            entry = sent.popleft()
            self.requests -= round(entry[2])
            self.tokens -= entry[1]
            entry[3] = 0.0
        limit = self.limit
        if limit is None:
            return 0.0
        share = 0.0
        if limit.requests is not None:
            share = self.requests / limit.requests
        if limit.tokens is not None:
            share = max(share, self.tokens / limit.tokens)
        return share


class Deployment:
    __slots__ = (
        "call",
        "failovers",
        "in_flight",
        "index",
        "key",
        "name",
        "read",
        "recovers_at",
        "skip_until",
        "usage",
    )

    def __init__(self, index: int, name: str, function: ModelCallable, group: str) -> None:
        self.index = index
        self.name = name
        # Any: the four kinds return litellm's objects; the Protocols type the results.
        self.call: Callable[..., Any] = function
        self.key = f"{group}:{name}"
        self.in_flight = 0
        # Calls that failed here and went on: their next deployment is chosen in turn, so
        # the share of a deployment that keeps failing is spread evenly over the others.
        self.failovers = 0
        # When the store said it could be tried again, and until when this process does not
        # ask the store about it (at most _REMEMBER_REFUSAL later than the answer).
        self.recovers_at = 0.0
        self.skip_until = 0.0
        self.usage = Usage(limit_of(function))
        self.read = request_reader(function)


def counts_against(error: BaseException) -> bool:
    """Whether a failure says the deployment is in trouble (and another may do better)."""
    return is_route_failure(error)  # The rule with_fallbacks follows too.


def is_budget_refusal(error: BaseException) -> bool:
    """A ``with_budget`` under one deployment refused the call: another may have budget."""
    return isinstance(error, litellm_module().BudgetExceededError)


def sent_nothing(error: BaseException) -> bool:
    """A failure that reached no provider: a budget refusal under the deployment, or an error
    raised in this process before any request was sent (``never_sent``: a ``ValueError`` of
    your code, a missing API key). It says nothing of the deployment: no verdict, and the
    request it would have been does not count."""
    return is_budget_refusal(error) or never_sent(error)


def cool_for(error: BaseException, policy: CooldownPolicy) -> float | None:
    """Seconds the deployment asked not to be called (``Retry-After``), or None.

    Read from any failure that counts against the deployment: a 429's, and a 503's or
    another 5xx's (RFC 9110 §10.2.3), as ``with_fallbacks`` reads it.
    """
    if not (is_rate_limit(error) or counts_against(error)):
        return None
    advice = retry_after(error)
    return None if advice is None else min(max(advice, 0.001), policy.max_retry_after)


def all_cooling(model: str | None, retry_in: float, names: Sequence[str]) -> Exception:
    import httpx

    litellm = litellm_module()
    millis = max(1, round(retry_in * 1000))
    response = httpx.Response(
        429,
        headers={"retry-after-ms": str(millis)},
        request=httpx.Request("POST", "http://fixedmodel.invalid/load-balancing"),
    )
    message = (
        f"fixedmodel.with_load_balancing: every deployment ({', '.join(names)}) is cooling "
        f"down; the first recovers in {retry_in:.3f} s"
    )
    error: Exception = litellm.RateLimitError(
        message, llm_provider="fixedmodel", model=model or "", response=response
    )
    return error
