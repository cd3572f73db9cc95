"""How the middleware reads litellm's exceptions: retryable or not, and Retry-After.

Classification goes by class and HTTP status, never by class-name strings, so that litellm
subclasses (``ContextWindowExceededError`` is a ``BadRequestError``) fall on the right side.
Two kinds of failure are never retried whatever litellm labels them: an account out of
credit or quota (:func:`is_quota_exhausted`), and a failure that happened in this process
before any request was sent (:func:`never_sent`).
"""

from __future__ import annotations

import asyncio
import email.message
import email.utils
import functools
import json
import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import cast

from fixedmodel._litellm import litellm_module

# 4xx statuses worth another attempt: request timeout, conflict/lock, rate limit. Every
# 5xx is too (RFC 9110 §15.6: "the server is aware that it has erred or is incapable of
# performing the requested method"; providers and proxies add their own: Cloudflare's
# 520-524, Anthropic's 529 overloaded_error, 598/599 network timeouts), except
# _PERMANENT_SERVER_STATUSES.
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 409, 429})

# 5xx statuses that say the same request will fail again, whatever the wait:
# - 501 Not Implemented: the server does not support the functionality the request needs
#   (RFC 9110 §15.6.2);
# - 505 HTTP Version Not Supported: the server refuses the request's major HTTP version
#   (RFC 9110 §15.6.6);
# - 506 Variant Also Negotiates: a configuration error of the server's content
#   negotiation (RFC 2295 §8.1);
# - 508 Loop Detected: the server ended the operation on an infinite loop (RFC 5842 §7.2);
# - 510 Not Extended: the request lacks an extension the server requires (RFC 2774 §7);
# - 511 Network Authentication Required: a network (captive portal) wants the client to
#   log in before any request passes (RFC 6585 §6); only a person can do that.
# 507 Insufficient Storage stays retryable: RFC 4918 §11.5 calls it temporary.
_PERMANENT_SERVER_STATUSES = frozenset({501, 505, 506, 508, 510, 511})


def is_unsupported_here(exc: BaseException) -> bool:
    """Tell whether ``exc`` is a 5xx saying this server cannot serve the request at all.

    Those statuses (501, 505, 506, 508, 510, 511; see ``_PERMANENT_SERVER_STATUSES``) are
    not retried: the same server fails the same way. Another deployment or provider may
    serve the request, so fallbacks and load balancing may still move on.
    """
    return status_of(exc) in _PERMANENT_SERVER_STATUSES


def status_of(exc: BaseException) -> int | None:
    """The HTTP status a provider answered with, as ``exc`` carries it.

    Read from ``exc.status_code`` (litellm's and openai's errors, hand-written ones), else
    from ``exc.response.status_code`` (``httpx.HTTPStatusError``, ``requests.HTTPError``),
    else from aiohttp's ``ClientResponseError.status`` or the standard library's
    ``urllib.error.HTTPError.status``; a numeric string counts as its
    number. None when it carries none in 100-599, and for
    ``litellm.BudgetExceededError``: a refusal in this process before any request, whose
    ``status_code`` litellm makes up (429 in 1.100, so read as a rate limit it would be
    retried and cool a deployment; 422 in later releases).
    """
    status = _as_status(getattr(exc, "status_code", None))
    if status is None:
        status = _as_status(getattr(getattr(exc, "response", None), "status_code", None))
    if status is None and _top_module(exc) in ("aiohttp", "urllib"):
        # aiohttp's ClientResponseError and urllib's HTTPError keep it in ``status``.
        status = _as_status(getattr(exc, "status", None))
    if status is None:
        return None
    return None if isinstance(exc, litellm_module().BudgetExceededError) else status


