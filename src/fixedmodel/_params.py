"""Typed keyword parameters of the litellm calls that fixedmodel binds.

The Protocols take ``**kwargs: Unpack[...]`` of these TypedDicts, so a checker verifies every
keyword at the call site: a misspelled name, ``model=`` or a value of the wrong type is an
error. Parameters that litellm forwards to a provider but that are not listed here go through
the ``extra_params`` escape hatch.

The drift guard in ``tests/unit/test_signature_drift.py`` fails when the installed litellm
grows a parameter that is neither declared here nor deliberately excluded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, TypeAlias

from typing_extensions import TypedDict

if TYPE_CHECKING:
    import httpx
    from aiohttp import ClientSession
    from pydantic import BaseModel

Message: TypeAlias = Mapping[str, object]
"""One chat message, e.g. ``{"role": "user", "content": "Hi"}``."""

Messages: TypeAlias = Sequence[Message]
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
    ``extra_params``, whose items are merged into the call as top-level keywords.
    """

    # Sampling and output shape.
    temperature: float
    top_p: float
    n: int
    stop: str | Sequence[str]
    max_tokens: int
    max_completion_tokens: int
    presence_penalty: float
    frequency_penalty: float
    logit_bias: Mapping[str, float]
    seed: int
    logprobs: bool
    top_logprobs: int
    reasoning_effort: ReasoningEffort
    verbosity: Literal["low", "medium", "high"]
    thinking: JSONObject
    modalities: Sequence[Literal["text", "audio"]]
    audio: JSONObject
    prediction: JSONObject
    stream_options: JSONObject
    response_format: JSONObject | type[BaseModel]
    enable_json_schema_validation: bool
    # Tools.
    tools: Sequence[JSONObject]
    tool_choice: str | JSONObject
    parallel_tool_calls: bool
    functions: Sequence[JSONObject]
    function_call: str | JSONObject
    web_search_options: JSONObject
    include_server_side_tool_invocations: bool
    # Identity, storage and provider-side caching.
    user: str
    safety_identifier: str
    service_tier: str
    store: bool
    prompt_cache_key: str
    prompt_cache_retention: str
    metadata: JSONObject
    # Transport and credentials.
    api_base: str
    base_url: str
    api_key: str
    api_version: str
    deployment_id: str
    custom_llm_provider: str
    extra_headers: Mapping[str, str]
    extra_body: JSONObject
    timeout: float | httpx.Timeout
    max_retries: int
    num_retries: int
    shared_session: ClientSession
    drop_params: bool
    # Prices for a model litellm's cost map lacks (self-hosted, fine-tuned): litellm then
    # computes the cost directly instead of searching its map on every call.
    input_cost_per_token: float
    output_cost_per_token: float
    # Testing without a provider: litellm answers with this text and sends no request.
    mock_response: str
    # Escape hatch: provider-specific keywords that are not typed above.
    extra_params: JSONObject


class EmbeddingParams(TypedDict, total=False):
    """Optional keyword parameters of a bound embedding call.

    Forwarded to ``litellm.aembedding``/``litellm.embedding`` unchanged, except
    ``extra_params``, whose items are merged into the call as top-level keywords.
    """

    dimensions: int
    encoding_format: Literal["float", "base64"]
    user: str
    api_base: str
    api_key: str
    api_version: str
    api_type: str
    custom_llm_provider: str
    extra_headers: Mapping[str, str]
    timeout: float
    max_retries: int
    caching: bool
    metadata: JSONObject
    mock_response: Sequence[float]
    extra_params: JSONObject
