"""Budgets: a spending cap (USD, tokens, requests) shared by callables and processes.

``with_budget(chat, budget)`` reserves each call's worst case before it is made, refuses it
(``litellm.BudgetExceededError``, no request sent) when the reservation would cross a cap,
and settles the reservation to the real cost afterwards, streams included.

Worst case of a call: its prompt tokens (``litellm.token_counter``, as the rate limiter
counts them) at the model's highest input price, plus ``n`` times the output tokens it
allows (``max_completion_tokens``/``max_tokens``; else the model's ``max_output_tokens``
from litellm's price list; else :attr:`Budget.assumed_completion_tokens`) at its highest
output price. "Highest" is over litellm's price fields for the model (tiers above 128k or
200k tokens, priority service, cache writes, reasoning), so the worst case is a bound on what
litellm will price the call at, unless the provider counts more prompt tokens than the
tokenizer does.

Real cost: what litellm prices the response at (``response._hidden_params["response_cost"]``,
or ``litellm.cost_per_token`` over its ``usage``, which prices cached and reasoning tokens by
the model's rates). A stream is settled when it ends, from its last usage chunk (ask for it
with ``stream_options={"include_usage": True}``); a stream that ends without usage keeps its
worst-case reservation. A failed call is refunded (providers do not bill errors) but still
counts as a request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast, overload

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
from fixedmodel._pydantic import read_attribute
from fixedmodel.middleware._call import (
    ModelCallable,
    Wrapper,
    check_callable,
    is_async_callable,
    is_stream_request,
    request_kind,
    request_reader,
)
from fixedmodel.middleware._streams import StreamEnd, watch_stream
from fixedmodel.middleware._tokens import estimate_tokens
from fixedmodel.routing._pricing import (
    last_usage,
    nanos,
    prices_of,
    prompt_bound,
    real_cost,
    requested_output,
    usage_tokens,
    warn_unpriced,
)
from fixedmodel.stores._budget_store import (
    NANOS_PER_USD,
    BudgetStore,
    Caps,
    Committed,
    Reservation,
)
from fixedmodel.stores.budget_memory import MemoryBudgetStore

__all__ = ["Budget", "BudgetStatus", "with_budget"]

LOGGER = logging.getLogger("fixedmodel.routing")

UnknownPrice = Literal["count_tokens", "refuse"]


def _check_cap(name: str, value: object, *, number: bool) -> None:
    if value is None:
        return
    kind = "a number of USD" if number else "an int"
    if isinstance(value, bool) or not isinstance(value, (int, float) if number else int):
        msg = f"Budget.{name} must be {kind} or None, got {type(value).__name__}"
        raise TypeError(msg)
    checked = float(cast("float", value))
    if not (math.isfinite(checked) and checked >= 0):
        msg = f"Budget.{name} must be >= 0 (or None for no cap), got {value!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class BudgetStatus:
    """Where a budget stands in its current window (spent includes calls still in flight at
    their worst case).

    Attributes:
        cost: USD committed.
        tokens: Tokens committed.
        requests: Requests made.
        cost_left: USD left under ``max_cost`` (``None``: no cost cap).
        tokens_left: Tokens left under ``max_tokens`` (``None``: no token cap).
        requests_left: Requests left under ``max_requests`` (``None``: no request cap).
        resets_in: Seconds until the window ends (``None``: no period).
    """

    cost: float
    tokens: int
    requests: int
    cost_left: float | None
    tokens_left: int | None
    requests_left: int | None
    resets_in: float | None


class Budget:
    """A spending cap shared by every callable wrapped with it (and, through a shared store,
    by every process).

    Args:
        max_cost: USD per window; ``None`` for no cost cap.
        max_tokens: Tokens (prompt and completion) per window; ``None`` for no token cap.
        max_requests: Requests per window; ``None`` for no request cap.
        period: Window length in seconds (``86400``: a daily budget, resetting at 00:00 UTC);
            ``None``: one window for the life of the store.
        unknown_price: For a model litellm has no price for, when ``max_cost`` is set:
            ``"count_tokens"`` (default) counts its tokens and requests only, with one
            WARNING per model; ``"refuse"`` raises ``ValueError`` when such a model is
            wrapped (or ``BudgetExceededError`` when a callable that does not name its model
            is called).
        assumed_completion_tokens: Output tokens reserved for a call that sets no maximum,
            when litellm does not know the model's ``max_output_tokens`` either.
        store: Where the spending lives: a private in-process store by default; a
            :class:`~fixedmodel.stores.redis_budget.RedisBudgetStore` shares it.
        key: Name of the budget in the store.

    Raises:
        TypeError: A value has the wrong type.
        ValueError: No cap is set, or a value is out of range.
    """

    __slots__ = ("_caps", "_key", "_store", "assumed_completion_tokens", "unknown_price")

    def __init__(
        self,
        *,
        max_cost: float | None = None,
        max_tokens: int | None = None,
        max_requests: int | None = None,
        period: float | None = None,
        unknown_price: UnknownPrice = "count_tokens",
        assumed_completion_tokens: int = 4096,
        store: BudgetStore | None = None,
        key: str = "default",
    ) -> None:
        _check_cap("max_cost", max_cost, number=True)
        _check_cap("max_tokens", max_tokens, number=False)
        _check_cap("max_requests", max_requests, number=False)
        _check_cap("assumed_completion_tokens", assumed_completion_tokens, number=False)
        if max_cost is None and max_tokens is None and max_requests is None:
            msg = "Budget needs max_cost=, max_tokens= or max_requests=, e.g. Budget(max_cost=5.0)"
            raise ValueError(msg)
        given = cast("object", period)  # Checked: callers without a type checker pass anything.
        if given is not None and (
            isinstance(given, bool)
            or not isinstance(given, (int, float))
            or not (math.isfinite(given) and given > 0)
        ):
            msg = f"Budget.period must be a number of seconds > 0 or None, got {period!r}"
            raise ValueError(msg)
        if unknown_price not in ("count_tokens", "refuse"):
            msg = f"Budget.unknown_price must be 'count_tokens' or 'refuse', got {unknown_price!r}"
            raise ValueError(msg)
        if not isinstance(cast("object", store), (BudgetStore, type(None))):
            msg = f"store must implement BudgetStore, got {type(store).__name__}"
            raise TypeError(msg)
        if not isinstance(cast("object", key), str) or not key:
            msg = f"key must be a non-empty str naming the budget, got {key!r}"
            raise TypeError(msg)
        cost = None if max_cost is None else math.floor(max_cost * NANOS_PER_USD)
        self._caps = Caps(cost, max_tokens, max_requests, period)
        self._store: BudgetStore = store if store is not None else MemoryBudgetStore()
        self._key = key
        self.unknown_price: UnknownPrice = unknown_price
        self.assumed_completion_tokens = assumed_completion_tokens

    def __reduce__(self) -> tuple[Any, ...]:
        # The same caps over the same store (the in-process store refuses to travel).
        options = {
            "max_cost": self.max_cost,
            "max_tokens": self.max_tokens,
            "max_requests": self.max_requests,
            "period": self._caps.period,
            "unknown_price": self.unknown_price,
            "assumed_completion_tokens": self.assumed_completion_tokens,
            "store": self._store,
            "key": self._key,
        }
        return (_rebuild_budget, (options,))

    @property
    def max_cost(self) -> float | None:
        """USD per window, or ``None``."""
        return None if self._caps.cost is None else self._caps.cost / NANOS_PER_USD

    @property
    def max_tokens(self) -> int | None:
        """Tokens per window, or ``None``."""
        return self._caps.tokens

    @property
    def max_requests(self) -> int | None:
        """Requests per window, or ``None``."""
        return self._caps.requests

    @property
    def period(self) -> float | None:
        """Window length in seconds, or ``None``."""
        return self._caps.period

    def status(self) -> BudgetStatus:
        """Where the budget stands now (a round trip to a shared store).

        Raises:
            RedisUnavailableError: The budget's Redis store could not be read.
        """
        return self._status(self._store.committed(self._key, self._caps))

    async def astatus(self) -> BudgetStatus:
        """Async :meth:`status`."""
        return self._status(await self._store.acommitted(self._key, self._caps))

    def _status(self, committed: Committed) -> BudgetStatus:
        caps = self._caps
        return BudgetStatus(
            cost=committed.cost / NANOS_PER_USD,
            tokens=committed.tokens,
            requests=committed.requests,
            cost_left=None
            if caps.cost is None
            else max(caps.cost - committed.cost, 0) / NANOS_PER_USD,
            tokens_left=None if caps.tokens is None else max(caps.tokens - committed.tokens, 0),
            requests_left=None
            if caps.requests is None
            else max(caps.requests - committed.requests, 0),
            resets_in=committed.resets_in,
        )

    def _refusal(self, reservation: Reservation, cost: int, tokens: int) -> Exception:
        caps, committed = self._caps, reservation.committed
        if caps.requests is not None and committed.requests + 1 > caps.requests:
            what, spent, cap = "requests", float(committed.requests), float(caps.requests)
        elif caps.tokens is not None and committed.tokens + tokens > caps.tokens:
            what, spent, cap = "tokens", float(committed.tokens), float(caps.tokens)
        else:
            what = "cost (USD)"
            spent, cap = committed.cost / NANOS_PER_USD, (caps.cost or 0) / NANOS_PER_USD
        needed = cost / NANOS_PER_USD if what.startswith("cost") else (tokens or 1)
        message = (
            f"fixedmodel.with_budget: budget {self._key!r} refused the call before sending it: "
            f"{what} committed {spent:g} of {cap:g}, and this call may need up to {needed:g}"
        )
        error: Exception = litellm_module().BudgetExceededError(
            current_cost=spent, max_budget=cap, message=message
        )
        return error

    def __repr__(self) -> str:
        caps = [
            f"{name}={value!r}"
            for name, value in (
                ("max_cost", self.max_cost),
                ("max_tokens", self.max_tokens),
                ("max_requests", self.max_requests),
                ("period", self.period),
            )
            if value is not None
        ]
        return f"Budget({', '.join(caps)}, store={self._store!r}, key={self._key!r})"


@dataclass
class _Held:
    """One call's reservation: what to settle against."""

    window: int
    cost: int
    tokens: int


