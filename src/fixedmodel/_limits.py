"""The definitions the rate limiter and its stores share: the budget and its checks.

Both ``fixedmodel.middleware.rate_limit`` (the limiter) and ``fixedmodel.stores`` (where
its window state lives) need :class:`RateLimit`; it lives here, below both, so that they
import it one way and neither imports the other for it. Users import it from
``fixedmodel.middleware.rate_limit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeGuard

__all__ = ["RateLimit", "check_seconds", "is_int"]


def is_int(value: object) -> TypeGuard[int]:
    """Tell an ``int`` from a ``bool`` or any other value."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_count(name: str, value: object, *, minimum: int, optional: bool) -> None:
    if value is None and optional:
        return
    if not is_int(value):
        kind = "an int or None" if optional else "an int"
        msg = f"RateLimit.{name} must be {kind}, got {type(value).__name__}"
        raise TypeError(msg)
    if value < minimum:
        unset = f" (or None for no {name} budget)" if optional else ""
        msg = f"RateLimit.{name} must be >= {minimum}{unset}, got {value}"
        raise ValueError(msg)


def check_seconds(name: str, value: object, *, zero: bool) -> float:
    """Return ``value`` as seconds, or raise the error that says what ``name`` must be.

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: ``value`` is not finite, or not > 0 (>= 0 when ``zero``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{name} must be a number of seconds, got {type(value).__name__}"
        raise TypeError(msg)
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
        msg = f"{name} must be a finite number of seconds {'>=' if zero else '>'} 0, got {value}"
        raise ValueError(msg)
    return float(value)


@dataclass(frozen=True)
class RateLimit:
    """A budget of requests and/or tokens per period.

    Attributes:
        requests: Requests allowed in any window of ``period`` seconds; ``None`` for no limit.
        tokens: Tokens (prompt and completion) allowed in any window of ``period`` seconds;
            ``None`` for no limit.
        period: Length of the window in seconds.
        assumed_completion_tokens: Completion tokens charged up front for a call that sets
            neither ``max_completion_tokens`` nor ``max_tokens``; corrected after the call.

    Raises:
        ValueError: Neither budget is set, or a value is out of range.
        TypeError: A value has the wrong type.
    """

    requests: int | None = None
    tokens: int | None = None
    period: float = 60.0
    assumed_completion_tokens: int = 1024

    def __post_init__(self) -> None:
        _check_count("requests", self.requests, minimum=1, optional=True)
        _check_count("tokens", self.tokens, minimum=1, optional=True)
        if self.requests is None and self.tokens is None:
            msg = "RateLimit needs requests=, tokens= or both, e.g. RateLimit(requests=500)"
            raise ValueError(msg)
        check_seconds("RateLimit.period", self.period, zero=False)
        _check_count(
            "assumed_completion_tokens", self.assumed_completion_tokens, minimum=0, optional=False
        )
