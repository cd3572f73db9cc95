"""Wrong variants of the corpus call sites: both checkers must report each marked line.

The corpus (``tests/typing/good/corpus_*.py``) accepts ``None``, message models and
litellm-level keywords; these lines check that the widening let nothing wrong through.
"""

from __future__ import annotations

from fixedmodel import (
    AFixedModelCompletion,
    ModelResponse,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    errors,
    responses,
    with_retries,
)

USER = {"role": "user", "content": "Hi"}


async def misuse(chat: AFixedModelCompletion, response: ModelResponse) -> None:
    await chat(messages=["Hi"])  # expect-error
    await chat(messages=[42])  # expect-error
    await chat(messages=42)  # expect-error
    await chat(messages=[USER], temperature="0.2")  # expect-error
    await chat(messages=[USER], fallbacks=42)  # expect-error
    await chat(messages=[USER], cache=True)  # expect-error
    await chat(messages=[USER], response_format="json")  # expect-error
    await chat(messages=[USER], reasoning_effort="extreme")  # expect-error
    await chat(messages=[USER], extra_params=["top_k", 40])  # expect-error
    await chat(messages=[USER], stream=None, n="2")  # expect-error
    responses.chunk_usage(response)  # expect-error
    embed = bind_aembedding("openai/text-embedding-3-small")
    await embed(input=["a"], dimensions="8")  # expect-error
    await embed(input=[USER])  # expect-error


async def misuse_stacks() -> None:
    stack = with_retries(bind_acompletion("openai/gpt-4o-mini"))
    stack.close()  # expect-error
    sync_stack = with_retries(bind_completion("openai/gpt-4o-mini"))
    async with sync_stack:  # expect-error
        pass


def misuse_errors() -> None:
    try:
        print("call")
    except errors.RateLimitErr:  # expect-error
        print("slow down")