class _Budgeted(Wrapper):
    """What the sync and async budgeted callables share."""

    __slots__ = ("_budget", "_call", "_model", "_prices", "_read", "_tasks")

    def __init__(self, inner: ModelCallable, budget: Budget) -> None:
        super().__init__(inner)
        # Any: the four kinds return litellm's objects; the overloads type the results.
        self._call: Callable[..., Any] = inner
        self._budget = budget
        self._model = self.model
        self._read = request_reader(inner)
        self._prices = prices_of(self._model)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def budget(self) -> Budget:
        """The budget this callable spends from."""
        return self._budget

    def _worst_case(self, request: dict[str, Any], *, exact: bool = True) -> tuple[int, int]:
        """The call's worst case: (nano-USD, tokens).

        With ``exact=False`` the prompt may be bounded by its UTF-8 bytes instead of counted
        (see :func:`prompt_bound`): never less than the count, and much cheaper.
        """
        budget, prices = self._budget, self._prices
        limit = prices.max_output_tokens if prices is not None else None
        per_choice = requested_output(request, limit or budget.assumed_completion_tokens)
        if request_kind(request) == "embedding":
            per_choice = 0
        choices = request.get("n")
        outputs = per_choice * (choices if isinstance(choices, int) and choices > 0 else 1)
        prompt = None if exact else prompt_bound(request)
        if prompt is None:
            prompt = max(estimate_tokens(request, self._model, per_choice) - outputs, 0)
        total = prompt + outputs
        if budget._caps.cost is None:  # pyright: ignore[reportPrivateUsage]
            return 0, total
        if prices is None:
            if budget.unknown_price == "refuse":
                msg = f"litellm has no price for {self._model or 'this callable'}"
                error: Exception = litellm_module().BudgetExceededError(
                    current_cost=0.0, max_budget=budget.max_cost or 0.0, message=msg
                )
                raise error
            warn_unpriced(self._model)
            return 0, total
        return nanos(prompt * prices.input + outputs * prices.output), total

    def _cost_change(self, held: _Held, result: object, usage: object) -> int:
        """Nano-USD to add to the reservation: the real cost minus the worst case.

        Nothing when no cost was reserved (no cost cap, or no price), or when litellm cannot
        price the answer (the worst case then stays charged).
        """
        if not held.cost:
            return 0
        real = real_cost(self._model, result, usage)
        return 0 if real is None else nanos(real) - held.cost

    def _correction(self, held: _Held, result: object) -> tuple[int, int] | None:
        """(cost, tokens) to add to the reservation of a finished, non-stream call."""
        hidden = read_attribute(result, "_hidden_params")
        if isinstance(hidden, dict) and cast("dict[str, object]", hidden).get("cache_hit") is True:
            # A cache's answer (fixedmodel's or litellm's) spent nothing, whatever its usage.
            return -held.cost, -held.tokens
        usage = read_attribute(result, "usage")
        tokens = usage_tokens(usage)
        if tokens is None:
            return None
        return self._cost_change(held, result, usage), tokens - held.tokens

    def _stream_correction(
        self, held: _Held, end: StreamEnd, stream: object
    ) -> tuple[int, int] | None:
        """(cost, tokens) to add to the reservation of a stream that ended."""
        if end.usage is None:
            return None  # No usage reported: the worst case stays charged.
        usage = last_usage(stream)
        change = self._cost_change(held, None, usage if usage is not None else end.usage)
        return change, end.usage.total_tokens - held.tokens

    def __repr__(self) -> str:
        return f"with_budget({self._inner!r}, {self._budget!r})"


