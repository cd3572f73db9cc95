"""How far a batch has come: counters, a tqdm progress bar, the caller's callbacks.

Progress is observability: a callback or a bar that raises is logged once (a warning on the
``fixedmodel.batch`` logger) and never stops the batch or costs a result, whatever it raises
(``asyncio.CancelledError`` or another ``BaseException`` included) except
``KeyboardInterrupt`` and ``SystemExit``, which stop the batch as they stop a program.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

__all__ = ["BatchProgress", "Progress", "ProgressCallback", "callbacks", "response_cost"]

logger = logging.getLogger("fixedmodel.batch")

_C = TypeVar("_C", bound=Callable[..., object])

# What a callback or bar may raise to stop the batch; anything else is logged.
_STOPS = (KeyboardInterrupt, SystemExit)


@dataclass(frozen=True)
class BatchProgress:
    """A batch's counters after one more finished request.

    Attributes:
        done: Requests finished, answered or failed.
        total: Requests in the batch, when known.
        errors: Requests that failed.
        cache_hits: Answers that came from a cache (no request sent).
        elapsed: Seconds since the batch started.
        prompt_tokens: Input tokens of the answers so far (cache hits not counted).
        completion_tokens: Output tokens of the answers so far (cache hits not counted).
        cost: USD spent so far, as litellm prices the answers (0 for answers it cannot
            price and for cache hits).
        provider_status: For a provider batch job: the provider's status of its batches
            (``validating``, ``in_progress``, ``finalizing``, ...; the least advanced one),
            else None.
        provider_completed: For a provider batch job: lines the provider reports answered
            (its ``request_counts.completed``, summed over the job's running batches).
        provider_failed: ... and failed (``request_counts.failed``).
    """

    done: int
    total: int | None
    errors: int
    cache_hits: int
    elapsed: float
    prompt_tokens: int
    completion_tokens: int
    cost: float
    provider_status: str | None = None
    provider_completed: int = 0
    provider_failed: int = 0

    @property
    def requests_per_second(self) -> float:
        """Finished requests per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


ProgressCallback = Callable[[BatchProgress], object]
"""Called with the counters after every finished request (from the batch's thread).

What it returns is ignored; what it raises is logged (once per callback), never raised,
except ``KeyboardInterrupt`` and ``SystemExit``.
"""


def callbacks(
    given: ProgressCallback | Sequence[ProgressCallback] | None,
) -> tuple[ProgressCallback, ...]:
    """``on_progress=`` as a tuple of callables.

    Raises:
        TypeError: ``given`` is neither None, a callable nor a sequence of callables.
    """
    if given is None:
        return ()
    if callable(given):
        return (not_async(given, "on_progress="),)
    untyped = cast("object", given)  # untyped callers may pass anything
    if isinstance(untyped, (str, bytes)) or not isinstance(untyped, Sequence):
        msg = f"on_progress= takes a callable or callables, got {type(untyped).__name__}"
        raise TypeError(msg)
    found = tuple(cast("Sequence[object]", untyped))
    for item in found:
        if not callable(item):
            msg = (
                "on_progress= takes a callable or a sequence of callables, "
                f"got an item of type {type(item).__name__}"
            )
            raise TypeError(msg)
        not_async(item, "on_progress=")
    return cast("tuple[ProgressCallback, ...]", found)


def not_async(callback: _C, where: str) -> _C:
    """``callback``, refused if it is an ``async def``: callbacks are called, not awaited.

    Raises:
        TypeError: ``callback`` is a coroutine function.
    """
    if inspect.iscoroutinefunction(callback):
        msg = (
            f"{where} takes plain callables: it calls them and does not await them, so "
            f"the async {getattr(callback, '__qualname__', callback)!r} would never run"
        )
        raise TypeError(msg)
    return callback


def _usage(response: object) -> tuple[int, int, float, bool]:
    hidden: object = getattr(response, "_hidden_params", None)
    hit = False
    cost = 0.0
    if isinstance(hidden, dict):
        values: dict[str, Any] = hidden  # pyright: ignore[reportUnknownVariableType]  # litellm dict
        hit = values.get("cache_hit") is True  # how with_cache marks a hit
        found = values.get("response_cost")
        if isinstance(found, (int, float)) and not isinstance(found, bool):
            cost = float(found)
    usage: object = getattr(response, "usage", None)
    prompt: object = getattr(usage, "prompt_tokens", 0)
    completion: object = getattr(usage, "completion_tokens", 0)
    if hit:
        return 0, 0, 0.0, True
    return (
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
        cost,
        False,
    )


def response_cost(response: object) -> float:
    """USD litellm priced ``response`` at (0 for a cache hit or an unpriced model)."""
    return _usage(response)[2]


def response_priced(response: object) -> bool:
    """Whether litellm priced ``response`` (a cache hit costs nothing and counts as priced)."""
    hidden: object = getattr(response, "_hidden_params", None)
    if not isinstance(hidden, dict):
        return False
    values = cast("dict[str, object]", hidden)
    found = values.get("response_cost")
    priced = isinstance(found, (int, float)) and not isinstance(found, bool)
    return priced or values.get("cache_hit") is True


class Progress:
    """Counts a batch's results and shows them: a bar, callbacks, both, or nothing."""

    def __init__(
        self,
        show: bool | ProgressCallback | None,
        total: int | None,
        on_progress: ProgressCallback | Sequence[ProgressCallback] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._total = total
        self._done = self._errors = self._hits = self._prompt = self._completion = 0
        self._cost = 0.0
        self._provider: tuple[str | None, int, int] = (None, 0, 0)
        self._callbacks = callbacks(on_progress)
        self._broken: set[int] = set()  # ids of the callbacks whose failure was logged
        self._bar: Any = None  # tqdm's bar; Any: tqdm's own types are loose
        if callable(show):
            self._callbacks = (not_async(show, "progress="), *self._callbacks)
        elif show is True or (show is None and _stderr_is_terminal()):
            from tqdm import tqdm

            try:
                self._bar = tqdm(total=total, unit="req", dynamic_ncols=True, file=sys.stderr)
            except _STOPS:
                raise
            except BaseException:  # stderr closed, or None (pythonw, a service)
                self._log_once(tqdm, "progress bar")

    def answered(self, response: object) -> None:
        """Count an answered request (a response whose counters cannot be read counts 0)."""
        try:
            prompt, completion, cost, hit = _usage(response)
        except _STOPS:
            raise
        except BaseException:
            self._log_once(_usage, "reading a response's usage")
            prompt, completion, cost, hit = 0, 0, 0.0, False
        with self._lock:
            self._done += 1
            self._prompt += prompt
            self._completion += completion
            self._cost += cost
            self._hits += hit
            snapshot = self._snapshot()
        self._show(snapshot)

    def failed(self) -> None:
        """Count a failed request."""
        with self._lock:
            self._done += 1
            self._errors += 1
            snapshot = self._snapshot()
        self._show(snapshot)

    def _snapshot(self) -> BatchProgress:
        return BatchProgress(
            done=self._done,
            total=self._total,
            errors=self._errors,
            cache_hits=self._hits,
            elapsed=time.monotonic() - self._started,
            prompt_tokens=self._prompt,
            completion_tokens=self._completion,
            cost=self._cost,
            provider_status=self._provider[0],
            provider_completed=self._provider[1],
            provider_failed=self._provider[2],
        )

    def provider(self, status: str, completed: int, failed: int) -> None:
        """Show a provider batch job's own progress (a poll's status and request counts)."""
        with self._lock:
            changed = self._provider != (status, completed, failed)
            self._provider = (status, completed, failed)
            snapshot = self._snapshot()
        if not changed:
            return
        self._tell(snapshot)
        bar = self._bar
        if bar is not None:
            try:
                bar.set_description(f"{status} {completed + failed} at the provider", refresh=True)
            except _STOPS:
                raise
            except BaseException:
                self._log_once(bar, "progress bar")

    def _tell(self, snapshot: BatchProgress) -> None:
        """Hand ``snapshot`` to every callback."""
        for callback in self._callbacks:
            try:
                returned = callback(snapshot)
                if inspect.iscoroutine(returned):
                    returned.close()  # never awaited: say so once, without a RuntimeWarning
                    msg = "it returned a coroutine; progress callbacks are called, not awaited"
                    raise TypeError(msg)
            except _STOPS:
                raise
            except BaseException:
                self._log_once(callback, "progress callback")

    def _show(self, snapshot: BatchProgress) -> None:
        self._tell(snapshot)
        bar = self._bar
        if bar is not None:
            try:
                bar.set_postfix(postfix(snapshot), refresh=False)
                bar.update(1)
            except _STOPS:
                raise
            except BaseException:
                self._log_once(bar, "progress bar")

    def _log_once(self, source: object, what: str) -> None:
        with self._lock:
            if id(source) in self._broken:
                return
            self._broken.add(id(source))
        # logging's own last resort may write to a closed stderr, and raise.
        with contextlib.suppress(Exception):
            logger.warning(
                "%s %r raised; the batch goes on (further failures of it are not logged)",
                what,
                source,
                exc_info=True,
            )

    def snapshot(self) -> BatchProgress:
        """The counters now."""
        with self._lock:
            return self._snapshot()

    def close(self) -> None:
        """Close the bar, if one is shown."""
        bar, self._bar = self._bar, None
        if bar is not None:
            try:
                bar.close()
            except _STOPS:
                raise
            except BaseException:
                self._log_once(bar, "progress bar")


def _stderr_is_terminal() -> bool:
    """Whether stderr is a terminal; False when it is closed or None (pythonw, a service)."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def postfix(snapshot: BatchProgress) -> dict[str, object]:
    """What the bar shows after its count: done, failed, cache hits, tokens, cost (USD)."""
    return {
        "done": snapshot.done,
        "failed": snapshot.errors,
        "cache_hits": snapshot.cache_hits,
        "tokens": snapshot.prompt_tokens + snapshot.completion_tokens,
        "cost": f"${snapshot.cost:.4f}",
    }
