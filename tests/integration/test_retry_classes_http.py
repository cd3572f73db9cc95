"""What with_retries retries, decided by evidence: quota answers and failures before sending.

Item 14: an account out of credit or quota is not rate limited; waiting cannot help, so
such answers are raised at once while an ordinary 429 stays retryable. Item 15: a failure
that happened in this process before any request was sent (missing API key, lone
surrogate, credentials in ``api_base``) is raised at once; the server must see nothing.
Every test counts requests at a loopback server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import litellm
import openai
import pytest

from fixedmodel import (
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    bind_embedding,
    responses,
)
from fixedmodel.middleware._call import call_scope
from fixedmodel.middleware.retries import RetryPolicy, with_retries
from tests.support.openai_server import Fault, OpenAIServer

MESSAGES = [{"role": "user", "content": "Hello?"}]
FAST = RetryPolicy(initial_wait=0.01, max_wait=0.02, max_attempts=3)

OPENAI_QUOTA = {
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
}
OPENAI_RATE = {
    "error": {
        "message": "Rate limit reached for requests",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}
# https://ai.google.dev/gemini-api/docs/troubleshooting: 429 RESOURCE_EXHAUSTED, with
# google.rpc.QuotaFailure details naming the quota.
GEMINI_PER_DAY = {
    "error": {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_requests",
                        "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                    }
                ],
            }
        ],
    }
}
GEMINI_PER_MINUTE = {
    "error": {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    }
                ],
            }
        ],
    }
}
ANTHROPIC_CREDIT = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "Your credit balance is too low to access the Anthropic API.",
    },
}
OPENROUTER_CREDIT = {"error": {"code": 402, "message": "Insufficient credits"}}


class ErrorServer:
    """Answers every request on 127.0.0.1 with one fixed status and JSON body; counts them."""

    def __init__(self) -> None:
        self.status = 500
        self.body: dict[str, Any] = {}
        self.count = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                self.rfile.read(length)
                owner.count += 1
                raw = json.dumps(owner.body).encode()
                self.send_response(owner.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def answer(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body, self.count = status, body, 0

    def __enter__(self) -> ErrorServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def errors() -> Iterator[ErrorServer]:
    with ErrorServer() as server:
        yield server


@pytest.mark.parametrize(
    ("model", "path", "status", "body"),
    [
        ("openai/m", "/v1", 429, OPENAI_QUOTA),
        ("openai/m", "/v1", 402, OPENROUTER_CREDIT),
        ("gemini/gemini-2.0-flash", "", 429, GEMINI_PER_DAY),
        ("anthropic/claude-3-5-haiku-latest", "", 400, ANTHROPIC_CREDIT),
    ],
    ids=["openai-insufficient-quota", "http-402", "gemini-per-day", "anthropic-credit"],
)
async def test_an_exhausted_quota_is_raised_at_once(
    errors: ErrorServer, model: str, path: str, status: int, body: dict[str, Any]
) -> None:
    errors.answer(status, body)
    chat = with_retries(bind_acompletion(model, api_base=errors.base_url + path, api_key="k"), FAST)
    with call_scope() as info, pytest.raises(openai.APIError):
        await chat(messages=MESSAGES)
    assert errors.count == 1
    assert info.attempts == 1


@pytest.mark.parametrize(
    ("model", "path", "body"),
    [("openai/m", "/v1", OPENAI_RATE), ("gemini/gemini-2.0-flash", "", GEMINI_PER_MINUTE)],
    ids=["openai-rate-limit", "gemini-per-minute"],
)
async def test_an_ordinary_rate_limit_stays_retryable(
    errors: ErrorServer, model: str, path: str, body: dict[str, Any]
) -> None:
    errors.answer(429, body)
    chat = with_retries(bind_acompletion(model, api_base=errors.base_url + path, api_key="k"), FAST)
    with pytest.raises(litellm.RateLimitError):
        await chat(messages=MESSAGES)
    assert errors.count == 3


def test_quota_is_raised_at_once_for_sync_and_embedding_kinds(errors: ErrorServer) -> None:
    errors.answer(429, OPENAI_QUOTA)
    base = errors.base_url + "/v1"
    with (
        bind_completion("openai/m", api_base=base, api_key="k") as chat,
        pytest.raises(litellm.RateLimitError),
    ):
        with_retries(chat, FAST)(messages=MESSAGES)
    assert errors.count == 1
    errors.answer(429, OPENAI_QUOTA)
    with (
        bind_embedding("openai/e", api_base=base, api_key="k") as embed,
        pytest.raises(litellm.RateLimitError),
    ):
        with_retries(embed, FAST)(input=["a"])
    assert errors.count == 1


async def test_quota_is_raised_at_once_for_async_embeddings(errors: ErrorServer) -> None:
    errors.answer(429, OPENAI_QUOTA)
    base = errors.base_url + "/v1"
    async with bind_aembedding("openai/e", api_base=base, api_key="k") as embed:
        with pytest.raises(litellm.RateLimitError):
            await with_retries(embed, FAST)(input=["a"])
    assert errors.count == 1


# Failures before sending: litellm labels them InternalServerError (item 15).
LOCAL_FAILURES: dict[str, dict[str, Any]] = {
    "missing-api-key": {"messages": MESSAGES},
    "lone-surrogate": {"api_key": "k", "messages": [{"role": "user", "content": "hi \ud800"}]},
    "lone-low-surrogate": {
        "api_key": "k",
        "messages": [{"role": "user", "content": "\udfff end"}],
    },
}


@pytest.fixture
def no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.mark.parametrize("case", sorted(LOCAL_FAILURES))
async def test_a_failure_before_sending_is_not_retried(
    server: OpenAIServer, no_api_key: None, case: str
) -> None:
    chat = with_retries(bind_acompletion("openai/m", api_base=server.base_url), FAST)
    with call_scope() as info, pytest.raises(litellm.InternalServerError):
        await chat(**LOCAL_FAILURES[case])
    assert server.request_count() == 0
    assert info.attempts == 1


@pytest.mark.parametrize("case", sorted(LOCAL_FAILURES))
def test_a_sync_failure_before_sending_is_not_retried(
    server: OpenAIServer, no_api_key: None, case: str
) -> None:
    chat = with_retries(bind_completion("openai/m", api_base=server.base_url), FAST)
    with call_scope() as info, pytest.raises(litellm.InternalServerError):
        chat(**LOCAL_FAILURES[case])
    assert server.request_count() == 0
    assert info.attempts == 1


async def test_credentials_in_api_base_are_not_retried(server: OpenAIServer) -> None:
    with_userinfo = server.base_url.replace("http://", "http://user:secret@")
    async with bind_acompletion("openai/m", api_base=with_userinfo, api_key="k") as chat:
        with call_scope() as info, pytest.raises(litellm.InternalServerError):
            await with_retries(chat, FAST)(messages=MESSAGES)
    assert server.request_count() == 0
    assert info.attempts == 1


async def test_embedding_failures_before_sending_are_not_retried(
    server: OpenAIServer, no_api_key: None
) -> None:
    embed = with_retries(bind_aembedding("openai/e", api_base=server.base_url), FAST)
    with call_scope() as info, pytest.raises(litellm.InternalServerError):
        await embed(input=["a"])
    assert server.request_count(path_suffix="/embeddings") == 0
    assert info.attempts == 1
    sync_embed = with_retries(
        bind_embedding("openai/e", api_base=server.base_url, api_key="k"), FAST
    )
    with call_scope() as info, pytest.raises(litellm.InternalServerError):
        sync_embed(input=["a \ud800"])
    assert info.attempts == 1


async def test_a_refused_connection_is_still_retried() -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    async with bind_acompletion("openai/m", api_base="http://127.0.0.1:9/v1", api_key="k") as c:
        with call_scope() as info, pytest.raises(litellm.InternalServerError):
            await with_retries(c, FAST)(messages=MESSAGES)
    assert info.attempts == 3


async def test_a_malformed_answer_is_still_retried(server: OpenAIServer) -> None:
    server.enqueue(Fault.malformed())
    async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k") as chat:
        response = await with_retries(chat, FAST)(messages=MESSAGES)
    assert responses.text(response) == server.reply_text
    assert server.request_count() == 2


@pytest.mark.parametrize("status", [500, 507, 520, 522, 524, 529, 599])
async def test_every_temporary_5xx_is_retried(server: OpenAIServer, status: int) -> None:
    server.enqueue(Fault.status(status))
    async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k") as chat:
        response = await with_retries(chat, FAST)(messages=MESSAGES)
    assert responses.text(response) == server.reply_text
    assert server.request_count() == 2


@pytest.mark.parametrize("status", [501, 505, 506, 508, 510, 511])
async def test_a_5xx_saying_the_server_cannot_serve_it_is_raised_at_once(
    server: OpenAIServer, status: int
) -> None:
    server.enqueue(Fault.status(status))
    async with bind_acompletion("openai/m", api_base=server.base_url, api_key="k") as chat:
        with call_scope() as info, pytest.raises(litellm.APIError) as raised:
            await with_retries(chat, FAST)(messages=MESSAGES)
    assert raised.value.status_code == status
    assert info.attempts == 1
    assert server.request_count() == 1


async def test_an_answer_litellm_cannot_read_is_no_failure_before_sending(
    errors: ErrorServer,
) -> None:
    # A 200 whose choice lacks "message": litellm's reading of the answer raises KeyError,
    # which alone looks like a failure while the request was built. The server answered:
    # retried like the 500 litellm labels it, and counted against a deployment.
    from fixedmodel import CooldownPolicy, with_load_balancing
    from fixedmodel.middleware._errors import never_sent

    errors.answer(200, {"choices": [{"index": 0}]})
    async with bind_acompletion("openai/m", api_base=errors.base_url + "/v1", api_key="k") as c:
        with call_scope() as info, pytest.raises(litellm.InternalServerError) as raised:
            await with_retries(c, FAST)(messages=MESSAGES)
        assert not never_sent(raised.value)
        assert info.attempts == 3
        assert errors.count == 3
        errors.answer(200, {"choices": [{"index": 0}]})
        policy = CooldownPolicy(failures=1, when_all_cooling="raise")
        balanced = with_load_balancing({"a": c}, cooldown=policy)
        with pytest.raises(litellm.InternalServerError):
            await balanced(messages=MESSAGES)
        # The answer counted against "a": it cools, and the next call is refused unsent.
        with pytest.raises(litellm.RateLimitError):
            await balanced(messages=MESSAGES)
        assert errors.count == 1
