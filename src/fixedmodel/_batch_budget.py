"""A ``with_budget`` layer's reservations for a provider batch job, at the batch price.

Each line the job will send reserves its worst case first, as a live call does (its prompt
bounded, plus ``max_tokens`` or the model's output window per choice), priced at the
provider's batch rates (litellm's ``input_cost_per_token_batches`` and
``output_cost_per_token_batches``; the live rates where litellm lists none). A line the
budget refuses fails with ``BudgetExceededError`` and is not uploaded. When the answers come
back each reservation is settled to the answer's batch cost and tokens (a failed line to
nothing). A line already running at the provider when a job resumes reserves nothing and
is settled to what it cost. Reservations of a run that is interrupted are given back; the
run that collects the job charges what the lines cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from fixedmodel._ids import unique_id
from fixedmodel._litellm import litellm_module
from fixedmodel._pydantic import read_attribute
from fixedmodel.routing._pricing import nanos, usage_tokens

if TYPE_CHECKING:
    from fixedmodel.routing.budget import _AsyncBudgeted  # pyright: ignore[reportPrivateUsage]

__all__ = ["BatchBudget"]


class BatchBudget:
    """Reserve and settle a provider batch job's lines on a budgeted layer's store.

    Args:
        layer: The ``with_budget`` layer of the stack.
        provider_model: The provider's model name (litellm's cost map key).
        provider: litellm's provider name.
    """

    def __init__(self, layer: _AsyncBudgeted, provider_model: str, provider: str) -> None:
        self._layer = layer
        budget = layer.budget
        self._budget = budget
        self._store = budget._store  # pyright: ignore[reportPrivateUsage]
        self._key = budget._key  # pyright: ignore[reportPrivateUsage]
        self._caps = budget._caps  # pyright: ignore[reportPrivateUsage]
        self._rates = _batch_rates(provider_model, provider)
        self._held: dict[str, str] = {}  # custom_id -> reservation id

    def worst_case(self, kwargs: dict[str, Any]) -> tuple[int, int]:
        """A line's worst case: (nano-USD at the batch price, tokens)."""
        layer = self._layer
        request = layer._read(kwargs)  # pyright: ignore[reportPrivateUsage]
        _, outputs = layer._outputs(request)  # pyright: ignore[reportPrivateUsage]
        prompt, _ = layer._prompt(request, exact=False)  # pyright: ignore[reportPrivateUsage]
        if self._caps.cost is None or self._rates is None:
            return 0, prompt + outputs
        return nanos(prompt * self._rates[0] + outputs * self._rates[1]), prompt + outputs

    async def reserve(self, custom_id: str, cost: int, tokens: int) -> BaseException | None:
        """Hold a line's worst case; the refusal (``BudgetExceededError``) when it does not fit."""
        reservation_id = unique_id()
        reservation = await self._store.areserve(
            self._key, self._caps, reservation_id, cost, tokens
        )
        if not reservation.granted:
            return self._budget._refusal(reservation, cost, tokens)  # pyright: ignore[reportPrivateUsage]
        self._held[custom_id] = reservation_id
        return None

    async def settle(self, custom_id: str, response: object | None) -> None:
        """Settle a line: the answer's batch cost and tokens, or nothing for a failure."""
        reservation_id = self._held.pop(custom_id, None)
        if reservation_id is None and response is None:
            return  # Refused, or settled already: nothing is held.
        cost = tokens = 0
        if response is not None:
            hidden = read_attribute(response, "_hidden_params")
            found: object = (
                cast("dict[str, object]", hidden).get("response_cost")
                if isinstance(hidden, dict)
                else None
            )
            if isinstance(found, (int, float)) and self._caps.cost is not None:
                cost = nanos(float(found))
            tokens = usage_tokens(read_attribute(response, "usage")) or 0
        if reservation_id is None:  # Running at the provider before this run: charge it.
            reservation_id = unique_id()
            await self._store.areserve(self._key, self._caps, reservation_id, 0, 0)
        try:
            await self._store.asettle(self._key, self._caps, reservation_id, cost, tokens)
        finally:
            self._budget._settled.notify()  # pyright: ignore[reportPrivateUsage]

    async def release(self) -> None:
        """Give back every reservation not settled (the run stops before the answers)."""
        held, self._held = self._held, {}
        for reservation_id in held.values():
            await self._store.asettle(self._key, self._caps, reservation_id, 0, 0)
        self._budget._settled.notify()  # pyright: ignore[reportPrivateUsage]


def _batch_rates(model: str, provider: str) -> tuple[float, float] | None:
    """USD per input and output token at the batch price (the live price if none is listed)."""
    try:
        # Any: litellm's model info is a loose TypedDict.
        info: Any = litellm_module().get_model_info(model=model, custom_llm_provider=provider)
    except Exception:
        return None
    rates: list[float] = []
    for side in ("input", "output"):
        batch = info.get(f"{side}_cost_per_token_batches")
        live = info.get(f"{side}_cost_per_token")
        rate = batch if isinstance(batch, (int, float)) else live
        if not isinstance(rate, (int, float)):
            return None
        rates.append(float(rate))
    return rates[0], rates[1]
