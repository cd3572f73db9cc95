"""Offline demo of with_fallbacks: a rate-limited primary, a fallback that answers.

No request leaves the machine: litellm's ``mock_response`` raises a real
``litellm.RateLimitError`` for the primary and answers for the fallback.
"""

from __future__ import annotations

import asyncio

from fixedmodel import (
    CallRecord,
    FallbackPolicy,
    bind_acompletion,
    errors,
    fallback_causes,
    responses,
    with_fallbacks,
    with_metrics,
)

MESSAGES = [{"role": "user", "content": "Say something short."}]


class PrintRecords:
    """A metrics sink that prints what routing did for each call."""

    def record(self, call: CallRecord) -> None:
        print(
            f"  served_by={call.served_by} fallbacks_tried={call.fallbacks_tried} "
            f"failures={list(call.route_failures)}"
        )


async def main() -> None:
    async with (
        bind_acompletion("openai/gpt-4o", mock_response="litellm.RateLimitError") as primary,
        bind_acompletion("openai/gpt-4o-mini", mock_response="Fallback here.") as backup,
        bind_acompletion("openai/o3", mock_response="litellm.InternalServerError") as broken,
    ):
        chat = with_metrics(with_fallbacks(primary, backup), PrintRecords())
        response = await chat(messages=MESSAGES)
        print("answer:", responses.text(response))

        # Content-policy errors do not fall back unless you say so.
        print(repr(FallbackPolicy()))

        # When every callable fails, the last error is raised and carries the others.
        try:
            await with_fallbacks(primary, broken)(messages=MESSAGES)
        except errors.InternalServerError as error:
            print("all failed:", [type(cause).__name__ for cause in fallback_causes(error)])


if __name__ == "__main__":
    asyncio.run(main())