def _as_status(value: object) -> int | None:
    """``value`` as an HTTP status (an int, or a string of digits, in 100-599), else None."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if 100 <= value <= 599 else None


def is_denied(exc: BaseException) -> bool:
    """Tell whether ``exc`` is the provider refusing this caller: HTTP 401 or 403.

    Decided by class (``AuthenticationError``, ``PermissionDeniedError``) and by status:
    litellm raises a plain ``APIError`` with ``status_code=403`` for some OpenAI-compatible
    servers (vLLM, proxies), and an ``AuthenticationError`` is not always what a 401 becomes.
    """
    return isinstance(
        exc, _litellm_classes("AuthenticationError", "PermissionDeniedError")
    ) or status_of(exc) in (401, 403)


def is_not_found(exc: BaseException) -> bool:
    """Tell whether ``exc`` says the model or route does not exist there: HTTP 404.

    By class (``NotFoundError``) and by status, as :func:`is_denied`.
    """
    return isinstance(exc, _litellm_classes("NotFoundError")) or status_of(exc) == 404


def is_route_failure(exc: BaseException) -> bool:
    """Tell whether ``exc`` says this provider or deployment cannot serve now, another may.

    The one rule fallbacks and load balancing share (the latter cools such a deployment
    down): what :func:`is_retryable` retries (429, 408, 409, 5xx, timeouts, connection
    failures), the 5xx that say "not on this server" (:func:`is_unsupported_here`), a
    refused key or permission (:func:`is_denied`: 401/403, by class or status), and an
    account out of credit or quota (:func:`is_quota_exhausted`: 402, ``insufficient_quota``),
    since another deployment or provider has its own account. Never a failure in this
    process before any request (:func:`never_sent`), nor a bad request (400, 404, 422).
    """
    if never_sent(exc):
        return False
    if is_retryable(exc) or is_unsupported_here(exc) or is_denied(exc):
        return True
    return is_quota_exhausted(exc)


def _retryable_status(status: int) -> bool:
    if 500 <= status <= 599:
        return status not in _PERMANENT_SERVER_STATUSES
    return status in _RETRYABLE_CLIENT_STATUSES


@functools.cache
def _litellm_classes(*names: str) -> tuple[type[BaseException], ...]:
    """The litellm exception classes of these names that the installed litellm has.

    Looked up one by one: older litellm releases lack some (1.80.0 has no
    ``PermissionDeniedError``), and a missing class must not turn every error into an
    ``AttributeError``. Looked up once per set of names: every failed call asks.
    """
    litellm = litellm_module()
    found: list[type[BaseException]] = []
    for name in names:
        cls: object = getattr(litellm, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def is_retryable(exc: BaseException) -> bool:
    """Tell whether ``exc`` is a provider failure that can succeed when tried again.

    Rate limits, timeouts, connection failures and 5xx answers are (except the 5xx that
    say the request itself cannot be served: 501, 505, 506, 508, 510, 511); bad requests,
    authentication and permission errors, missing models, context-window and
    content-policy errors are not, and neither are an exhausted quota or credit
    (:func:`is_quota_exhausted`) nor a failure before any request was sent
    (:func:`never_sent`), whatever litellm labels them.
    """
    never = _litellm_classes(
        "BadRequestError",
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "UnprocessableEntityError",
    )
    if isinstance(exc, never) or never_sent(exc) or is_quota_exhausted(exc):
        return False
    status = status_of(exc)
    if status in _PERMANENT_SERVER_STATUSES:
        return False
    always = _litellm_classes(
        "RateLimitError",
        "Timeout",
        "APIConnectionError",
        "InternalServerError",
        "ServiceUnavailableError",
        "BadGatewayError",
    )
    if isinstance(exc, always):
        return True
    if status is None:  # No answer: a timeout or a dropped connection, unless wrapped.
        return _is_transport_failure(exc)
    return _retryable_status(status)


def _is_transport_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a timeout or a connection failure as an HTTP client or the socket
    layer raises it, unwrapped: what a hand-written callable raises where litellm would
    raise ``Timeout`` or ``APIConnectionError`` (``httpx.ConnectError``, ``TimeoutError``,
    the openai SDK's ``APITimeoutError``, aiohttp's, requests' and urllib3's connection
    errors)."""
    if isinstance(exc, TimeoutError | ConnectionError | asyncio.TimeoutError):
        return True
    # A name that does not resolve, a TLS session cut short: httpx raises ConnectError.
    if isinstance(exc, socket.gaierror | ssl.SSLError):
        return True
    module = _top_module(exc)
    if module == "http":  # http.client: a body cut short or a status line that is no HTTP's,
        import http.client  # what httpx raises RemoteProtocolError for

        return isinstance(exc, http.client.IncompleteRead | http.client.BadStatusLine)
    if module == "urllib":  # URLError (not an HTTPError: that one has a status): its reason
        reason: object = getattr(exc, "reason", None)
        return isinstance(reason, BaseException) and _is_transport_failure(reason)
    if module == "httpx":
        import httpx

        return isinstance(
            exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
        )
    if module == "openai":
        import openai

        return isinstance(exc, openai.APIConnectionError)  # APITimeoutError too
    if module == "aiohttp":
        import aiohttp

        return isinstance(exc, aiohttp.ClientConnectionError)  # ServerTimeoutError too
    if module == "requests":
        try:
            import requests
        except ImportError:  # pragma: no cover - an exception of it without it
            return False
        return isinstance(exc, requests.ConnectionError | requests.Timeout)
    if module == "urllib3":  # Its own classes: none is a requests or builtin one.
        try:
            from urllib3 import exceptions as urllib3_errors
        except ImportError:  # pragma: no cover - an exception of it without it
            return False
        if isinstance(exc, urllib3_errors.MaxRetryError):  # Retries spent: judged by why.
            reason = exc.reason
            return reason is not None and _is_transport_failure(reason)
        return isinstance(
            exc,
            urllib3_errors.TimeoutError  # NewConnectionError, NameResolutionError too
            | urllib3_errors.ProtocolError  # "Connection aborted."
            | urllib3_errors.ProxyError
            | urllib3_errors.SSLError  # as ssl.SSLError (httpx: ConnectError)
            | urllib3_errors.IncompleteRead,  # as http.client's (httpx: RemoteProtocolError)
        )
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes and contexts, outermost first, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _top_module(error: BaseException) -> str:
    return type(error).__module__.split(".", 1)[0]


