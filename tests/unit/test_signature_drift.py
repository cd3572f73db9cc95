"""Guard against litellm growing parameters that the Protocols do not know about.

litellm takes keywords two ways: in the signature of ``acompletion``/``completion``/
``embedding``, and out of ``**kwargs``, where it keeps a list of the names it owns
(``litellm.types.utils.all_litellm_params``: ``fallbacks``, ``cache``,
``merge_reasoning_content_in_choices``, prices, logging-integration credentials, ...). Every
name of both must be typed in ``CompletionParams``/``EmbeddingParams`` or be left to
``extra_params`` on purpose, in one of the groups below with the reason.

When this fails after a litellm upgrade, type the named parameter (if users set it per call)
or add it to the group it belongs to.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from fixedmodel import CompletionParams, EmbeddingParams
from fixedmodel._litellm import litellm_module

COMPLETION_EXCLUDED = {
    "model": "bound once by the factory",
    "model_list": "a Router-style list of deployments contradicts one bound model",
}
EMBEDDING_EXCLUDED = {
    "model": "bound once by the factory",
    "litellm_call_id": "litellm-internal call bookkeeping",
    "logger_fn": "litellm-internal logging hook",
}


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Names from litellm's list of keywords it reads out of **kwargs that fixedmodel leaves to
# extra_params, by reason. Prices and logging-integration credentials are whole litellm
# models (CustomPricingLiteLLMParams, StandardCallbackDynamicParams), matched below.
LEFT_TO_EXTRA_PARAMS: dict[str, frozenset[str]] = {
    "litellm-internal bookkeeping and call plumbing": _names(
        """
        acompletion aembedding aimg_generation allm_passthrough_route async_call
        atext_completion attempted_targets client complete_response
        completion_call_id fallback_depth id litellm_call_id litellm_logging_obj
        litellm_request_debug litellm_trusted_callback_vars
        log_client_error_tracebacks logger_fn model_alias_map model_config no-log
        preset_cache_key proxy_server_request rust secret_fields self
        stream_response text_completion use_client use_in_pass_through verbose
        """
    ),
    "Router and proxy configuration: a bound object has one model, no deployments": _names(
        """
        adaptive_router_config adaptive_router_default_model
        allow_client_keepalive_override allowed_model_region auto_router_config
        auto_router_config_path auto_router_default_model
        auto_router_embedding_model auto_router_max_input_chars
        auto_router_model_compression auto_router_routing_compression
        budget_duration caching_groups client_side_timeout complexity_router_config
        complexity_router_default_model configurable_clientside_auth_params
        cooldown_time daily_reset_time data_residency default_api_key_rpm_limit
        default_api_key_tpm_limit disable_add_transform_inline_image_block
        enable_tag_filtering fastest_response guardrails itpm keepalive_seconds
        kubernetes_pod_discovery litellm_credential_name max_agentic_loops
        max_budget max_fallbacks max_file_size_mb max_parallel_requests
        model_file_id_mapping model_info model_list order otpm
        provider_affinity_header quality_router_config quality_router_default_model
        responses_api_version retry_policy retry_strategy routing_strategy rpd rpm
        search_tool_name silent_model stream_timeout_by_service_tier
        switchyard_router_config tag_regex timeout_by_service_tier tpd tpm
        use_chat_completions_api use_litellm_proxy weight
        """
    ),
    "provider-specific credentials and settings": _names(
        """
        anthropic_disable_workload_identity_federation anthropic_federation_rule_id
        anthropic_federation_workspace_id anthropic_identity_source
        anthropic_identity_token anthropic_identity_token_file
        anthropic_issuer_audience anthropic_issuer_signing_key_ref
        anthropic_issuer_subject anthropic_issuer_ttl_seconds anthropic_issuer_url
        anthropic_keycloak_auth_method anthropic_keycloak_client_id
        anthropic_keycloak_client_secret_ref anthropic_keycloak_scope
        anthropic_keycloak_token_url anthropic_organization_id
        anthropic_service_account_id aws_batch_role_arn
        aws_bedrock_control_plane_endpoint azure azure_ad_token_provider
        azure_password azure_scope azure_username bedrock_tags chatgpt_auth_file
        client_id client_secret enable_prompt_caching fireworks_forward_user_id
        github_copilot_auth_type github_copilot_host github_copilot_user_session
        hf_model_name openai_identity_provider_id openai_identity_token_file
        openai_service_account_id provider_specific_header region_name
        s3_access_key_id s3_bucket_name s3_bucket_owner s3_encryption_key_id
        s3_endpoint_url s3_output_bucket_name s3_region_name s3_secret_access_key
        tenant_id thought_signature_in_tool_call_id token_exchange_audience
        token_exchange_endpoint token_exchange_profile token_exchange_scope
        use_xai_oauth
        """
    ),
    "prompt templates and prompt management for non-chat models and integrations": _names(
        """
        assistant_continue_message bos_token custom_prompt_dict
        ensure_alternating_roles eos_token final_prompt_value initial_prompt_value
        litellm_system_prompt prompt_environment prompt_id prompt_label
        prompt_variables prompt_version roles supports_system_message
        user_continue_message
        """
    ),
    "older or proxy-side spellings of typed keywords (timeout, metadata, cache)": _names(
        """
        cache_key cost_per_query force_timeout litellm_metadata request_timeout
        stream_chunk_size ttl
        """
    ),
}

# Typed keywords that litellm reads from **kwargs without listing them in all_litellm_params
# (litellm/main.py: kwargs.get(...)).
READ_BUT_UNLISTED = frozenset(
    {"additional_drop_params", "azure_ad_token", "drop_params", "extra_body", "organization"}
)


def _litellm_parameters(function: Callable[..., Any]) -> set[str]:
    return {
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
    }


def _listed_by_litellm() -> set[str]:
    """Keywords litellm reads out of **kwargs, as it lists them."""
    from litellm.types import utils

    return {name for name in utils.all_litellm_params if not name.startswith("_")}


def _left_by_model() -> set[str]:
    """Whole litellm models left to extra_params: per-call prices and callback credentials."""
    from litellm.types import utils

    prices = set(utils.CustomPricingLiteLLMParams.model_fields)
    callback_credentials = set(utils.StandardCallbackDynamicParams.__annotations__)
    return prices | callback_credentials


def _left_to_extra_params() -> set[str]:
    return set().union(*LEFT_TO_EXTRA_PARAMS.values())


def _completion_declared() -> set[str]:
    return {"messages", "stream", *CompletionParams.__annotations__}


def _embedding_declared() -> set[str]:
    return {"input", *EmbeddingParams.__annotations__}


@pytest.mark.parametrize("name", ["acompletion", "completion"])
def test_completion_protocols_cover_every_litellm_parameter(name: str) -> None:
    accepted = _litellm_parameters(getattr(litellm_module(), name))
    undeclared = sorted(accepted - _completion_declared() - set(COMPLETION_EXCLUDED))
    assert not undeclared, f"litellm.{name} accepts parameters the Protocol lacks: {undeclared}"


def test_embedding_protocols_cover_every_litellm_parameter() -> None:
    # litellm.aembedding is declared as (*args, **kwargs) and forwards to embedding.
    accepted = _litellm_parameters(litellm_module().embedding)
    undeclared = sorted(accepted - _embedding_declared() - set(EMBEDDING_EXCLUDED))
    assert not undeclared, f"litellm.embedding accepts parameters the Protocol lacks: {undeclared}"


def test_every_keyword_litellm_reads_from_kwargs_is_typed_or_left_on_purpose() -> None:
    litellm_module()
    unreviewed = sorted(
        _listed_by_litellm() - _completion_declared() - _left_by_model() - _left_to_extra_params()
    )
    assert not unreviewed, (
        f"litellm reads keywords from **kwargs that are neither typed nor left to "
        f"extra_params on purpose: {unreviewed}"
    )


def test_keywords_users_set_per_call_are_typed() -> None:
    # The ones the issue found missing in real call sites.
    for name in ("fallbacks", "cache", "merge_reasoning_content_in_choices", "num_retries"):
        assert name in CompletionParams.__annotations__, name


# Typed keywords that litellm started to read after the floor of the declared range: the
# suite runs at the floor too, where litellm forwards them to the provider untouched.
NEWER_THAN_THE_FLOOR = {"prompt_cache_retention": "1.110.2", "ssl_verify": "1.110.2"}


def test_typed_keywords_are_ones_litellm_reads() -> None:
    from importlib.metadata import version

    from packaging.version import Version

    litellm = litellm_module()
    known = (
        _litellm_parameters(litellm.acompletion)
        | _litellm_parameters(litellm.embedding)
        | _listed_by_litellm()
        | READ_BUT_UNLISTED
        | {"extra_params"}
    )
    installed = Version(version("litellm"))
    known |= {k for k, since in NEWER_THAN_THE_FLOOR.items() if installed < Version(since)}
    typed = set(CompletionParams.__annotations__) | set(EmbeddingParams.__annotations__)
    assert typed <= known, f"typed but unknown to litellm: {sorted(typed - known)}"


def test_a_typed_keyword_is_not_also_left_to_extra_params() -> None:
    typed = set(CompletionParams.__annotations__) | set(EmbeddingParams.__annotations__)
    assert not typed & _left_to_extra_params()


def test_exclusions_are_still_litellm_parameters() -> None:
    # A stale exclusion would hide nothing and mislead the reader.
    litellm = litellm_module()
    assert set(COMPLETION_EXCLUDED) <= _litellm_parameters(litellm.acompletion)
    assert set(EMBEDDING_EXCLUDED) <= _litellm_parameters(litellm.embedding)


def test_the_guard_notices_a_missing_parameter() -> None:
    def future_acompletion(model: str, messages: list[object], new_knob: int = 0) -> None: ...

    accepted = _litellm_parameters(future_acompletion)
    assert accepted - _completion_declared() - set(COMPLETION_EXCLUDED) == {"new_knob"}


def test_the_guard_notices_a_new_keyword_read_from_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    from litellm.types import utils

    monkeypatch.setattr(utils, "all_litellm_params", [*utils.all_litellm_params, "new_knob"])
    with pytest.raises(AssertionError, match="new_knob"):
        test_every_keyword_litellm_reads_from_kwargs_is_typed_or_left_on_purpose()
