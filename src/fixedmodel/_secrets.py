"""Which parameter names hold credentials, and how to hide their values."""

from __future__ import annotations

from collections.abc import Mapping

REDACTED = "***"

_SECRET_NAMES = frozenset(
    {
        "api_key",
        "azure_ad_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "vertex_credentials",
        "client_secret",
        "password",
        "authorization",
        "x-api-key",
        "api-key",
        "proxy-authorization",
        "cookie",
    }
)
_SECRET_PARTS = ("secret", "password", "credential", "token_key", "access_key")


def is_secret(name: str) -> bool:
    """Tell whether a parameter or header name carries a credential.

    Counts such as ``max_tokens`` are not secrets; names such as ``api_key``,
    ``aws_secret_access_key`` or an ``Authorization`` header are.
    """
    lowered = name.lower()
    if lowered in _SECRET_NAMES or lowered.endswith(("_api_key", "_token", "-token")):
        return True
    return any(part in lowered for part in _SECRET_PARTS)


def redact(params: Mapping[str, object]) -> dict[str, object]:
    """Return a copy of ``params`` with credential values (also in nested headers) hidden."""
    clean: dict[str, object] = {}
    for name, value in params.items():
        if is_secret(name):
            clean[name] = REDACTED
        elif isinstance(value, Mapping) and name in ("extra_headers", "headers", "extra_params"):
            nested: Mapping[str, object] = value  # pyright: ignore[reportUnknownVariableType]
            clean[name] = redact(nested)
        else:
            clean[name] = value
    return clean
