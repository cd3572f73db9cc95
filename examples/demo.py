"""Offline demo: bind a model, make a normal and a streaming call, print both.

litellm's ``mock_response`` answers without contacting any provider, so this runs anywhere.
Point it at a real provider by removing ``mock_response`` and setting ``api_key`` (see the
README).
"""

from __future__ import annotations

import asyncio

from fixedmodel import bind_acompletion, bind_completion, responses


async def main() -> None:
    chat = bind_acompletion(
        "openai/gpt-4o-mini",
        temperature=0.2,
        mock_response="Bound once, checked everywhere.",
    )
    print(repr(chat))

    response = await chat(messages=[{"role": "user", "content": "Say something short."}])
    print("normal call:   ", responses.text(response))
    print("token usage:   ", responses.usage(response))

    stream = await chat(messages=[{"role": "user", "content": "Now stream it."}], stream=True)
    pieces = [piece async for piece in responses.atext_deltas(stream)]
    print("streaming call:", "|".join(pieces))
    await chat.aclose()

    with bind_completion("openai/gpt-4o-mini", mock_response="Sync works too.") as sync_chat:
        print(
            "sync call:     ",
            responses.text(sync_chat(messages=[{"role": "user", "content": "Hi"}])),
        )


if __name__ == "__main__":
    asyncio.run(main())
