"""Which parameter and header names carry credentials.

fixedmodel never shows, logs, caches or puts into an error message the value of a name this
module flags. Names are matched exactly or by suffix, not by a loose pattern such as
"ends in _token", because litellm also takes prompt-template parameters (``bos_token``,
``eos_token``) and prices (``input_cost_per_token``) that are not secrets and do change the
answer. Names ending in ``_key`` or ``-key`` are credentials (``azure_key``, the
``Ocp-Apim-Subscription-Key`` header of Azure API Management, Black Forest Labs' ``x-key``),
except cache keys (``prompt_cache_key``), which are not secret and are sent to the provider.

Sources, reviewed against litellm 1.8x: the parameters of ``litellm.completion`` and
``litellm.embedding`` and of each provider's ``validate_environment`` (the headers it sends):
``Authorization``/``Bearer`` (most providers), ``api-key`` (Azure OpenAI), ``x-api-key``
(Anthropic, several OpenAI-compatible hosts), ``x-goog-api-key`` (Gemini),
``Ocp-Apim-Subscription-Key`` (Azure API Management, Azure AI services), ``xi-api-key``
(ElevenLabs), ``x-key`` (Black Forest Labs), ``X-Subscription-Token`` (Brave),
``Private-Token``/``X-Access-Token``/``X-Vault-Token``, ``Helicone-Auth``, AWS
``x-amz-security-token`` and the ``aws_*`` parameters, ``azure_ad_token_provider`` (a callable
that returns a token: a credential too), ``vertex_credentials``, watsonx ``token``/``apikey``,
OCI ``oci_key``.
"""

from __future__ import annotations

_SECRET_NAMES = frozenset(
    {
        # Parameters of litellm and its providers.
        "api_key",
        "apikey",
        "token",
        "access_token",
        "api_token",
        "auth_token",
        "bearer_token",
        "id_token",
        "refresh_token",
        "session_token",
        "azure_ad_token",
        "azure_ad_token_provider",
        "watsonx_token",
        "oidc_token",
        "bearer_auth",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_web_identity_token",
        "vertex_credentials",
        "client_secret",
        "oci_key",
        "private_key",
        "password",
        # Header names.
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "x-key",
        "cookie",
        "set-cookie",
        "helicone-auth",
    }
)
_SECRET_SUFFIXES = (
    "_key",
    "-key",
    "apikey",
    "_secret",
    "_password",
    "_private_key",
    "_access_token",
    "_auth_token",
    "_session_token",
    "_ad_token",
    "_token_provider",
    "-token",
    "-auth",
    # camelCase names as some SDKs spell them (lowered): accessToken, sessionToken...
    "accesstoken",
    "authtoken",
    "sessiontoken",
    "refreshtoken",
    "securitytoken",
    "bearertoken",
)
# Cache keys end in "key" but are sent to the provider and are no credential.
_NOT_SECRET_SUFFIXES = ("cache_key", "cache-key")
_SECRET_PARTS = ("secret", "password", "credential")


def is_secret(name: str) -> bool:
    """Tell whether a parameter or header name carries a credential.

    ``api_key``, ``aws_secret_access_key``, watsonx's ``token``, an ``Authorization`` or
    ``x-api-key`` or ``Ocp-Apim-Subscription-Key`` header, an ``azure_ad_token_provider``
    are; ``max_tokens``, ``bos_token`` or ``prompt_cache_key`` are not.
    """
    lowered = name.lower()
    if lowered in _SECRET_NAMES:
        return True
    if lowered.endswith(_SECRET_SUFFIXES):
        return not lowered.endswith(_NOT_SECRET_SUFFIXES)
    return any(part in lowered for part in _SECRET_PARTS)
