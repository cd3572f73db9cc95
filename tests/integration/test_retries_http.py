"""with_retries over real HTTP: litellm talking to the loopback server with injected faults.

Every test counts requests at the server: N attempts must be exactly N requests, which holds
only if the retries of litellm and the openai SDK underneath are really switched off.
"""

from __future__ import annotations

import time

import litellm
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
FAST = RetryPolicy(initial_wait=0.01, max_wait=0.05, max_attempts=3)
CHAT_MODEL = "openai/test-model"
EMBED_MODEL = "openai/text-embedding-3-small"


def _notes(error: BaseException) -> str:
    return "\n".join(getattr(error, "__notes__", []))


async def test_retry_after_is_waited_before_the_next_attempt(server: OpenAIServer) -> None:
    server.enqueue(Fault.status(429, retry_after=2))
    async with bind_acompletion(CHAT_MODEL, api_base=server.base_url, api_key="sk-x") as chat:
        response = await with_retries(chat, FAST)(messages=MESSAGES)
        # Baseline under the same load: what one plain call costs, end to end.
        started = time.monotonic()
        await chat(messages=MESSAGES)
        one_call = time.monotonic() - started
    assert responses.text(response) == server.reply_text
    first, second, _ = server.requests
    gap = second.arrived_at - first.arrived_at
    # At least the Retry-After; not waited twice (4 s), give or take the calls' own time.
    assert 2.0 <= gap < 2.5 + 2 * one_call, (gap, one_call)


async def test_a_500_then_success_costs_exactly_two_requests(server: OpenAIServer) -> None:
    server.enqueue(Fault.status(500))
    async with bind_acompletion(CHAT_MODEL, api_base=server.base_url, api_key="sk-x") as chat:
        with call_scope() as info:
            response = await with_retries(chat, FAST)(messages=MESSAGES)
    assert responses.text(response) == server.reply_text
    assert server.request_count() == 2
    assert info.attempts == 2


# litellm 1.100.0 to 1.108.14 label an OpenAI 401 BadRequestError (1.109.0 and later:
# AuthenticationError). Either way it is raised as litellm raised it, after one request.
@pytest.mark.parametrize(
    ("status", "errors"),
    [
        (400, (litellm.BadRequestError,)),
        (401, (litellm.AuthenticationError, litellm.BadRequestError)),
        (403, (litellm.PermissionDeniedError, litellm.APIError)),  # 1.110.2: APIError
        (404, (litellm.NotFoundError, litellm.BadRequestError)),
        (422, (litellm.UnprocessableEntityError, litellm.BadRequestError)),
    ],
)
async def test_client_errors_are_not_retried(
    server: OpenAIServer, status: int, errors: tuple[type[Exception], ...]
) -> None:
    server.enqueue(Fault.status(status))
    async with bind_acompletion(CHAT_MODEL, api_base=server.base_url, api_key="sk-x") as chat:
        with call_scope() as info, pytest.raises(errors):
            await with_retries(chat, FAST)(messages=MESSAGES)
    assert server.request_count() == 1
    assert info.attempts == 1


async def test_a_dropped_connection_is_retried(server: OpenAIServer) -> None:
    server.enqueue(Fault.drop())
    async with bind_acompletion(CHAT_MODEL, api_base=server.base_url, api_key="sk-x") as chat:
        response = await with_retries(chat, FAST)(messages=MESSAGES)
    assert responses.text(response) == server.reply_text
    assert server.request_count() == 2


async def test_a_timed_out_attempt_is_retried(server: OpenAIServer) -> None:
    server.enqueue(Fault.delay(1.0))
    async with bind_acompletion(CHAT_MODEL, api_base=server.base_url, api_key="sk-x") as chat:
        response = await with_retries(chat, FAST)(messages=MESSAGES, timeout=0.3)
    assert responses.text(response) == server.reply_text
    assert server.request_count() == 2


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.status(429), litellm.RateLimitError),
        (Fault.status(500), litellm.InternalServerError),
        (Fault.status(503), litellm.ServiceUnavailableError),
    ],
    ids=["429", "500", "503"],
)
async def test_exhausted_attempts_raise_the_litellm_error_after_exactly_n_requests(
    server: OpenAIServer, fault: Fault, error: type[Exception]
) -> None:
    server.enqueue(*[fault] * 5)
    async with bind_acompletion(CHAT_MODEL, api_base=server.base_url, api_key="sk-SECRET") as chat:
        with pytest.raises(error) as caught:
            await with_retries(chat, FAST)(messages=MESSAGES)
    assert type(caught.value) is error
    assert "gave up after 3 attempts" in _notes(caught.value)
    assert "sk-SECRET" not in _notes(caught.value)
    assert server.request_count() == 3


async def test_one_attempt_means_one_request(server: OpenAIServer) -> None:
    server.enqueue(Fault.status(429), Fault.status(429), Fault.status(429))
    async with bind_acompletion(CHAT_MODEL, api_base=server.base_url, api_key="sk-x") as chat:
        with pytest.raises(litellm.RateLimitError):
            await with_retries(chat, RetryPolicy(max_attempts=1))(messages=MESSAGES)
    assert server.request_count() == 1