def _settle_stream_later(
    wrapper: _Budgeted, held: _Held, stream: object, settle: Callable[[int, int], None]
) -> None:
    """Settle a stream's reservation when it ends (see ``watch_stream``)."""
    reference = weakref.ref(stream)

    def ended(end: StreamEnd) -> None:
        try:
            change = wrapper._stream_correction(held, end, reference())  # pyright: ignore[reportPrivateUsage]
            if change is not None and any(change):
                settle(*change)
        except Exception:  # A watcher must not raise into the caller's stream.
            LOGGER.exception("with_budget: settling a stream failed; its reservation stays")

    watch_stream(stream, ended)  # type: ignore[arg-type]  # a litellm stream, checked by the caller


class _AsyncBudgeted(_Budgeted):
    __slots__ = ()

    async def __call__(self, **kwargs: Any) -> Any:
        budget = self._budget
        store, key, caps = budget._store, budget._key, budget._caps  # pyright: ignore[reportPrivateUsage]
        request = self._read(kwargs)
        cost, tokens = self._worst_case(request, exact=False)
        reservation = await store.areserve(key, caps, cost, tokens)
        if not reservation.granted:  # Near the cap: count exactly before refusing.
            exact = self._worst_case(request)
            if exact != (cost, tokens):
                cost, tokens = exact
                reservation = await store.areserve(key, caps, cost, tokens)
        if not reservation.granted:
            raise budget._refusal(reservation, cost, tokens)  # pyright: ignore[reportPrivateUsage]
        held = _Held(reservation.window, cost, tokens)
        try:
            result = await self._call(**kwargs)
        except BaseException:
            await store.asettle(key, caps, held.window, -held.cost, -held.tokens)
            raise
        if is_stream_request(request) and isinstance(result, litellm_module().CustomStreamWrapper):
            loop = asyncio.get_running_loop()

            def settle(change_cost: int, change_tokens: int) -> None:
                coroutine = store.asettle(key, caps, held.window, change_cost, change_tokens)
                task = loop.create_task(coroutine)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

            def settle_threadsafe(change_cost: int, change_tokens: int) -> None:
                if loop.is_closed():
                    store.settle(key, caps, held.window, change_cost, change_tokens)
                else:
                    loop.call_soon_threadsafe(settle, change_cost, change_tokens)

            _settle_stream_later(self, held, result, settle_threadsafe)
            return result
        change = self._correction(held, result)
        if change is not None and any(change):
            await store.asettle(key, caps, held.window, *change)
        return result


