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
the model's rates). Without usage, an estimate: the prompt counted, plus the text returned
counted, never above the worst case. A failed call is refunded (providers do not bill errors)
but still counts as a request.

Streams are settled when they end, from their last usage chunk (ask for it with
``stream_options={"include_usage": True}``), else from the estimate of what the caller
received: read to the end, closed part way (``close``/``aclose``), abandoned (the caller broke
out, the object was collected) or failed after chunks. A stream that fails before its first
chunk with content is refunded (the ``{"role": "assistant"}`` chunk OpenAI-compatible streams
open with carries nothing the caller could use). An async stream settles before its end
reaches the caller (before ``StopAsyncIteration``, the error, or ``aclose`` returning).

Every reservation ends settled or refunded exactly once: it has an id chosen before the
store is asked, the layer settles it once whatever ends the call (an error, a cancellation,
the end of a stream), and the store settles to nothing an id whose reserve may or may not
have been applied.

Pacing: when the cap is taken by reservations of calls in flight, not by spending,
``Budget(max_wait=S)`` makes a call wait up to ``S`` seconds for settlements instead of
failing at once; a call that would cross the cap on settled spending alone is refused at
once.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from fixedmodel._ids import unique_id
from fixedmodel._litellm import litellm_module
from fixedmodel._protocols import ModelFn
from fixedmodel._pydantic import read_attribute
from fixedmodel._streams import StreamEnd, StreamUsage, watch_stream
from fixedmodel.middleware._call import (
    ModelCallable,
    Wrapper,
    check_callable,
    innermost,
    is_async_callable,
    request_kind,
    request_reader,
)
from fixedmodel.middleware._tokens import estimate_tokens
from fixedmodel.routing._pacing import POLL, Settlements, budget_pacing, check_wait, default_wait
from fixedmodel.routing._pricing import (
    highest_prices,
    last_usage,
    nanos,
    prices_of,
    prompt_bound,
    real_cost,
    reported_cost,
    requested_output,
    response_text,
    served_model,
    usage_tokens,
    warn_unpriced,
)
from fixedmodel.routing._route import leaves
from fixedmodel.stores._budget_store import (
    NANOS_PER_USD,
    BudgetStore,
    Caps,
    Committed,
    Reservation,
)
from fixedmodel.stores.budget_memory import MemoryBudgetStore

__all__ = ["Budget", "BudgetStatus", "budget_pacing", "with_budget"]

LOGGER = logging.getLogger("fixedmodel.routing")

UnknownPrice = Literal["count_tokens", "refuse"]


