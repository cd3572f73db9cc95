"""The full middleware stack that the ``stack``, ``cache-hit`` and ``memory`` sections measure.

It is the canonical order of docs/middleware/index.md, with every layer doing real work:

- logging to a logger whose handler formats every record (the handler's default format, the
  message) and writes it to a null stream,
- metrics into an :class:`~fixedmodel.InMemoryMetrics`,
- a cache (the store is the section's choice),
- retries with the default policy (nothing fails, so one attempt per call),
- a rate limiter with a request budget far above any load here (it admits at once); the
  ``stack`` section also shows what a token budget adds (counting each call's tokens).
"""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Iterator

from benchmarks._litellm import MESSAGES
from fixedmodel import (
    AFixedModelCompletion,
    CacheStore,
    InMemoryMetrics,
    MessageParam,
    RateLimit,
    RateLimiter,
    with_cache,
    with_logging,
    with_metrics,
    with_rate_limit,
    with_retries,
)

NOT_BINDING = RateLimit(requests=10_000_000, period=60.0)
"""A request budget far above what any section sends: the limiter admits at once."""

TOKEN_BUDGET = RateLimit(requests=10_000_000, tokens=10_000_000_000, period=60.0)
"""Request and token budgets, neither binding: each call's tokens are also counted
(``litellm.token_counter``) before it and settled with the real usage after it."""


class NullStream(io.TextIOBase):
    """A text stream that takes whatever is written and keeps nothing."""

    def writable(self) -> bool:
        """A stream one can write to."""
        return True

    def write(self, text: str) -> int:
        """Discard ``text``; report it written."""
        return len(text)


def null_logger(name: str) -> logging.Logger:
    """A logger enabled at INFO whose records are formatted, written, then discarded.

    It does not propagate, so the benchmark's output stays clean and root handlers (if any)
    do not add their own cost.
    """
    handler = logging.StreamHandler(NullStream())
    logger = logging.getLogger(f"benchmarks.{name}")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def full_stack(
    bound: AFixedModelCompletion,
    *,
    store: CacheStore,
    metrics: InMemoryMetrics,
    logger: logging.Logger,
    limiter: RateLimiter | None = None,
) -> AFixedModelCompletion:
    """``with_logging(with_metrics(with_cache(with_retries(with_rate_limit(bound, ...)))))``."""
    limited = with_rate_limit(bound, limiter or RateLimiter(NOT_BINDING))
    cached = with_cache(with_retries(limited), store)
    return with_logging(with_metrics(cached, metrics), logger=logger)


def unique_messages(prefix: str) -> Iterator[list[MessageParam]]:
    """Endless message lists, each new (so each is a cache miss), as long as ``MESSAGES``."""
    text = MESSAGES[0]["content"]
    for number in itertools.count():
        yield [{"role": "user", "content": f"{text} ({prefix} {number})"}]
