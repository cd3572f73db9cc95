"""How fixedmodel.middleware._errors classifies exceptions (items 14, 15 and 20 of issue 10)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import litellm
import openai
import pytest

from fixedmodel.middleware._errors import (
    is_quota_exhausted,
    is_rate_limit,
    is_retryable,
    is_route_failure,
    is_unsupported_here,
    never_sent,
    status_of,
)


def _response(status: int, body: object) -> httpx.Response:
    return httpx.Response(
        status, json=body, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    )


def _wrapped(cause: BaseException) -> litellm.InternalServerError:
    """What litellm raises for ``cause``: its own error, the cause chained under it."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise litellm.InternalServerError(
                message=f"OpenAIException - {inner}", llm_provider="openai", model="m"
            ) from inner
    except litellm.InternalServerError as error:
        return error


def test_missing_litellm_exception_classes_do_not_break_classification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # litellm 1.80.0 has no PermissionDeniedError: every error became an AttributeError.
    monkeypatch.delattr(litellm, "PermissionDeniedError")
    error = litellm.RateLimitError(message="slow", llm_provider="openai", model="m")
    assert is_retryable(error)
    assert not is_retryable(litellm.BadRequestError(message="b", model="m", llm_provider="x"))


@pytest.mark.parametrize(
    "cause",
    [
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        openai.OpenAIError("Missing credentials. Please pass an `api_key`"),
        ValueError("Cannot combine AUTHORIZATION header with AUTH argument or credentials"),
        TypeError("unexpected keyword"),
        AttributeError("'str' object has no attribute 'get'"),
        KeyError("role"),
        httpx.UnsupportedProtocol("Request URL is missing an 'http://' or 'https://' protocol."),
        httpx.InvalidURL("Invalid port"),
    ],
    ids=lambda cause: type(cause).__name__,
)
def test_failures_raised_before_sending_are_not_retried(cause: BaseException) -> None:
    error = _wrapped(cause)
    assert never_sent(error)
    assert not is_retryable(error)


@pytest.mark.parametrize(
    "cause",
    [
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
        httpx.ConnectError("refused"),
        httpx.ReadError("reset"),
        json.JSONDecodeError("Expecting value", "{", 1),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    ],
    ids=lambda cause: type(cause).__name__,
)
def test_failures_on_the_wire_stay_retryable(cause: BaseException) -> None:
    error = _wrapped(cause)
    assert not never_sent(error)
    assert is_retryable(error)


def test_a_local_looking_root_under_a_network_error_stays_retryable() -> None:
    # A ValueError raised while a connection failed: the request was on its way.
    try:
        try:
            raise ValueError("bad chunk")
        except ValueError as inner:
            raise httpx.ReadError("reset") from inner
    except httpx.ReadError as network:
        error = _wrapped(network)
    assert not never_sent(error)
    assert is_retryable(error)


def test_an_error_without_a_chain_keeps_its_class_decision() -> None:
    assert not never_sent(litellm.InternalServerError(message="x", llm_provider="o", model="m"))
    assert is_retryable(litellm.InternalServerError(message="x", llm_provider="o", model="m"))


def _rate_limit(body: object) -> litellm.RateLimitError:
    return litellm.RateLimitError(
        message=f"RateLimitError: GeminiException - {json.dumps(body)}",
        llm_provider="gemini",
        model="m",
        response=_response(429, body),
    )


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"type": "insufficient_quota", "code": "insufficient_quota", "message": "q"}},
        {"error": {"type": "insufficient_quota", "code": None, "message": "q"}},
        {"error": {"type": "requests", "code": "INSUFFICIENT_QUOTA", "message": "q"}},
        {
            "error": {
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"violations": [{"quotaId": "GenerateRequestsPerDayPerProject"}]}],
            }
        },
        {
            "error": {
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"violations": [{"quotaMetric": "x/tokens_per_day"}]}],
            }
        },
    ],
)
def test_quota_exhaustion_is_not_retried(body: object) -> None:
    error = _rate_limit(body)
    assert is_quota_exhausted(error)
    assert not is_retryable(error)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "slow down"}},
        {"error": {"status": "RESOURCE_EXHAUSTED", "message": "Resource has been exhausted"}},
        {
            "error": {
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"violations": [{"quotaId": "GenerateRequestsPerMinutePerProject"}]}],
            }
        },
        "not json at all",
    ],
)
def test_ordinary_rate_limits_stay_retryable(body: object) -> None:
    error = _rate_limit(body)
    assert not is_quota_exhausted(error)
    assert is_retryable(error)


def test_quota_is_read_from_the_message_when_the_body_is_not_kept() -> None:
    body = {"error": {"code": "insufficient_quota", "type": "insufficient_quota"}}
    error = litellm.RateLimitError(
        message=f"OpenAIException - {json.dumps(body)}", llm_provider="openai", model="m"
    )
    assert is_quota_exhausted(error)


def test_payment_required_is_not_retried() -> None:
    error = litellm.APIError(
        status_code=402, message="Insufficient credits", llm_provider="openrouter", model="m"
    )
    assert is_quota_exhausted(error)
    assert not is_retryable(error)


