"""Offline demo of with_retries: a flaky provider is retried, a hopeless one is given up on.

No request leaves the machine: litellm's ``mock_response`` answers (or raises a real
``litellm.RateLimitError``) without contacting a provider, and ``Flaky`` stands in for a
provider that is overloaded for a moment.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fixedmodel import AFixedModelCompletion, Messages, bind_acompletion, responses
from fixedmodel.errors import RateLimitError, ServiceUnavailableError
from fixedmodel.middleware.retries import RetryPolicy, with_retries

MESSAGES = [{"role": "user", "content": "Say something short."}]


class Flaky:
    """Fails the first ``failures`` calls with HTTP 503, then lets ``chat`` answer."""

    def __init__(self, chat: AFixedModelCompletion, failures: int) -> None:
        self.chat = chat
        self.failures = failures
        self.calls = 0

    async def __call__(self, *, messages: Messages, **kwargs: Any) -> Any:
        # Any: a stand-in for litellm, whose keywords and results the Protocols type.
        self.calls += 1
        if self.calls <= self.failures:
            raise ServiceUnavailableError(
                message="overloaded, try again", llm_provider="openai", model="gpt-4o-mini"
            )
        return await self.chat(messages=messages)


async def main() -> None:
    # Short waits so that the demo is quick; RetryPolicy() has defaults for real use.
    policy = RetryPolicy(max_attempts=3, initial_wait=0.1, max_wait=1.0)

    async with bind_acompletion("openai/gpt-4o-mini", mock_response="Third time lucky.") as chat:
        flaky = Flaky(chat, failures=2)
        response = await with_retries(flaky, policy)(messages=MESSAGES)
        print(f"answer after {flaky.calls} attempts:", responses.text(response))

    async with bind_acompletion(
        "openai/gpt-4o-mini", mock_response="litellm.RateLimitError"
    ) as always_busy:
        retried = with_retries(always_busy, policy)
        print(repr(retried))
        try:
            await retried(messages=MESSAGES)
        except RateLimitError as error:  # litellm's own class, not a wrapper
            print("gave up with", type(error).__name__)
            for note in getattr(error, "__notes__", []):
                print("  note:", note)


if __name__ == "__main__":
    asyncio.run(main())
