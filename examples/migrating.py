"""The five call-site patterns of docs/migrating.md, ported to a bound callable (run offline).

Checked by mypy --strict and pyright strict (tests/typing) and run by the example tests;
litellm's ``mock_response`` answers without a provider.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fixedmodel import CompletionParams, Message, bind_acompletion, responses

USER = {"role": "user", "content": "Hi"}


class Settings:
    temperature: float | None = None
    api_key: str | None = None
    max_tokens: int | None = 64


def user_params(options: dict[str, Any]) -> CompletionParams:
    """Typed keywords from loosely typed user options; the rest rides in extra_params."""
    # --8<-- [start:update]
    params: CompletionParams = {}
    rest = dict(options)
    if isinstance(temperature := rest.pop("temperature", None), (int, float)):
        params["temperature"] = float(temperature)
    if isinstance(max_tokens := rest.pop("max_tokens", None), int):
        params["max_tokens"] = max_tokens
    params["extra_params"] = rest  # untyped keywords, forwarded as they are
    # --8<-- [end:update]
    return params


async def main() -> None:
    settings = Settings()
    chat = bind_acompletion("openai/gpt-4o-mini", temperature=0.2, mock_response="ok")
    # --8<-- [start:optional]
    response = await chat(
        messages=[USER],
        temperature=settings.temperature,  # None: the bound 0.2 applies
        api_key=settings.api_key,  # None: the bound key (or litellm's environment lookup)
    )
    # --8<-- [end:optional]
    # --8<-- [start:messages]
    messages: list[dict[str, Any] | Message] = [USER]
    messages.append(response.choices[0].message)  # fixedmodel.Message is litellm's class
    messages.append({"role": "user", "content": "And then?"})
    response = await chat(messages=messages)
    # --8<-- [end:messages]
    # --8<-- [start:keywords]
    response = await chat(
        messages=[USER],
        fallbacks=["openai/gpt-4o"],  # typed: litellm reads it from **kwargs
        merge_reasoning_content_in_choices=True,
        extra_params={"top_k": 40},  # any keyword fixedmodel does not type
    )
    # --8<-- [end:keywords]
    # --8<-- [start:splat]
    params: CompletionParams = {"temperature": 0.2}
    if settings.max_tokens is not None:
        params["max_tokens"] = settings.max_tokens
    response = await chat(messages=[USER], **params)  # still a ModelResponse
    # --8<-- [end:splat]
    # --8<-- [start:update-call]
    params = {"max_tokens": 64}
    params.update(user_params({"temperature": 0.7, "top_k": 20}))  # CompletionParams
    response = await chat(messages=[USER], **params)
    # --8<-- [end:update-call]
    print(responses.text(response))
    await chat.aclose()


asyncio.run(main())