@pytest.mark.parametrize("status", [429, 422, 503])
def test_a_budget_refusal_is_no_provider_status_whatever_litellm_labels_it(status: int) -> None:
    # litellm 1.100 gives BudgetExceededError status_code 429, later releases 422: either
    # way the refusal happened here before any request, so it is neither a rate limit to
    # retry nor a deployment failure to cool down for.
    refusal = litellm.BudgetExceededError(current_cost=2.0, max_budget=1.0)
    refusal.status_code = status
    assert status_of(refusal) is None
    assert not is_retryable(refusal)
    assert not is_rate_limit(refusal)
    assert not is_route_failure(refusal)
    assert not is_unsupported_here(refusal)


def _stream_read_failure(asynchronous: bool) -> Exception:
    """What litellm raises reading a provider's stream whose chunk has no ``choices``."""
    import asyncio
    import time

    from litellm import CustomStreamWrapper
    from litellm.litellm_core_utils.litellm_logging import Logging

    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def chunks() -> Iterator[dict[str, object]]:
        yield chunk

    async def achunks() -> AsyncIterator[dict[str, object]]:
        yield chunk

    logging = Logging(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        call_type="acompletion" if asynchronous else "completion",
        start_time=time.time(),
        litellm_call_id="1",
        function_id="1",
    )
    stream = CustomStreamWrapper(
        completion_stream=achunks() if asynchronous else chunks(),
        model="gpt-4o-mini",
        custom_llm_provider="openai",
        logging_obj=logging,
    )

    async def aread() -> None:
        async for _ in stream:
            pass

    try:
        if asynchronous:
            asyncio.run(aread())
        else:
            for _ in stream:
                pass
    except Exception as error:
        return error
    raise AssertionError("the stream was read without a failure")


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_stream_litellm_cannot_read_was_sent(asynchronous: bool) -> None:
    # A provider's stream chunk litellm cannot read (no "choices") raises AttributeError in
    # its stream reader, wrapped in APIConnectionError: it looked like a failure while the
    # request was built. The server answered: the failure is retried, falls back and counts
    # against a deployment, as an answer litellm cannot read does when not streamed.
    from fixedmodel.middleware._errors import is_route_failure, never_sent
    from fixedmodel.routing._deployments import counts_against, sent_nothing

    error = _stream_read_failure(asynchronous)
    assert not never_sent(error)
    assert not sent_nothing(error)
    assert is_retryable(error)
    assert is_route_failure(error)
    assert counts_against(error)


def test_a_chain_falls_back_from_a_stream_litellm_cannot_read() -> None:
    # It was raised at once, as a failure of this process before sending would be.
    from fixedmodel import responses, with_fallbacks
    from fixedmodel.testing import CompletionCall, FakeCompletion

    error = _stream_read_failure(asynchronous=False)

    def broken(call: CompletionCall) -> object:
        raise error

    primary = FakeCompletion(broken, model="a/primary")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    backup = FakeCompletion(lambda call: "from backup", model="b/backup")
    chat = with_fallbacks(primary, backup)
    answer = chat(messages=[{"role": "user", "content": "Hi"}], stream=True)
    assert "".join(responses.text_deltas(answer)) == "from backup"


def _raw_tls_and_http_failures() -> list[BaseException]:
    import http.client
    import ssl
    import urllib.error

    from urllib3 import exceptions as urllib3_errors

    return [
        ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate has expired"),
        urllib3_errors.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED]"),
        urllib3_errors.IncompleteRead(10, 90),
        http.client.IncompleteRead(b"partial", 90),
        http.client.BadStatusLine("garbage"),
        urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed")),
    ]


@pytest.mark.parametrize(
    "error",
    _raw_tls_and_http_failures(),
    ids=[
        "ssl-cert",
        "urllib3-ssl",
        "urllib3-incomplete",
        "http-incomplete",
        "http-status-line",
        "urlerror-ssl-cert",
    ],
)
def test_raw_tls_and_cut_answers_are_transport_failures_in_every_form(
    error: BaseException,
) -> None:
    # ssl.SSLError and httpx's ConnectError over it were transport failures, but a raw
    # SSLCertVerificationError (a ValueError too) read as a failure before sending, and
    # urllib3's SSLError and the IncompleteReads (httpx: RemoteProtocolError) as nothing:
    # not retried, no fallback, and a deployment with an expired certificate never cooled.
    from fixedmodel.middleware._errors import is_route_failure, never_sent
    from fixedmodel.routing._deployments import counts_against

    assert not never_sent(error)
    assert is_retryable(error)
    assert is_route_failure(error)
    assert counts_against(error)


@pytest.mark.parametrize("wire", ["urllib3", "http.client"])
def test_an_error_over_a_urllib3_or_http_client_failure_was_sent(wire: str) -> None:
    # A ValueError of a hand-written callable over its HTTP client's failure: the exchange
    # was attempted, as with httpx, so it is no failure before sending.
    import http.client

    from urllib3 import exceptions as urllib3_errors

    from fixedmodel.middleware._errors import never_sent

    below: Exception = (
        urllib3_errors.ProtocolError("Connection aborted.")
        if wire == "urllib3"
        else http.client.IncompleteRead(b"", 5)
    )
    try:
        try:
            raise below
        except Exception as cause:
            raise ValueError("could not parse the answer") from cause
    except ValueError as error:
        assert not never_sent(error)
