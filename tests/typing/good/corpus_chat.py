"""Chat call sites in the shapes public projects write them, ported to a bound callable.

Each function is one shape found in coding agents, RAG and eval frameworks or SDK docs
(written here in our own words): the argument expressions and annotations a migrating user
keeps. Both checkers must accept every line, with the exact types asserted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from openai.types.chat import (
    ChatCompletionMessage,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)
from pydantic import BaseModel
from typing_extensions import assert_type

from fixedmodel import (
    AFixedModelCompletion,
    ChatCompletionMessageCustomToolCall,
    ChatCompletionMessageToolCall,
    Choices,
    ClosableAFixedModelCompletion,
    CompletionParams,
    CustomStreamWrapper,
    Message,
    ModelResponse,
    Usage,
    bind_acompletion,
    bind_completion,
    errors,
    responses,
    with_retries,
)

USER = {"role": "user", "content": "What is the weather in Oslo?"}


@dataclass
class LLMSettings:
    """An agent's settings object: every field optional, forwarded as is."""

    model: str = "openai/gpt-4o-mini"
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] | None = None
    timeout: float | None = None
    api_key: str | None = None
    api_base: str | None = None
    api_version: str | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    user: str | None = None
    stream: bool = False
    extra: dict[str, Any] = field(default_factory=dict[str, Any])


# 1. Optional settings forwarded one by one (None means "not given").
async def forward_optional_settings(settings: LLMSettings, chat: AFixedModelCompletion) -> str:
    response = await chat(
        messages=[USER],
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        api_key=settings.api_key,
    )
    assert_type(response, ModelResponse)
    return responses.text(response)


# 2. Eleven optional settings forwarded in one call (once made mypy give up on the overloads).
async def forward_eleven_settings(settings: LLMSettings) -> ModelResponse:
    chat = bind_acompletion(settings.model)
    response = await chat(
        messages=[USER],
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_tokens=settings.max_tokens,
        seed=settings.seed,
        stop=settings.stop,
        timeout=settings.timeout,
        api_key=settings.api_key,
        api_base=settings.api_base,
        api_version=settings.api_version,
        reasoning_effort=settings.reasoning_effort,
        user=settings.user,
    )
    assert_type(response, ModelResponse)
    return response


# 3. The tool-calling loop: the model's reply (a litellm Message) goes back into the history.
async def tool_calling_loop(chat: AFixedModelCompletion, tools: list[dict[str, Any]]) -> str:
    messages: list[dict[str, Any] | Message] = [USER]
    for _ in range(5):
        response = await chat(messages=messages, tools=tools, tool_choice="auto")
        reply = response.choices[0].message
        assert_type(reply, Message)
        messages.append(reply)
        calls = responses.tool_calls(response)
        if not calls:
            return responses.text(response)
        for call in calls:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "12 C"})
    return ""


# 4. The same loop over litellm's own tool-call objects.
async def tool_loop_with_litellm_objects(chat: AFixedModelCompletion) -> list[str]:
    response = await chat(messages=[USER])
    choice = response.choices[0]
    assert_type(choice, Choices)
    raw_calls = choice.message.tool_calls or []
    assert_type(
        raw_calls, list[ChatCompletionMessageToolCall | ChatCompletionMessageCustomToolCall]
    )
    return [call.id for call in raw_calls if isinstance(call, ChatCompletionMessageToolCall)]


# 5. openai-python's TypedDicts for the history and the tools.
async def openai_typed_history(
    chat: AFixedModelCompletion,
    history: list[ChatCompletionMessageParam],
    tools: list[ChatCompletionToolParam],
) -> ModelResponse:
    history.append({"role": "user", "content": "and tomorrow?"})
    return await chat(messages=history, tools=tools, parallel_tool_calls=False)


# 6. openai-python's pydantic message models kept from an earlier SDK call.
async def openai_message_models(
    chat: AFixedModelCompletion, earlier: ChatCompletionMessage
) -> ModelResponse:
    return await chat(messages=[USER, earlier, {"role": "user", "content": "go on"}])


# 7. Azure OpenAI credentials read from the environment (each may be missing: str | None).
def azure_from_environment() -> ClosableAFixedModelCompletion:
    chat = bind_acompletion(
        "azure/my-deployment",
        api_key=os.environ.get("AZURE_API_KEY"),
        api_base=os.environ.get("AZURE_API_BASE"),
        api_version=os.environ.get("AZURE_API_VERSION", "2024-10-21"),
        azure_ad_token=os.environ.get("AZURE_AD_TOKEN"),
        base_model="gpt-4o-mini",
    )
    return with_retries(chat)


