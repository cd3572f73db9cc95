"""Call sites that MUST be rejected by mypy --strict and pyright.

Each line ending in ``# expect-error`` must be reported by both checkers at that very line;
no other line may be reported. ``tests/typing/test_type_checkers.py`` enforces this.
"""

from __future__ import annotations

from fixedmodel import (
    AFixedModelCompletion,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
)

MESSAGES = [{"role": "user", "content": "Hi"}]


def takes_async(chat: AFixedModelCompletion) -> None: ...


async def misuse() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini")
    sync_chat = bind_completion("openai/gpt-4o-mini")
    embed = bind_aembedding("openai/text-embedding-3-small")

    await chat(messages=MESSAGES, model="openai/gpt-4o")  # expect-error
    await chat(messages=MESSAGES, temprature=0.2)  # expect-error
    async for _chunk in await chat(messages=MESSAGES):  # expect-error
        pass
    stream = await chat(messages=MESSAGES, stream=True)
    print(stream.choices)  # expect-error
    await chat(messages="Hi")  # expect-error
    await chat(messages=MESSAGES, stream="yes")  # expect-error
    await chat(messages=MESSAGES, seed="42")  # expect-error
    await chat(messages=MESSAGES, max_tokens=1.5)  # expect-error
    await chat(messages=MESSAGES, tools="search")  # expect-error
    await sync_chat(messages=MESSAGES)  # expect-error
    takes_async(sync_chat)  # expect-error
    takes_async(embed)  # expect-error
    await chat(MESSAGES)  # expect-error
    await embed(input=["a"], temperature=0.1)  # expect-error
    bind_acompletion("openai/gpt-4o-mini", model="openai/gpt-4o")  # expect-error
    bind_acompletion("openai/gpt-4o-mini", temprature=0.1)  # expect-error


async def misuse_through_protocol(chat: AFixedModelCompletion) -> None:
    await chat(messages=MESSAGES, model="openai/gpt-4o")  # expect-error
    await chat(messages=MESSAGES, max_tokns=5)  # expect-error
    (await chat(messages=MESSAGES)).choices[0].message.content.upper()  # expect-error