async def test_a_stream_is_retried_until_litellm_returns_it(server: OpenAIServer) -> None:
    server.enqueue(Fault.status(503))
    async with bind_acompletion(CHAT_MODEL, api_base=server.base_url, api_key="sk-x") as chat:
        stream = await with_retries(chat, FAST)(messages=MESSAGES, stream=True)
        text = "".join([piece async for piece in responses.atext_deltas(stream)])
    assert text == server.reply_text
    assert server.request_count() == 2


async def test_a_stream_cut_off_while_read_is_not_restarted(server: OpenAIServer) -> None:
    server.enqueue(Fault.truncated_stream(chunks_before_close=2))
    async with bind_acompletion(CHAT_MODEL, api_base=server.base_url, api_key="sk-x") as chat:
        stream = await with_retries(chat, FAST)(messages=MESSAGES, stream=True)
        # A retryable class (litellm raises MidStreamFallbackError), yet not retried: chunks
        # have reached the caller already.
        with pytest.raises(litellm.ServiceUnavailableError):
            _ = [piece async for piece in responses.atext_deltas(stream)]
    assert server.request_count() == 1


async def test_attempts_counted_match_requests_under_random_faults(server: OpenAIServer) -> None:
    server.random_faults(rate=0.3, statuses=(429, 500, 503), seed=7)
    policy = RetryPolicy(initial_wait=0.01, max_wait=0.02, max_attempts=10)
    attempts = 0
    async with bind_acompletion(CHAT_MODEL, api_base=server.base_url, api_key="sk-x") as chat:
        wrapped = with_retries(chat, policy)
        for _ in range(12):
            with call_scope() as info:
                await wrapped(messages=MESSAGES)
            attempts += info.attempts
    assert attempts == server.request_count() > 12


def test_sync_completion_retries_and_gives_up_after_exactly_n_requests(
    server: OpenAIServer,
) -> None:
    with bind_completion(CHAT_MODEL, api_base=server.base_url, api_key="sk-x") as chat:
        wrapped = with_retries(chat, FAST)
        server.enqueue(Fault.status(500))
        assert responses.text(wrapped(messages=MESSAGES)) == server.reply_text
        assert server.request_count() == 2
        server.reset()
        server.enqueue(*[Fault.status(429)] * 5)
        with pytest.raises(litellm.RateLimitError) as caught:
            wrapped(messages=MESSAGES)
    assert "gave up after 3 attempts" in _notes(caught.value)
    assert server.request_count() == 3


async def test_async_embedding_makes_exactly_n_requests(server: OpenAIServer) -> None:
    async with bind_aembedding(EMBED_MODEL, api_base=server.base_url, api_key="sk-x") as embed:
        wrapped = with_retries(embed, FAST)
        server.enqueue(Fault.status(429))
        response = await wrapped(input=["a", "b"])
        assert len(responses.embeddings(response)) == 2
        assert server.request_count("/embeddings") == 2
        server.reset()
        server.enqueue(*[Fault.status(429)] * 5)
        with pytest.raises(litellm.RateLimitError) as caught:
            await wrapped(input=["a"])
    assert "gave up after 3 attempts" in _notes(caught.value)
    assert server.request_count("/embeddings") == 3


def test_sync_embedding_makes_exactly_n_requests(server: OpenAIServer) -> None:
    with bind_embedding(EMBED_MODEL, api_base=server.base_url, api_key="sk-x") as embed:
        wrapped = with_retries(embed, FAST)
        server.enqueue(Fault.status(500))
        assert len(responses.embeddings(wrapped(input="a"))) == 1
        assert server.request_count("/embeddings") == 2
        server.reset()
        server.enqueue(*[Fault.status(500)] * 5)
        with pytest.raises(litellm.InternalServerError):
            wrapped(input="a")
    assert server.request_count("/embeddings") == 3


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
async def test_embedding_with_encoding_format_makes_one_request_per_attempt(
    server: OpenAIServer, encoding_format: str
) -> None:
    server.enqueue(Fault.status(429), Fault.status(429))
    async with bind_aembedding(EMBED_MODEL, api_base=server.base_url, api_key="sk-x") as embed:
        with pytest.raises(litellm.RateLimitError):
            await with_retries(embed, RetryPolicy(max_attempts=1))(
                input="a",
                encoding_format="float" if encoding_format == "float" else "base64",
            )
    assert server.request_count("/embeddings") == 1


async def test_a_bad_argument_is_not_retried_even_though_litellm_calls_it_a_connection_error(
    server: OpenAIServer,
) -> None:
    bound = bind_acompletion("openai/m", api_base=server.base_url, api_key="k")
    chat = with_retries(bound, RetryPolicy(max_attempts=4, initial_wait=0.5))
    # Baseline under the same load: the same failing call without the retry layer.
    started = time.monotonic()
    with pytest.raises(litellm.APIConnectionError):
        await bound(messages=["not a message"])  # type: ignore[list-item]  # the misuse under test
    alone = time.monotonic() - started
    started = time.monotonic()
    with pytest.raises(litellm.APIConnectionError):
        await chat(messages=["not a message"])  # type: ignore[list-item]  # the misuse under test
    # A retry would add at least one backoff (0.5 s) on top of the call itself.
    assert time.monotonic() - started < alone + 0.5
    assert server.request_count() == 0