# Packages whose exceptions mean an HTTP exchange was attempted or made.
_WIRE_PACKAGES = frozenset(
    {"httpx", "httpcore", "h11", "h2", "aiohttp", "openai", "requests", "urllib3", "http"}
)


def _raised_before_sending(error: BaseException) -> bool:
    """Whether ``error`` is of a kind raised while the request is still being built.

    - a lone surrogate or other text that cannot be encoded (``UnicodeEncodeError``: the
      answer's decoding would raise ``UnicodeDecodeError``);
    - a programming error (``TypeError``, ``AttributeError``, ``KeyError``, ...), e.g. litellm
      failing on ``messages="hi"``;
    - the openai SDK's bare ``OpenAIError``, which it raises only while configuring a client
      (missing API key); every failure of a request is an ``openai.APIError`` subclass;
    - an invalid URL or request refused by the HTTP client before connecting (httpx's
      ``InvalidURL``, ``UnsupportedProtocol``, ``LocalProtocolError``; aiohttp's
      ``InvalidURL``);
    - any other ``ValueError`` (aiohttp's "Cannot combine AUTHORIZATION header with AUTH
      argument or credentials encoded in URL" for ``http://user:pass@host``), except a
      JSON or text decoding error or a validation error, which come from reading an answer.
    """
    if isinstance(error, UnicodeEncodeError | TypeError | AttributeError | KeyError):
        return True
    if isinstance(error, IndexError | NameError):
        return True
    module = _top_module(error)
    if module == "openai":
        import openai

        return type(error) is openai.OpenAIError
    if module in ("httpx", "aiohttp"):
        return _is_client_side_http_error(error)
    if not isinstance(error, ValueError) or isinstance(error, ssl.SSLError):
        # ssl.SSLCertVerificationError is a ValueError too, raised by the TLS handshake with
        # the server: a transport failure, as ssl.SSLError and httpx's ConnectError are.
        return False
    read_errors: tuple[type[BaseException], ...] = (json.JSONDecodeError, UnicodeDecodeError)
    return not isinstance(error, read_errors) and module not in ("pydantic", "pydantic_core")


def _is_client_side_http_error(error: BaseException) -> bool:
    local: list[type[BaseException]] = []
    try:
        import httpx

        local += [httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError]
    except ImportError:  # pragma: no cover - litellm depends on httpx
        pass
    try:
        import aiohttp

        local.append(aiohttp.InvalidURL)
    except ImportError:  # pragma: no cover - litellm depends on aiohttp
        pass
    return isinstance(error, tuple(local))


def _is_wire_error(error: BaseException) -> bool:
    """Whether ``error`` shows that an HTTP exchange was attempted or made.

    The openai SDK's ``APIConnectionError`` is no such evidence by itself: the SDK wraps
    whatever its HTTP client raised in it, a ``ValueError`` about the URL included (openai
    2.x). It counts only when nothing lies under it to judge by.
    """
    if _raised_before_sending(error):
        return False
    if _top_module(error) == "openai":
        import openai

        if isinstance(error, openai.APIConnectionError):
            return (error.__cause__ or error.__context__) is None
    return isinstance(error, OSError | TimeoutError) or _top_module(error) in _WIRE_PACKAGES