@dataclass(frozen=True)
class _WorstCase:
    """A call's worst case: nano-USD, tokens, and its prompt tokens if counted (not bounded)."""

    cost: int
    tokens: int
    prompt: int | None


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
        cost_in_flight: The part of ``cost`` held by calls not settled yet (their worst
            case), in USD.
        tokens_in_flight: The part of ``tokens`` held by calls not settled yet.
    """

    cost: float
    tokens: int
    requests: int
    cost_left: float | None
    tokens_left: int | None
    requests_left: int | None
    resets_in: float | None
    cost_in_flight: float = 0.0
    tokens_in_flight: int = 0


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
        max_wait: Seconds a call may wait when the cap is taken by reservations of calls in
            flight (their worst cases) rather than by spending: it waits for their
            settlements and goes ahead as soon as it fits. ``0`` refuses at once. ``None``
            (default): ``0``, or what :func:`budget_pacing` set for the calling context (a
            batch runner). A call that settled spending alone would take past the cap, or
            past ``max_requests``, is refused at once either way.

    Raises:
        TypeError: A value has the wrong type.
        ValueError: No cap is set, or a value is out of range.
    """

    __slots__ = (
        "_caps",
        "_key",
        "_settled",
        "_store",
        "assumed_completion_tokens",
        "max_wait",
        "unknown_price",
    )

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
        max_wait: float | None = None,
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
        if max_wait is not None:
            check_wait(max_wait)
        cost = None if max_cost is None else math.floor(max_cost * NANOS_PER_USD)
        self._caps = Caps(cost, max_tokens, max_requests, period)
        self._store: BudgetStore = store if store is not None else MemoryBudgetStore()
        self._key = key
        self.unknown_price: UnknownPrice = unknown_price
        self.assumed_completion_tokens = assumed_completion_tokens
        self.max_wait = None if max_wait is None else float(max_wait)
        self._settled = Settlements()

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
            "max_wait": self.max_wait,
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
            cost_in_flight=committed.held_cost / NANOS_PER_USD,
            tokens_in_flight=committed.held_tokens,
        )

    def _wait_left(self, deadline: float | None) -> float:
        """Seconds a refused call may still wait (``deadline``: when its wait ends, if begun)."""
        if deadline is not None:
            return deadline - time.monotonic()
        return self.max_wait if self.max_wait is not None else default_wait()

    def _refusal(
        self, reservation: Reservation, cost: int, tokens: int, *, waited: float | None = None
    ) -> Exception:
        caps, committed = self._caps, reservation.committed
        if caps.requests is not None and committed.requests + 1 > caps.requests:
            what, spent, cap = "requests", float(committed.requests), float(caps.requests)
        elif caps.tokens is not None and committed.tokens + tokens > caps.tokens:
            what, spent, cap = "tokens", float(committed.tokens), float(caps.tokens)
        else:
            what = "cost (USD)"
            spent, cap = committed.cost / NANOS_PER_USD, (caps.cost or 0) / NANOS_PER_USD
        needed = cost / NANOS_PER_USD if what.startswith("cost") else (tokens or 1)
        held = (
            committed.held_cost / NANOS_PER_USD
            if what.startswith("cost")
            else float(committed.held_tokens)
            if what == "tokens"
            else 0.0
        )
        message = (
            f"fixedmodel.with_budget: budget {self._key!r} refused the call before sending it: "
            f"{what} committed {spent:g} of {cap:g}"
            + (f" ({held:g} of it held by calls in flight)" if held else "")
            + f", and this call may need up to {needed:g}"
            + (" (after waiting for calls in flight to settle)" if waited is not None else "")
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


class _Held:
    """One call's reservation, settled exactly once (whoever gets there first)."""

    __slots__ = (
        "_lock",
        "cost",
        "counted",
        "once",
        "prompt",
        "request",
        "reservation_id",
        "tokens",
    )

    def __init__(
        self,
        reservation_id: str,
        reservation: Reservation,
        worst: _WorstCase,
        request: dict[str, Any],
    ) -> None:
        self.reservation_id = reservation_id
        self.counted = reservation.window >= 0  # Not: let through uncounted (on_error="open").
        self.cost, self.tokens, self.prompt = worst.cost, worst.tokens, worst.prompt
        self.request = request
        self.once = [True]

    def take(self) -> bool:
        """True for the first caller only: it settles the reservation."""
        try:
            self.once.pop()  # Atomic: of callers racing here, one gets the item.
        except IndexError:
            return False
        return self.counted


class _Budgeted(Wrapper):
    """What the sync and async budgeted callables share: every decision lives here."""

    __slots__ = (
        "_bound",
        "_budget",
        "_call",
        "_members",
        "_model",
        "_prices",
        "_read",
        "_unpriced",
    )

    def __init__(self, inner: ModelCallable, budget: Budget) -> None:
        super().__init__(inner)
        # Any: the four kinds return litellm's objects; the Protocols type the results.
        self._call: Callable[..., Any] = inner
        self._budget = budget
        self._model = self.model
        self._read = request_reader(inner)
        # Over every model the stack may call (a chain's, a balancer's): whichever answers,
        # its cost stays within the worst case.
        models = _leaf_models(inner)
        self._members = frozenset(model for model in models if model is not None)
        self._prices = highest_prices(models)
        # Members litellm has no price for (or without a model): under unknown_price="refuse"
        # one of them could answer at a cost nobody knows, so the calls are refused.
        self._unpriced = tuple(model for model in models if prices_of(model) is None)
        # The output limit and n each member binds (-1: none), when they differ: the request
        # is read with the first member's defaults, and another member may allow more.
        bound = tuple(_bound_outputs(leaf) for leaf in leaves(inner))
        self._bound = bound if len(set(bound)) > 1 else None

    @property
    def budget(self) -> Budget:
        """The budget this callable spends from."""
        return self._budget

    def _worst_case(self, request: dict[str, Any], *, exact: bool = True) -> tuple[int, int]:
        """The call's worst case: (nano-USD, tokens)."""
        worst = self._worst(request, exact=exact)
        return worst.cost, worst.tokens

    def _outputs(self, request: dict[str, Any]) -> tuple[int, int]:
        """(output tokens one choice may use, output tokens of every choice)."""
        limit = self._prices.max_output_tokens if self._prices is not None else None
        unbounded = limit or self._budget.assumed_completion_tokens
        per_choice = requested_output(request, unbounded)
        if request_kind(request) == "embedding":
            per_choice = 0
        choices = request.get("n")
        n = choices if isinstance(choices, int) and choices > 0 else 1
        if self._bound is not None and per_choice:
            per_choice, n = self._widest(request, per_choice, n, unbounded)
        return per_choice, per_choice * n

    def _widest(
        self, request: dict[str, Any], per_choice: int, n: int, unbounded: int
    ) -> tuple[int, int]:
        """The output limit and n of the member that may write the most, when members bind
        different ones: a value equal to the first member's default may be that default
        (a keyword of the call would hold for every member alike, and the widest is taken)."""
        bound = cast("tuple[tuple[int, int], ...]", self._bound)
        first_output, first_n = bound[0]
        given_output = requested_output(request, -1)
        if given_output == first_output:
            per_choice = max(output if output >= 0 else unbounded for output, _ in bound)
        given_n = request.get("n")
        if given_n == first_n or (first_n < 0 and given_n is None):
            n = max(max(count if count > 0 else 1 for _, count in bound), n)
        return per_choice, n

    def _prompt(self, request: dict[str, Any], *, exact: bool) -> tuple[int, bool]:
        """(prompt tokens, whether counted): counted, or (``exact=False``) bounded by UTF-8
        bytes when it can be (see :func:`prompt_bound`): never less than the count, and much
        cheaper."""
        bound = None if exact else prompt_bound(request)
        if bound is not None:
            return bound, False
        per_choice, outputs = self._outputs(request)
        return max(estimate_tokens(request, self._model, per_choice) - outputs, 0), True

    def _worst(self, request: dict[str, Any], *, exact: bool) -> _WorstCase:
        budget, prices = self._budget, self._prices
        _, outputs = self._outputs(request)
        bound = None if exact else prompt_bound(request)  # self._prompt's start, inlined
        prompt, counted = (bound, False) if bound is not None else self._prompt(request, exact=True)
        total = prompt + outputs
        known = prompt if counted else None
        if budget._caps.cost is None:  # pyright: ignore[reportPrivateUsage]
            return _WorstCase(0, total, known)
        refuse = budget.unknown_price == "refuse"
        if prices is None or (refuse and self._unpriced):
            if refuse:
                unpriced = self._unpriced[0] if self._unpriced else self._model
                msg = f"litellm has no price for {unpriced or 'a callable without a model'}"
                error: Exception = litellm_module().BudgetExceededError(
                    current_cost=0.0, max_budget=budget.max_cost or 0.0, message=msg
                )
                raise error
            warn_unpriced(self._model)
            return _WorstCase(0, total, known)
        cost = math.ceil((prompt * prices.input + outputs * prices.output) * NANOS_PER_USD)
        return _WorstCase(cost, total, known)  # (nanos(), inlined above: every call)

    # What a call holds in the end ------------------------------------------------------

    def _priced(
        self, held: _Held, result: object, usage: object, tokens: int, answer: object = None
    ) -> tuple[int, int]:
        """(nano-USD, tokens) of a finished call: litellm's price of ``usage``, for the model
        that produced ``answer`` (the response or stream; under a chain, maybe not the first)."""
        if not held.cost:  # No cost reserved: no cost cap, or no price.
            return 0, tokens
        real = reported_cost(result)  # litellm's price, for the model that answered
        if real is None:  # Only then find out which model that was (not free: see there).
            served = served_model(answer, self._model, self._members)
            real = real_cost(served, None, usage)
            if (
                real is None
                and prices_of(served) is None
                and self._budget.unknown_price != "refuse"
            ):
                # A model litellm has no price for answered (a chain's unpriced member,
                # reserved at a priced one's worst case): its tokens count, not that worst case.
                warn_unpriced(served)
                return 0, tokens
        return (held.cost if real is None else nanos(real)), tokens

    def _estimated(self, held: _Held, text: str, answer: object) -> tuple[int, int]:
        """(nano-USD, tokens) of a call that reported no usage: its prompt, counted, and the
        text it returned, counted; never above its worst case."""
        prompt = held.prompt
        if prompt is None:
            prompt, _ = self._prompt(held.request, exact=True)
        output = estimate_tokens({"input": text}, self._model, 0) if text else 0
        usage = StreamUsage(prompt, output)
        cost, tokens = self._priced(held, None, usage, prompt + output, answer)
        return min(cost, held.cost), min(tokens, held.tokens)

    def _final(self, held: _Held, result: object) -> tuple[int, int]:
        """(nano-USD, tokens) a finished, non-stream call holds in the end."""
        hidden = read_attribute(result, "_hidden_params")
        cost: object = None
        if isinstance(hidden, dict):
            if hidden.get("cache_hit") is True:  # pyright: ignore[reportUnknownMemberType]
                # A cache's answer (fixedmodel's or litellm's) spent nothing, whatever its usage.
                return 0, 0
            cost = hidden.get("response_cost")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        usage = read_attribute(result, "usage")
        tokens = usage_tokens(usage)
        if tokens is None:
            return self._estimated(held, response_text(result), result)
        if held.cost and isinstance(cost, (int, float)) and not isinstance(cost, bool):
            # litellm's price, for the model that answered (nanos(), inlined: every call).
            return math.ceil(cost * NANOS_PER_USD), tokens
        return self._priced(held, result, usage, tokens, result)

    def _final_of_stream(self, held: _Held, end: StreamEnd, stream: object) -> tuple[int, int]:
        """(nano-USD, tokens) a stream holds when it ends (see the module docstring)."""
        if end.usage is None:
            if end.error is not None and not end.delivered:
                # Failed before its first chunk with content (a role-only opening chunk
                # gives the caller nothing): nothing was delivered.
                return 0, 0
            return self._estimated(held, end.text, stream)
        usage = last_usage(stream)
        return self._priced(
            held, None, usage if usage is not None else end.usage, end.usage.total_tokens, stream
        )

    # Reserving -------------------------------------------------------------------------

    def _may_wait(self, reservation: Reservation, cost: int, tokens: int) -> bool:
        """Whether waiting for calls in flight to settle could let this call through."""
        caps, committed = self._budget._caps, reservation.committed  # pyright: ignore[reportPrivateUsage]
        if caps.requests is not None and committed.requests + 1 > caps.requests:
            return False  # Requests are never given back.
        if not (committed.held_cost or committed.held_tokens):
            return False  # Nothing in flight: only spending fills the cap.
        spent_cost = committed.cost - committed.held_cost
        spent_tokens = committed.tokens - committed.held_tokens
        return (caps.cost is None or spent_cost + cost <= caps.cost) and (
            caps.tokens is None or spent_tokens + tokens <= caps.tokens
        )

    def __repr__(self) -> str:
        return f"with_budget({self._inner!r}, {self._budget!r})"


class _AsyncBudgeted(_Budgeted):
    __slots__ = ()

    async def _reserve(self, request: dict[str, Any]) -> _Held:
        budget = self._budget
        store, key, caps = budget._store, budget._key, budget._caps  # pyright: ignore[reportPrivateUsage]
        worst = self._worst(request, exact=False)
        deadline: float | None = None
        while True:
            seen = budget._settled.generation  # pyright: ignore[reportPrivateUsage]
            reservation_id = unique_id()
            reservation = await store.areserve(key, caps, reservation_id, worst.cost, worst.tokens)
            if not reservation.granted and worst.prompt is None:
                exact = self._worst(request, exact=True)  # Near the cap: count exactly.
                worst, bounded = exact, worst
                if (exact.cost, exact.tokens) != (bounded.cost, bounded.tokens):
                    continue
            if reservation.granted:
                return _Held(reservation_id, reservation, worst, request)
            wait = budget._wait_left(deadline)  # pyright: ignore[reportPrivateUsage]
            if wait <= 0 or not self._may_wait(reservation, worst.cost, worst.tokens):
                raise budget._refusal(reservation, worst.cost, worst.tokens, waited=deadline)  # pyright: ignore[reportPrivateUsage]
            deadline = deadline if deadline is not None else time.monotonic() + wait
            await budget._settled.await_change(seen, min(wait, POLL))  # pyright: ignore[reportPrivateUsage]

    async def _settle(self, held: _Held, cost: int, tokens: int) -> None:
        if not held.take():
            return
        budget = self._budget
        store, key, caps = budget._store, budget._key, budget._caps  # pyright: ignore[reportPrivateUsage]
        try:
            await store.asettle(key, caps, held.reservation_id, cost, tokens)
        finally:
            budget._settled.notify()  # pyright: ignore[reportPrivateUsage]

    def _settle_now(self, held: _Held, cost: int, tokens: int) -> None:
        if not held.take():
            return
        budget = self._budget
        store, key, caps = budget._store, budget._key, budget._caps  # pyright: ignore[reportPrivateUsage]
        try:
            store.settle(key, caps, held.reservation_id, cost, tokens)
        finally:
            budget._settled.notify()  # pyright: ignore[reportPrivateUsage]

    async def __call__(self, **kwargs: Any) -> Any:
        request = self._read(kwargs)
        try:
            held = await self._reserve(request)
        except BaseException:
            _warn_unknown_names(self._inner, kwargs)
            raise
        try:
            result = await self._call(**kwargs)
        except BaseException:
            await self._settle(held, 0, 0)  # Providers do not bill errors.
            raise
        # is_stream_request, inlined: this runs on every call.
        if request.get("stream") is True and isinstance(
            result, litellm_module().CustomStreamWrapper
        ):
            reference = weakref.ref(result)

            def ended(end: StreamEnd) -> None:  # Closed, collected: no loop to await on.
                try:
                    self._settle_now(held, *self._final_of_stream(held, end, reference()))
                except Exception:  # A watcher must not raise into the caller's stream.
                    LOGGER.exception("with_budget: settling a stream failed")

            async def aended(end: StreamEnd) -> None:  # Before the end reaches the caller.
                try:
                    await self._settle(held, *self._final_of_stream(held, end, reference()))
                except Exception:
                    LOGGER.exception("with_budget: settling a stream failed")

            watch_stream(result, ended, awatcher=aended)
            return result
        try:
            final = self._final(held, result)
        except Exception:
            LOGGER.exception("with_budget: pricing an answer failed; it keeps its worst case")
            final = (held.cost, held.tokens)
        await self._settle(held, *final)
        return result


class _SyncBudgeted(_Budgeted):
    __slots__ = ()

    def _reserve(self, request: dict[str, Any]) -> _Held:
        budget = self._budget
        store, key, caps = budget._store, budget._key, budget._caps  # pyright: ignore[reportPrivateUsage]
        worst = self._worst(request, exact=False)
        deadline: float | None = None
        while True:
            seen = budget._settled.generation  # pyright: ignore[reportPrivateUsage]
            reservation_id = unique_id()
            reservation = store.reserve(key, caps, reservation_id, worst.cost, worst.tokens)
            if not reservation.granted and worst.prompt is None:
                exact = self._worst(request, exact=True)  # Near the cap: count exactly.
                worst, bounded = exact, worst
                if (exact.cost, exact.tokens) != (bounded.cost, bounded.tokens):
                    continue
            if reservation.granted:
                return _Held(reservation_id, reservation, worst, request)
            wait = budget._wait_left(deadline)  # pyright: ignore[reportPrivateUsage]
            if wait <= 0 or not self._may_wait(reservation, worst.cost, worst.tokens):
                raise budget._refusal(reservation, worst.cost, worst.tokens, waited=deadline)  # pyright: ignore[reportPrivateUsage]
            deadline = deadline if deadline is not None else time.monotonic() + wait
            budget._settled.wait_change(seen, min(wait, POLL))  # pyright: ignore[reportPrivateUsage]

    def _settle(self, held: _Held, cost: int, tokens: int) -> None:
        if not held.take():
            return
        budget = self._budget
        store, key, caps = budget._store, budget._key, budget._caps  # pyright: ignore[reportPrivateUsage]
        try:
            store.settle(key, caps, held.reservation_id, cost, tokens)
        finally:
            budget._settled.notify()  # pyright: ignore[reportPrivateUsage]

    def __call__(self, **kwargs: Any) -> Any:
        request = self._read(kwargs)
        try:
            held = self._reserve(request)
        except BaseException:
            _warn_unknown_names(self._inner, kwargs)
            raise
        try:
            result = self._call(**kwargs)
        except BaseException:
            self._settle(held, 0, 0)  # Providers do not bill errors.
            raise
        # is_stream_request, inlined: this runs on every call.
        if request.get("stream") is True and isinstance(
            result, litellm_module().CustomStreamWrapper
        ):
            reference = weakref.ref(result)

            def ended(end: StreamEnd) -> None:
                try:
                    self._settle(held, *self._final_of_stream(held, end, reference()))
                except Exception:  # A watcher must not raise into the caller's stream.
                    LOGGER.exception("with_budget: settling a stream failed")

            watch_stream(result, ended)
            return result
        try:
            final = self._final(held, result)
        except Exception:
            LOGGER.exception("with_budget: pricing an answer failed; it keeps its worst case")
            final = (held.cost, held.tokens)
        self._settle(held, *final)
        return result


def _warn_unknown_names(inner: object, kwargs: dict[str, Any]) -> None:
    """Warn about the call's keyword names nobody knows, for a call refused before it was
    sent: reading the request does not warn (the sending call does), and a refused call
    never sends; yet a misspelt ``max_tokens`` is often why the worst case was too high."""
    check: object = getattr(innermost(inner), "_check_names", None)
    if callable(check):
        check(kwargs)


def _bound_outputs(leaf: object) -> tuple[int, int]:
    """The output limit (``max_completion_tokens``/``max_tokens``) and ``n`` a callable binds
    as defaults (-1 where it binds none)."""
    try:
        defaults = request_reader(leaf)({})
    except Exception:  # a callable whose defaults cannot be read binds none we know of
        return -1, -1
    choices = defaults.get("n")
    n = choices if isinstance(choices, int) and not isinstance(choices, bool) else -1
    return requested_output(defaults, -1), n


def _leaf_models(fn: object) -> list[str | None]:
    """The model of every callable ``fn`` may end up calling (None where one has none)."""
    models = [read_attribute(leaf, "model") for leaf in leaves(fn)]
    return [model if isinstance(model, str) else None for model in models]


def _check_budget(budget: object) -> Budget:
    if not isinstance(budget, Budget):
        msg = (
            f"with_budget() takes a Budget, got {type(budget).__name__}; "
            "e.g. with_budget(chat, Budget(max_cost=5.0))"
        )
        raise TypeError(msg)
    return budget


def with_budget(fn: ModelFn, budget: Budget) -> ModelFn:
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
    # Every model the stack may call (a chain's, a balancer's), not only the first.
    unpriced = [m for m in wrapped._unpriced if m is not None]  # pyright: ignore[reportPrivateUsage]
    if checked.max_cost is not None and checked.unknown_price == "refuse" and unpriced:
        msg = (
            f"litellm has no price for model {unpriced[0]!r}, and the budget caps cost with "
            "unknown_price='refuse'; register a price (litellm.register_model) or use "
            "Budget(unknown_price='count_tokens')"
        )
        raise ValueError(msg)
    return cast("ModelFn", wrapped.made_by(with_budget, fn, checked))


def _rebuild_budget(options: dict[str, Any]) -> Budget:
    """Unpickle a budget: the same caps, store and key."""
    return Budget(**options)
