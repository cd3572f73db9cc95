"""The one gate that decides which names hold credentials."""

from __future__ import annotations

import pytest

from fixedmodel._secrets import is_secret


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "apikey",
        "token",
        "oci_key",
        "azure_ad_token",
        "aws_secret_access_key",
        "aws_session_token",
        "vertex_credentials",
        "client_secret",
        "Authorization",
        "x-api-key",
        "x-goog-api-key",
        "openrouter_api_key",
        # Issue 10, item 18: credential headers and parameters of litellm's providers.
        "Ocp-Apim-Subscription-Key",
        "ocp-apim-subscription-key",
        "x-key",
        "xi-api-key",
        "X-Subscription-Token",
        "Private-Token",
        "X-Access-Token",
        "X-Vault-Token",
        "Helicone-Auth",
        "x-amz-security-token",
        "Proxy-Authorization",
        "set-cookie",
        "azure_ad_token_provider",
        "aws_credential_provider",
        "watsonx_token",
        "azure_key",
        "azure_password",
        "accessToken",
        "sessionToken",
        "apiKey",
        "DD-API-KEY",
    ],
)
def test_credentials_are_secret(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize(
    "name",
    [
        "max_tokens",
        "max_completion_tokens",
        "bos_token",
        "eos_token",
        "input_cost_per_token",
        "prompt_cache_key",
        "api_base",
        "temperature",
        "anthropic-beta",
        "cache_key",
        "anthropic-version",
        "x-goog-user-project",
        "OpenAI-Organization",
        "OpenAI-Project",
        "custom_llm_provider",
        "tokenizer",
        "keyword",
        "top_logprobs",
    ],
)
def test_ordinary_parameters_are_not_secret(name: str) -> None:
    assert not is_secret(name)
