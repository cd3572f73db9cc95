"""The five call-site patterns of docs/migrating.md as they look with raw litellm (run offline).

litellm's ``mock_response`` answers without a provider. These run, but a checker can say
little about them: the keywords are ``**kwargs`` and the result is a union or ``Any``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

# Raw litellm downloads its price list when imported unless this is set (fixedmodel sets it
# before its own lazy import); set here so that the "before" code runs offline too.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

MODEL = "openai/gpt-4o-mini"
USER = {"role": "user", "content": "Hi"}


class Settings:
    temperature: float | None = None
    api_key: str | None = None
    max_tokens: int | None = 64


async def main() -> None:
    settings = Settings()
    # --8<-- [start:optional]
    response = await litellm.acompletion(
        model=MODEL,
        messages=[USER],
        temperature=settings.temperature,  # float | None
        api_key=settings.api_key,  # str | None
        mock_response="optional settings",
    )
    # --8<-- [end:optional]
    assert isinstance(response, litellm.ModelResponse)  # not a stream: stream was not passed
    # --8<-- [start:messages]
    messages: list[dict[str, Any] | litellm.Message] = [USER]
    messages.append(response.choices[0].message)  # the model's reply, a litellm Message
    messages.append({"role": "user", "content": "And then?"})
    response = await litellm.acompletion(model=MODEL, messages=messages, mock_response="ok")
    # --8<-- [end:messages]
    # --8<-- [start:keywords]
    response = await litellm.acompletion(
        model=MODEL,
        messages=[USER],
        fallbacks=["openai/gpt-4o"],
        merge_reasoning_content_in_choices=True,
        top_k=40,  # Anthropic/Vertex only
        mock_response="litellm-level keywords",
    )
    # --8<-- [end:keywords]
    # --8<-- [start:splat]
    kwargs: dict[str, Any] = {"model": MODEL, "messages": [USER], "temperature": 0.2}
    if settings.max_tokens is not None:
        kwargs["max_tokens"] = settings.max_tokens
    response = await litellm.acompletion(**kwargs, mock_response="splatted")
    # --8<-- [end:splat]
    # --8<-- [start:update]
    user_options: dict[str, Any] = {"temperature": 0.7, "top_k": 20}
    kwargs = {"model": MODEL, "messages": [USER], "max_tokens": 64}
    kwargs.update(user_options)
    response = await litellm.acompletion(**kwargs, mock_response="merged")
    # --8<-- [end:update]
    assert isinstance(response, litellm.ModelResponse)
    print(response.choices[0].message.content)


asyncio.run(main())
