"""How the middleware reads litellm's exceptions: retryable or not, and Retry-After.

Classification goes by class and HTTP status, never by class-name strings, so that litellm
subclasses (``ContextWindowExceededError`` is a ``BadRequestError``) fall on the right side.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from fixedmodel._litellm import litellm_module

# Statuses worth another attempt: request timeout, conflict/lock, rate limit, server errors.
_RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """Tell whether ``exc`` is a provider failure that can succeed when tried again.

    Rate limits, timeouts, connection failures and 5xx answers are; bad requests,
    authentication and permission errors, missing models, context-window and
    content-policy errors are not.
    """
    litellm = litellm_module()
    never: tuple[type[BaseException], ...] = (
        litellm.BadRequestError,
        litellm.AuthenticationError,
        litellm.PermissionDeniedError,
        litellm.NotFoundError,
        litellm.UnprocessableEntityError,
    )
    if isinstance(exc, never) or _is_local_mistake(exc):
        return False
    always: tuple[type[BaseException], ...] = (
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.APIConnectionError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.BadGatewayError,
    )
    if isinstance(exc, always):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status in _RETRYABLE_STATUSES


_PROGRAMMING_ERRORS = (AttributeError, TypeError, KeyError, IndexError, NameError)


def _is_local_mistake(exc: BaseException) -> bool:
    """Tell an error raised in our own process before any request from a network failure.

    litellm wraps a bad argument that breaks its request building (``messages="hi"`` gives
    an ``AttributeError`` inside litellm) as ``APIConnectionError``; retrying that can never
    help. A real connection failure carries an ``OSError`` or an HTTP-client error in its
    chain instead.
    """
    if not isinstance(exc, litellm_module().APIConnectionError):
        return False
    seen: set[int] = set()
    cause: BaseException | None = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) or "httpx" in type(cause).__module__:
            return False
        if "aiohttp" in type(cause).__module__ or "openai" in type(cause).__module__:
            return False
        if isinstance(cause, _PROGRAMMING_ERRORS):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def is_rate_limit(exc: BaseException) -> bool:
    """Tell whether ``exc`` is the provider saying "too many requests" (HTTP 429)."""
    return isinstance(exc, litellm_module().RateLimitError) or (
        getattr(exc, "status_code", None) == 429
    )


def _headers(exc: BaseException) -> Mapping[str, str] | None:
    for source in (getattr(exc, "litellm_response_headers", None), _response_headers(exc)):
        if isinstance(source, Mapping):
            headers: Mapping[str, str] = source  # pyright: ignore[reportUnknownVariableType]
            return headers
    return None


def _response_headers(exc: BaseException) -> object:
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None) if response is not None else None


def retry_after(exc: BaseException, *, now: float | None = None) -> float | None:
    """Return the wait, in seconds, that the provider asked for with ``exc``, if any.

    Reads ``retry-after-ms`` (milliseconds) first, then ``retry-after`` as seconds or as an
    HTTP date. Negative or unreadable values count as no advice.
    """
    headers = _headers(exc)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = parsed.timestamp() - (time.time() if now is None else now)
    return seconds if seconds >= 0 else None
