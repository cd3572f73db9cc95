"""Offline demo of with_load_balancing: one deployment fails, cools down, and is skipped.

No request leaves the machine: litellm's ``mock_response`` makes the ``east`` deployment
raise a real ``litellm.InternalServerError`` and the others answer.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from fixedmodel import (
    CallRecord,
    CooldownPolicy,
    bind_acompletion,
    with_load_balancing,
    with_metrics,
)

MESSAGES = [{"role": "user", "content": "Say something short."}]


class CountServers:
    """A metrics sink that counts which deployment served each call."""

    def __init__(self) -> None:
        self.served: Counter[str | None] = Counter()
        self.failed: Counter[str] = Counter()

    def record(self, call: CallRecord) -> None:
        self.served[call.served_by] += 1
        self.failed.update(name for name, _ in call.route_failures)


async def main() -> None:
    model = "azure/gpt-4o"
    async with (
        bind_acompletion(model, mock_response="litellm.InternalServerError") as east,
        bind_acompletion(model, mock_response="West answers.") as west,
        bind_acompletion(model, mock_response="North answers.") as north,
    ):
        # Three failures in a row cool a deployment down for 30 s; then one probe.
        policy = CooldownPolicy(failures=3, cooldown=30.0)
        chat = with_load_balancing(
            {"east": east, "west": west, "north": north}, "round_robin", policy
        )
        counts = CountServers()
        observed = with_metrics(chat, counts)
        for _ in range(30):
            await observed(messages=MESSAGES)
        print("served:", dict(counts.served))
        print("east failed", counts.failed["east"], "times, then was skipped while cooling down")


if __name__ == "__main__":
    asyncio.run(main())