class _SyncBudgeted(_Budgeted):
    __slots__ = ()

    def __call__(self, **kwargs: Any) -> Any:
        budget = self._budget
        store, key, caps = budget._store, budget._key, budget._caps  # pyright: ignore[reportPrivateUsage]
        request = self._read(kwargs)
        cost, tokens = self._worst_case(request, exact=False)
        reservation = store.reserve(key, caps, cost, tokens)
        if not reservation.granted:  # Near the cap: count exactly before refusing.
            exact = self._worst_case(request)
            if exact != (cost, tokens):
                cost, tokens = exact
                reservation = store.reserve(key, caps, cost, tokens)
        if not reservation.granted:
            raise budget._refusal(reservation, cost, tokens)  # pyright: ignore[reportPrivateUsage]
        held = _Held(reservation.window, cost, tokens)
        try:
            result = self._call(**kwargs)
        except BaseException:
            store.settle(key, caps, held.window, -held.cost, -held.tokens)
            raise
        if is_stream_request(request) and isinstance(result, litellm_module().CustomStreamWrapper):

            def settle(change_cost: int, change_tokens: int) -> None:
                store.settle(key, caps, held.window, change_cost, change_tokens)

            _settle_stream_later(self, held, result, settle)
            return result
        change = self._correction(held, result)
        if change is not None and any(change):
            store.settle(key, caps, held.window, *change)
        return result


