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
    ],
)
def test_ordinary_parameters_are_not_secret(name: str) -> None:
    assert not is_secret(name)