def never_sent(exc: BaseException) -> bool:
    """Tell whether ``exc`` failed in this process before any request reached the wire.

    litellm labels such failures ``InternalServerError`` or ``APIConnectionError`` (a
    missing API key, a lone surrogate in a message, credentials in ``api_base``); trying
    again sends nothing and fails the same way. Decided from the exception chain under
    litellm's own exceptions, by type: no HTTP-client or socket error in it, and a root
    cause of a kind raised while the request is built (see ``_raised_before_sending``).
    Without such evidence the answer is False, so a real server failure stays retryable.
    """
    below = [e for e in _chain(exc) if _top_module(e) != "litellm"]
    if not below or any(_is_wire_error(error) for error in below):
        return False
    if not any(_raised_before_sending(error) for error in below):
        return False
    # A KeyError of litellm reading a 200 that lacks a field is no failure before sending.
    return not any(_raised_reading_an_answer(error) for error in below)


# litellm's functions that turn a provider's answer into its response object: an error
# raised inside one came after the request was sent and answered ({"choices": [{}]}).
_READING_AN_ANSWER = frozenset({"convert_to_model_response_object", "transform_response"})
# litellm's module reading a stream's chunks (CustomStreamWrapper): an error raised in it,
# such as an AttributeError on a chunk without "choices", came from a provider's answer.
_READING_A_STREAM = "streaming_handler.py"


def _raised_reading_an_answer(error: BaseException) -> bool:
    """Whether ``error`` was raised in litellm while it read a provider's answer."""
    frames = error.__traceback__
    while frames is not None:
        code = frames.tb_frame.f_code
        if "litellm" in code.co_filename and (
            code.co_name in _READING_AN_ANSWER or code.co_filename.endswith(_READING_A_STREAM)
        ):
            return True
        frames = frames.tb_next
    return False


# A 429 (or 403) that means "no credit or quota left", not "too many requests now".
_QUOTA_CODES = frozenset({"insufficient_quota"})


def is_quota_exhausted(exc: BaseException) -> bool:
    """Tell whether ``exc`` says the account is out of credit or quota, not just busy.

    Waiting does not help such an error, so it is raised at once, like a 401:

    - OpenAI: HTTP 429 with error ``code``/``type`` ``insufficient_quota`` ("You exceeded
      your current quota, please check your plan and billing details"), as opposed to
      ``rate_limit_exceeded``; see https://platform.openai.com/docs/guides/error-codes.
      OpenAI-compatible servers (vLLM, LiteLLM proxy, Azure OpenAI) send the same body.
    - HTTP 402 Payment Required, used by OpenRouter ("insufficient credits",
      https://openrouter.ai/docs/api-reference/errors) and DeepSeek ("Insufficient
      Balance", https://api-docs.deepseek.com/quick_start/error_codes).
    - Gemini and Vertex AI: ``RESOURCE_EXHAUSTED`` (429) is a rate limit, retried, unless
      its ``google.rpc.QuotaFailure`` details name a per-day quota, which only a new day
      refills (https://ai.google.dev/gemini-api/docs/rate-limits,
      https://cloud.google.com/apis/design/errors#error_details).
    - Anthropic reports a credit balance too low as HTTP 400 ``invalid_request_error``
      (https://docs.anthropic.com/en/api/errors): a ``BadRequestError``, never retried.
    - Azure OpenAI's 429 "exceeded token rate limit of your current pricing tier" is a true
      rate limit with a ``Retry-After``, so it stays retryable; Azure billing and disabled
      subscription failures are 401/403 and are not retried.

    The error body is read from the exception (``body``, the HTTP response, or the JSON
    litellm quotes in its message); wording of messages is never matched.
    """
    status = status_of(exc)
    if status == 402:
        return True
    if status not in (None, 403, 429):
        return False
    error = _error_object(exc)
    if error is None:
        return False
    for field in ("code", "type"):
        value = error.get(field)
        if isinstance(value, str) and value.lower() in _QUOTA_CODES:
            return True
    return error.get("status") == "RESOURCE_EXHAUSTED" and _per_day_quota(error)


def _per_day_quota(error: Mapping[str, object]) -> bool:
    details = error.get("details")
    if not isinstance(details, list):
        return False
    for detail in details:  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(detail, Mapping):
            continue
        violations: object = detail.get("violations")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        if not isinstance(violations, list):
            continue
        for violation in violations:  # pyright: ignore[reportUnknownVariableType]
            if not isinstance(violation, Mapping):
                continue
            for key in ("quotaId", "quotaMetric"):
                value: object = violation.get(key)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
                if isinstance(value, str) and "perday" in value.lower().replace("_", ""):
                    return True
    return False


def _error_object(exc: BaseException) -> Mapping[str, object] | None:
    """The provider's error object (``{"error": {...}}``'s inner part), where one is found."""
    for payload in _payloads(exc):
        inner: object = payload.get("error", payload)
        if isinstance(inner, Mapping):
            return inner  # pyright: ignore[reportUnknownVariableType]
    return None


