"""Typed keyword parameters of the litellm calls that fixedmodel binds.

The Protocols take ``**kwargs: Unpack[...]`` of these TypedDicts, so a checker verifies every
keyword at the call site: a misspelled name, ``model=`` or a value of the wrong type is an
error. Every optional keyword also takes ``None``, as in litellm's own signature, and at run
time ``None`` means "not given": a bound default applies (see ``_bind._Bound._arguments``).
Keywords that litellm reads but that are not listed here (provider-specific ones such as
Anthropic's ``top_k``, price overrides, logging-integration credentials) go through the
``extra_params`` escape hatch.

The drift guard in ``tests/unit/test_signature_drift.py`` fails when the installed litellm
grows a parameter, in its signature or in the lists of keywords it reads from ``**kwargs``,
that is neither declared here nor deliberately left to ``extra_params``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, TypeAlias

from typing_extensions import TypedDict

if TYPE_CHECKING:
    import httpx
    from aiohttp import ClientSession
    from pydantic import BaseModel

MessageParam: TypeAlias = "Mapping[str, object] | BaseModel"
"""One chat message as litellm accepts it.

A mapping such as ``{"role": "user", "content": "Hi"}`` (litellm's and openai-python's message
TypedDicts are mappings), or a pydantic model: litellm's ``Message`` (the reply you append in
a tool-calling loop), openai-python's ``ChatCompletionMessage``, or a model of your own;
litellm dumps models to dicts before sending.
"""

Messages: TypeAlias = "Sequence[MessageParam]"
"""The ``messages`` argument: a sequence of chat messages."""

JSONObject: TypeAlias = Mapping[str, object]
"""A JSON object as a mapping (tools, response formats, provider options)."""

EmbeddingInput: TypeAlias = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]
"""The ``input`` argument of an embedding call: text(s) or token ids."""

ReasoningEffort: TypeAlias = Literal[
    "none", "minimal", "low", "medium", "high", "xhigh", "max", "default"
]


class CompletionParams(TypedDict, total=False):
    """Optional keyword parameters of a bound chat completion call.

    Every key is forwarded to ``litellm.acompletion``/``litellm.completion`` unchanged, except
    ``extra_params``, whose items are merged into the call as top-level keywords. Every key
    takes ``None``, which means "not given": the bound default applies, or litellm's own.

    Being a ``TypedDict``, it is also the checked way to build a keyword set step by step::

        params: CompletionParams = {"temperature": 0.2}
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        response = await chat(messages=messages, **params)
    """

    # Sampling and output shape.
    temperature: float | None
    top_p: float | None
    n: int | None
    stop: str | Sequence[str] | None
    max_tokens: int | None
    max_completion_tokens: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    logit_bias: Mapping[str, float] | Mapping[int, float] | None
    seed: int | None
    logprobs: bool | None
    top_logprobs: int | None
    reasoning_effort: ReasoningEffort | None
    verbosity: Literal["low", "medium", "high"] | None
    thinking: JSONObject | None
    modalities: Sequence[Literal["text", "audio"]] | None
    audio: JSONObject | None
    prediction: JSONObject | None
    stream_options: JSONObject | None
    response_format: JSONObject | type[BaseModel] | None
    enable_json_schema_validation: bool | None
    merge_reasoning_content_in_choices: bool | None
    # Tools.
    tools: Sequence[JSONObject] | None
    tool_choice: str | JSONObject | None
    parallel_tool_calls: bool | None
    functions: Sequence[JSONObject] | None
    function_call: str | JSONObject | None
    web_search_options: JSONObject | None
    include_server_side_tool_invocations: bool | None
    # Identity, storage, tracing and provider-side caching.
    user: str | None
    safety_identifier: str | None
    service_tier: str | None
    store: bool | None
    prompt_cache_key: str | None
    prompt_cache_retention: str | None
    metadata: JSONObject | None
    tags: Sequence[str] | None
    litellm_session_id: str | None
    litellm_trace_id: str | None
    # Transport and credentials.
    api_base: str | None
    base_url: str | None
    api_key: str | None
    api_version: str | None
    azure_ad_token: str | None
    organization: str | None
    deployment_id: str | None
    custom_llm_provider: str | None
    base_model: str | None
    extra_headers: Mapping[str, str] | None
    headers: Mapping[str, str] | None
    extra_body: JSONObject | None
    timeout: float | httpx.Timeout | None
    stream_timeout: float | None
    ssl_verify: bool | str | None
    max_retries: int | None
    num_retries: int | None
    shared_session: ClientSession | None
    drop_params: bool | None
    additional_drop_params: Sequence[str] | None
    allowed_openai_params: Sequence[str] | None
    # litellm's own per-call fallbacks and response cache (litellm.cache must be set).
    fallbacks: Sequence[str | JSONObject] | None
    context_window_fallback_dict: Mapping[str, str] | None
    cache: JSONObject | None
    caching: bool | None
    # Prices for a model litellm's cost map lacks (self-hosted, fine-tuned): litellm then
    # computes the cost directly instead of searching its map on every call.
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    # Testing without a provider: litellm answers with this text and sends no request.
    mock_response: str | None
    mock_timeout: bool | None
    # Escape hatch: any keyword litellm reads that is not typed above.
    extra_params: JSONObject | None


class EmbeddingParams(TypedDict, total=False):
    """Optional keyword parameters of a bound embedding call.

    Forwarded to ``litellm.aembedding``/``litellm.embedding`` unchanged, except
    ``extra_params``, whose items are merged into the call as top-level keywords. Every key
    takes ``None``, which means "not given".
    """

    dimensions: int | None
    encoding_format: Literal["float", "base64"] | None
    user: str | None
    api_base: str | None
    api_key: str | None
    api_version: str | None
    api_type: str | None
    azure_ad_token: str | None
    custom_llm_provider: str | None
    extra_headers: Mapping[str, str] | None
    extra_body: JSONObject | None
    timeout: float | None
    max_retries: int | None
    drop_params: bool | None
    caching: bool | None
    cache: JSONObject | None
    metadata: JSONObject | None
    tags: Sequence[str] | None
    input_cost_per_token: float | None
    mock_response: Sequence[float] | None
    # Escape hatch: any keyword litellm reads that is not typed above.
    extra_params: JSONObject | None