def _check_budget(budget: object) -> Budget:
    if not isinstance(budget, Budget):
        msg = (
            f"with_budget() takes a Budget, got {type(budget).__name__}; "
            "e.g. with_budget(chat, Budget(max_cost=5.0))"
        )
        raise TypeError(msg)
    return budget


@overload
def with_budget(
    fn: ClosableAFixedModelCompletion, budget: Budget
) -> ClosableAFixedModelCompletion: ...
@overload
def with_budget(
    fn: ClosableFixedModelCompletion, budget: Budget
) -> ClosableFixedModelCompletion: ...
@overload
def with_budget(
    fn: ClosableAFixedModelEmbedding, budget: Budget
) -> ClosableAFixedModelEmbedding: ...
@overload
def with_budget(fn: ClosableFixedModelEmbedding, budget: Budget) -> ClosableFixedModelEmbedding: ...
@overload
def with_budget(fn: AFixedModelCompletion, budget: Budget) -> AFixedModelCompletion: ...
@overload
def with_budget(fn: FixedModelCompletion, budget: Budget) -> FixedModelCompletion: ...
@overload
def with_budget(fn: AFixedModelEmbedding, budget: Budget) -> AFixedModelEmbedding: ...
@overload
def with_budget(fn: FixedModelEmbedding, budget: Budget) -> FixedModelEmbedding: ...
def with_budget(fn: ModelCallable, budget: Budget) -> ModelCallable:
    """Spend every call of ``fn`` from ``budget``; refuse calls that could cross its caps.

    Args:
        fn: Any of the four callable kinds.
        budget: The caps; share one :class:`Budget` between callables (and a shared store
            between processes) for one cap over all of them.

    Returns:
        A callable of the same kind. It raises ``litellm.BudgetExceededError`` before
        sending anything when the call's worst case would cross a cap.

    Raises:
        TypeError: ``fn`` is not callable or ``budget`` is not a Budget.
        ValueError: ``budget.unknown_price`` is ``"refuse"``, a cost cap is set, and
            litellm has no price for ``fn``'s model.
    """
    check_callable(fn, "with_budget")
    checked = _check_budget(budget)
    kind = _AsyncBudgeted if is_async_callable(fn) else _SyncBudgeted
    wrapped = kind(fn, checked)
    model = wrapped.model
    if (
        checked.max_cost is not None
        and checked.unknown_price == "refuse"
        and model is not None
        and prices_of(model) is None
    ):
        msg = (
            f"litellm has no price for model {model!r}, and the budget caps cost with "
            "unknown_price='refuse'; register a price (litellm.register_model) or use "
            "Budget(unknown_price='count_tokens')"
        )
        raise ValueError(msg)
    return wrapped.made_by(with_budget, fn, checked)


def _rebuild_budget(options: dict[str, Any]) -> Budget:
    """Unpickle a budget: the same caps, store and key."""
    return Budget(**options)
