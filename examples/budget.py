"""Offline demo of with_budget: calls are refused before sending once the cap is near.

No request leaves the machine: litellm's ``mock_response`` answers with a usage of 10 prompt
and 20 completion tokens, which litellm prices at gpt-4o-mini's rates.
"""

from __future__ import annotations

import asyncio

from fixedmodel import Budget, bind_acompletion, errors, with_budget

MESSAGES = [{"role": "user", "content": "Say something short."}]


async def main() -> None:
    # A tenth of a cent per day, shared by every callable wrapped with this Budget.
    budget = Budget(max_cost=0.001, period=86400)
    async with bind_acompletion("openai/gpt-4o-mini", mock_response="Short.") as chat:
        spend = with_budget(chat, budget)
        made = 0
        try:
            while True:
                # The worst case (max_tokens at the output price) is reserved, then settled
                # to what litellm prices the answer at.
                await spend(messages=MESSAGES, max_tokens=200)
                made += 1
        except errors.BudgetExceededError as error:
            print(f"refused after {made} calls:", str(error).split(":", 1)[-1].strip()[:90])
    status = budget.status()
    print(f"spent ${status.cost:.6f}, ${status.cost_left:.6f} left, resets in", end=" ")
    print(f"{status.resets_in:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
