"""Which parameter and header names carry credentials.

fixedmodel never shows, logs, caches or puts into an error message the value of a name this
module flags. Names are matched exactly or by suffix, not by a loose pattern such as
"ends in _token", because litellm also takes prompt-template parameters (``bos_token``,
``eos_token``) and prices (``input_cost_per_token``) that are not secrets and do change the
answer.
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
        "cookie",
    }
)
_SECRET_SUFFIXES = (
    "_api_key",
    "-api-key",
    "_apikey",
    "_secret",
    "_password",
    "_private_key",
    "_access_token",
    "_auth_token",
    "_session_token",
    "_ad_token",
    "-token",
)
_SECRET_PARTS = ("secret", "password", "credential")


def is_secret(name: str) -> bool:
    """Tell whether a parameter or header name carries a credential.

    ``api_key``, ``aws_secret_access_key``, watsonx's ``token``, an ``Authorization`` or
    ``x-api-key`` header are; ``max_tokens``, ``bos_token`` or ``prompt_cache_key`` are not.
    """
    lowered = name.lower()
    if lowered in _SECRET_NAMES or lowered.endswith(_SECRET_SUFFIXES):
        return True
    return any(part in lowered for part in _SECRET_PARTS)