def _payloads(exc: BaseException) -> Iterator[Mapping[str, object]]:
    # Along the chain: some litellm releases (1.100) keep the body only on the openai SDK
    # error they caught, not on the error they raise.
    for error in _chain(exc):
        body: object = getattr(error, "body", None)
        if isinstance(body, Mapping):
            yield body  # pyright: ignore[reportReturnType]
    for error in _chain(exc):
        response = getattr(error, "response", None)
        text: object = None
        try:
            text = getattr(response, "text", None)
        except Exception:  # a response whose body was not read
            text = None
        try:
            shown: str | None = str(error)
        except Exception:  # an exception whose __str__ fails (aiohttp's without request_info)
            shown = None
        for source in (text, getattr(error, "message", None), shown):
            if isinstance(source, str):
                parsed = _first_json_object(source)
                if parsed is not None:
                    yield parsed


def _first_json_object(text: str) -> Mapping[str, object] | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        value: object = json.JSONDecoder().raw_decode(text, start)[0]
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None  # pyright: ignore[reportUnknownVariableType]


def is_rate_limit(exc: BaseException) -> bool:
    """Tell whether ``exc`` is the provider saying "too many requests" (HTTP 429)."""
    return isinstance(exc, litellm_module().RateLimitError) or status_of(exc) == 429


def answer_headers(exc: BaseException) -> Mapping[str, str] | None:
    """The headers of the provider's answer behind ``exc``; None when no answer came back.

    litellm keeps them in ``litellm_response_headers``; newer releases also copy them onto
    the error's ``response`` (1.100 leaves that response's headers empty). The first
    non-empty one counts: a failure with no answer behind it (a dropped connection) has none.
    Names are lowercased, whatever mapping held them; a name held more than once (in two
    cases, or repeated) has its values joined with ", ", as HTTP combines repeated fields.
    """
    fields = _answer_fields(exc)
    if fields is None:
        return None
    headers: dict[str, str] = {}
    for name, value in fields:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _answer_fields(exc: BaseException) -> list[tuple[str, str]] | None:
    """Every ``(name, value)`` of the answer's headers, names lowercased, in order."""
    sources: tuple[object, ...] = (
        getattr(exc, "litellm_response_headers", None),
        _response_headers(exc),
        getattr(exc, "headers", None),  # aiohttp's ClientResponseError keeps them there
    )
    for source in sources:
        # Header names are case-insensitive (RFC 9110 §5.1), but a plain dict, a
        # MappingProxyType or a Mapping of a caller's own keeps the server's case
        # ("Retry-After"): every mapping is read the same way. httpx's Headers join repeated
        # fields in items(); their multi_items() keeps each, as aiohttp's items() and
        # urllib's (an email Message) do.
        if not isinstance(source, Mapping | email.message.Message):
            continue
        held = cast("Mapping[object, object]", source)  # or a Message: items() alike
        try:
            multi: object = getattr(held, "multi_items", None)
            items = cast(
                "Iterable[tuple[object, object]]", multi() if callable(multi) else held.items()
            )
            pairs = list(items)
        except Exception:  # A mapping that cannot be read (a mock) holds no advice.
            continue
        fields = [(_text(name).lower(), _text(value)) for name, value in pairs]
        if fields:
            return fields
    return None


def _text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _response_headers(exc: BaseException) -> object:
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None) if response is not None else None


def retry_after(exc: BaseException, *, now: float | None = None) -> float | None:
    """Return the wait, in seconds, that the provider asked for with ``exc``, if any.

    Reads ``retry-after-ms`` (milliseconds) first, then ``retry-after`` as seconds or as an
    HTTP date, the names in any case. Negative or unreadable values count as no advice.
    When a name is there more than once (``Retry-After`` and ``retry-after`` in a plain
    dict, or a repeated field), the longest wait among its readable values counts.
    """
    fields = _answer_fields(exc)
    if fields is None:
        return None
    waits = [_millis(value) for name, value in fields if name == "retry-after-ms"]
    advice = max((wait for wait in waits if wait is not None), default=None)
    if advice is not None:
        return advice
    waits = [_seconds(value, now) for name, value in fields if name == "retry-after"]
    return max((wait for wait in waits if wait is not None), default=None)


def _millis(raw: str) -> float | None:
    try:
        value = float(raw) / 1000.0
    except ValueError:
        return None
    return value if value >= 0 else None


def _seconds(raw: str, now: float | None) -> float | None:
    try:
        seconds = float(raw)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = parsed.timestamp() - (time.time() if now is None else now)
    return seconds if seconds >= 0 else None