# 8. A local OpenAI-compatible server with a provider keyword through the escape hatch.
def local_server(base_url: str | None) -> ModelResponse:
    chat = bind_completion("openai/llama3", api_base=base_url or "http://127.0.0.1:11434/v1")
    response = chat(
        messages=[USER], api_key="unused", extra_params={"keep_alive": "5m", "top_k": 40}
    )
    assert_type(response, ModelResponse)
    return response


class Forecast(BaseModel):
    city: str
    celsius: float


# 9. A pydantic model as response_format, parsed back into the model.
async def structured_output(chat: AFixedModelCompletion) -> Forecast:
    response = await chat(messages=[USER], response_format=Forecast, temperature=0)
    return responses.parse_json(response, Forecast)


# 10. A JSON schema dict as response_format.
async def json_schema_output(chat: AFixedModelCompletion, schema: dict[str, Any]) -> object:
    response = await chat(
        messages=[USER],
        response_format={"type": "json_schema", "json_schema": {"name": "f", "schema": schema}},
    )
    return responses.parse_json(response, Forecast).model_dump()


# 11. Several choices (n > 1), read one by one.
async def several_choices(chat: AFixedModelCompletion, n: int | None) -> list[str]:
    response = await chat(messages=[USER], n=n or 3, temperature=1.0)
    return [responses.text(response, index=i) for i in range(len(response.choices))]


# 11b. Token bias keyed by token id (ints, as tokenizers return them) or by its string.
async def biased_tokens(chat: AFixedModelCompletion, banned: list[int]) -> ModelResponse:
    by_id = {token: -100.0 for token in banned}
    await chat(messages=[USER], logit_bias={"50256": -100})
    return await chat(messages=[USER], logit_bias=by_id, max_completion_tokens=None)


# 12. Multimodal content parts: text and an image URL in one user message.
async def multimodal(chat: AFixedModelCompletion, image_url: str) -> str:
    content: list[dict[str, Any]] = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": image_url, "detail": "high"}},
    ]
    response = await chat(messages=[{"role": "user", "content": content}], max_tokens=300)
    return responses.text(response)


# 13. litellm-level keywords read from **kwargs: fallbacks, its cache, reasoning merge.
async def litellm_level_keywords(chat: AFixedModelCompletion) -> ModelResponse:
    return await chat(
        messages=[USER],
        fallbacks=["openai/gpt-4o", {"model": "anthropic/claude-3-5-haiku"}],
        cache={"no-cache": True},
        merge_reasoning_content_in_choices=True,
        metadata={"run": "eval-7"},
        num_retries=0,
        tags=["eval"],
    )


# 14. Provider exceptions caught through fixedmodel, without importing litellm.
async def catch_provider_errors(chat: AFixedModelCompletion) -> str | None:
    try:
        return responses.text(await chat(messages=[USER]))
    except errors.ContextWindowExceededError:
        return None
    except (errors.RateLimitError, errors.APIConnectionError) as exc:
        assert_type(exc, errors.RateLimitError | errors.APIConnectionError)
        raise


# 15. Usage accounting with litellm's Usage class in an annotation.
def add_usage(total: dict[str, int], response: ModelResponse, seen: list[Usage]) -> None:
    used = responses.usage(response)
    assert_type(used.total_tokens, int)
    total["tokens"] = total.get("tokens", 0) + used.total_tokens
    del seen


# 16. A middleware stack that is closed at the end and tells its model.
async def closable_stack() -> str:
    async with with_retries(bind_acompletion("openai/gpt-4o-mini")) as chat:
        assert_type(chat, ClosableAFixedModelCompletion)
        assert_type(chat.model, str)
        assert_type(await chat(messages=[USER], stream=True), CustomStreamWrapper)
        return chat.model


# 17. A keyword set built step by step, then merged with options of the same type.
async def keywords_step_by_step(
    chat: AFixedModelCompletion, settings: LLMSettings, overrides: CompletionParams
) -> ModelResponse:
    params: CompletionParams = {"temperature": 0.2}
    if settings.max_tokens is not None:
        params["max_tokens"] = settings.max_tokens
    if settings.stop:
        params["stop"] = settings.stop
    params.update(overrides)
    # Opaque user options (dict[str, Any]) travel through the escape hatch, unchecked.
    params["extra_params"] = settings.extra
    return await chat(messages=[USER], **params)
