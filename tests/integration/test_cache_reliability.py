"""with_cache over real HTTP, issue 10: what single flight may share, streams asked for by a
bound default, hits equal to the live answer, validators that raise, honest call records."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from aiohttp import web
from pydantic import BaseModel

from fixedmodel import bind_acompletion, bind_aembedding, bind_completion, responses
from fixedmodel.middleware.cache import with_cache
from fixedmodel.middleware.observe import CallRecord, with_metrics
from fixedmodel.middleware.retries import RetryPolicy, with_retries
from fixedmodel.testing import Reply
from fixedmodel.testing.server import RecordedRequest
from tests.support.openai_server import Fault, OpenAIServer

MESSAGES = [{"role": "user", "content": "Hello?"}]
GOOD = "sk-good-0123456789"
BAD = "sk-bad-0123456789"
MODEL = "openai/test-model"


class KeyCheckingServer(OpenAIServer):
    """Answers 401 to a request whose bearer token or ``api-key``-style header says "bad"."""

    def __init__(self) -> None:
        super().__init__(responder=self._check_key)

    @staticmethod
    def _check_key(request: RecordedRequest) -> Fault | None:
        credentials = " ".join(v for k, v in request.headers.items() if k != "host")
        if "bad" in credentials:
            return Fault.status(401, message="Incorrect API key provided.")
        return None

    async def _fault_response(
        self, request: web.Request, body: dict[str, Any], fault: Fault
    ) -> web.StreamResponse:
        await asyncio.sleep(self.latency)  # The refusal comes as late as an answer would.
        return await super()._fault_response(request, body, fault)


class ShapedServer(OpenAIServer):
    """Answers chat completions with the body ``shape`` (plus the usual envelope)."""

    def __init__(self) -> None:
        super().__init__()
        self.shape: dict[str, Any] = {}

    def _completion(self, body: dict[str, Any], reply: Reply | None = None) -> dict[str, Any]:
        return {**self._envelope(body, "chat.completion"), **copy.deepcopy(self.shape)}


@pytest.fixture
def checking() -> Iterator[KeyCheckingServer]:
    with KeyCheckingServer() as server:
        yield server


@pytest.fixture
def shaped() -> Iterator[ShapedServer]:
    with ShapedServer() as server:
        yield server


# Item 5: callers share a flight only when they would send the same request.


async def test_a_good_key_is_not_failed_by_a_concurrent_bad_key(
    checking: KeyCheckingServer,
) -> None:
    checking.latency = 0.3
    async with bind_acompletion(MODEL, api_base=checking.base_url, max_retries=0) as bound:
        chat = with_cache(bound)
        bad = asyncio.create_task(chat(messages=MESSAGES, api_key=BAD))
        await asyncio.sleep(0.05)  # The bad key leads.
        good = await chat(messages=MESSAGES, api_key=GOOD)
        with pytest.raises(litellm.AuthenticationError):
            await bad
    assert responses.text(good) == checking.reply_text
    sent = sorted(r.headers["authorization"] for r in checking.requests)
    assert sent == [f"Bearer {BAD}", f"Bearer {GOOD}"]


@pytest.mark.parametrize(
    ("bad", "good"),
    [
        ({"extra_params": {"api_key": BAD}}, {"extra_params": {"api_key": GOOD}}),
        (
            {"extra_headers": {"Authorization": f"Bearer {BAD}"}},
            {"extra_headers": {"Authorization": f"Bearer {GOOD}"}},
        ),
        (
            {"extra_headers": {"Ocp-Apim-Subscription-Key": BAD}},
            {"extra_headers": {"Ocp-Apim-Subscription-Key": GOOD}},
        ),
    ],
    ids=["extra_params", "authorization-header", "apim-header"],
)
async def test_credentials_anywhere_in_the_request_split_the_flight(
    checking: KeyCheckingServer, bad: dict[str, Any], good: dict[str, Any]
) -> None:
    checking.latency = 0.3
    async with bind_acompletion(
        MODEL, api_base=checking.base_url, api_key=GOOD, max_retries=0
    ) as bound:
        chat = with_cache(bound)
        leader = asyncio.create_task(chat(messages=MESSAGES, **bad))
        await asyncio.sleep(0.05)
        answer = await chat(messages=MESSAGES, **good)
        with pytest.raises(litellm.AuthenticationError):
            await leader
    assert responses.text(answer) == checking.reply_text
    assert checking.request_count() == 2


async def test_a_long_timeout_is_not_failed_by_a_concurrent_short_one(
    server: OpenAIServer,
) -> None:
    server.latency = 0.6
    async with bind_acompletion(MODEL, api_base=server.base_url, api_key=GOOD) as bound:
        chat = with_cache(bound)
        short = asyncio.create_task(chat(messages=MESSAGES, timeout=0.2, max_retries=0))
        await asyncio.sleep(0.05)
        patient = await chat(messages=MESSAGES, timeout=30, max_retries=0)
        with pytest.raises(litellm.Timeout):
            await short
    assert responses.text(patient) == server.reply_text
    assert server.request_count() == 2


def test_sync_callers_with_different_keys_do_not_share_a_flight(
    checking: KeyCheckingServer,
) -> None:
    checking.latency = 0.3
    with bind_completion(MODEL, api_base=checking.base_url, max_retries=0) as bound:
        chat = with_cache(bound)
        outcome: list[BaseException] = []

        def lead() -> None:
            try:
                chat(messages=MESSAGES, api_key=BAD)
            except litellm.AuthenticationError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=lead)
        thread.start()
        try:
            threading.Event().wait(0.05)
            good = chat(messages=MESSAGES, api_key=GOOD)
        finally:
            thread.join()
    assert responses.text(good) == checking.reply_text
    assert len(outcome) == 1
    assert checking.request_count() == 2


async def test_same_credentials_still_share_one_flight_and_one_error(
    checking: KeyCheckingServer,
) -> None:
    checking.latency = 0.2
    async with bind_acompletion(
        MODEL, api_base=checking.base_url, api_key=BAD, max_retries=0
    ) as bound:
        chat = with_cache(bound)
        results = await asyncio.gather(
            *(chat(messages=MESSAGES, timeout=30) for _ in range(10)), return_exceptions=True
        )
    assert all(isinstance(r, litellm.AuthenticationError) for r in results)
    assert checking.request_count() == 1


async def test_different_keys_share_the_stored_answer(server: OpenAIServer) -> None:
    async with bind_acompletion(MODEL, api_base=server.base_url, api_key=GOOD) as bound:
        chat = with_cache(bound)
        await chat(messages=MESSAGES)
        hit = await chat(messages=MESSAGES, api_key="sk-other-key-0123456789")
    assert hit._hidden_params["cache_hit"] is True
    assert server.request_count() == 1


# Item 6: a stream asked for by a bound default or extra_params bypasses the cache.


@pytest.mark.parametrize(
    ("bound_defaults", "call"),
    [
        ({"stream": True}, {}),
        ({"extra_params": {"stream": True}}, {}),
        ({}, {"extra_params": {"stream": True}}),
        ({"stream": True}, {"stream": None}),
    ],
    ids=["bound-stream", "bound-extra_params", "call-extra_params", "call-none"],
)
async def test_a_stream_asked_for_anywhere_bypasses_the_cache(
    server: OpenAIServer, bound_defaults: dict[str, Any], call: dict[str, Any]
) -> None:
    async with (
        bind_acompletion(MODEL, api_base=server.base_url, api_key=GOOD) as plain,
        bind_acompletion(
            MODEL, api_base=server.base_url, api_key=GOOD, **bound_defaults
        ) as streaming,
    ):
        store_owner = with_cache(plain)
        await store_owner(messages=MESSAGES)  # An identical plain answer is stored.
        chat = with_cache(streaming, store_owner.store)  # type: ignore[attr-defined]
        stream = await chat(messages=MESSAGES, **call)
        text = "".join([piece async for piece in responses.atext_deltas(stream)])
    assert text == server.reply_text
    assert server.request_count() == 2


# Item 7: a hit equals the live answer, field for field.


def _message(**fields: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": "hi", "refusal": None, **fields}


_USAGE = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
SHAPES: dict[str, dict[str, Any]] = {
    "logprobs-null": {
        "choices": [{"index": 0, "message": _message(), "logprobs": None, "finish_reason": "stop"}],
        "usage": _USAGE,
    },
    "logprobs": {
        "choices": [
            {
                "index": 0,
                "message": _message(),
                "logprobs": {
                    "content": [
                        {
                            "token": "hi",
                            "logprob": -0.1,
                            "bytes": [104, 105],
                            "top_logprobs": [{"token": "hi", "logprob": -0.1, "bytes": [104, 105]}],
                        }
                    ],
                    "refusal": None,
                },
                "finish_reason": "stop",
            }
        ],
        "usage": _USAGE,
    },
    "tool-calls": {
        "choices": [
            {
                "index": 0,
                "message": _message(
                    content=None,
                    tool_calls=[
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a": 1}'},
                        }
                    ],
                ),
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": _USAGE,
    },
    "usage-details": {
        "choices": [{"index": 0, "message": _message(), "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 2,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    },
    "n-2": {
        "choices": [
            {"index": 0, "message": _message(), "logprobs": None, "finish_reason": "stop"},
            {
                "index": 1,
                "message": _message(content="yo"),
                "logprobs": None,
                "finish_reason": "length",
            },
        ],
        "usage": _USAGE,
    },
    "provider-fields": {
        "service_tier": "default",
        "choices": [
            {
                "index": 0,
                "message": _message(
                    reasoning_content="thinking",
                    annotations=[
                        {
                            "type": "url_citation",
                            "url_citation": {
                                "url": "http://127.0.0.1/",
                                "title": "t",
                                "start_index": 0,
                                "end_index": 1,
                            },
                        }
                    ],
                ),
                "logprobs": None,
                "finish_reason": "stop",
                "stop_reason": None,
            }
        ],
        "usage": _USAGE,
        "prompt_logprobs": None,
    },
    "no-usage": {"choices": [{"index": 0, "message": _message(), "finish_reason": "stop"}]},
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_a_hit_equals_the_live_answer(shaped: ShapedServer, shape: str) -> None:
    shaped.shape = SHAPES[shape]
    async with bind_acompletion(MODEL, api_base=shaped.base_url, api_key=GOOD) as bound:
        chat = with_cache(bound)
        live = await chat(messages=MESSAGES)
        hit = await chat(messages=MESSAGES)
    assert hit._hidden_params["cache_hit"] is True
    assert hit.model_dump() == live.model_dump()
    assert hit.model_dump(mode="json") == live.model_dump(mode="json")
    assert json.loads(hit.model_dump_json()) == json.loads(live.model_dump_json())
    _same_attributes(live, hit, "response")
    assert shaped.request_count() == 1


_ABSENT = object()


def _same_attributes(live: object, hit: object, path: str) -> None:
    """Every field reads the same on the hit as on the live answer, all the way down."""
    if isinstance(live, BaseModel):
        assert type(hit) is type(live), path
        names = set(type(live).model_fields) | set(live.model_extra or {})
        for name in names:
            live_value = getattr(live, name, _ABSENT)
            hit_value = getattr(hit, name, _ABSENT)
            assert (live_value is _ABSENT) == (hit_value is _ABSENT), f"{path}.{name}"
            if live_value is not _ABSENT:
                _same_attributes(live_value, hit_value, f"{path}.{name}")
    elif isinstance(live, list):
        assert isinstance(hit, list), path
        assert len(hit) == len(live), path
        for index, (one, other) in enumerate(zip(live, hit, strict=True)):
            _same_attributes(one, other, f"{path}[{index}]")
    else:
        assert hit == live, path


async def test_a_followers_copy_equals_the_live_answer(shaped: ShapedServer) -> None:
    shaped.shape = SHAPES["logprobs-null"]
    shaped.latency = 0.2
    async with bind_acompletion(MODEL, api_base=shaped.base_url, api_key=GOOD) as bound:
        chat = with_cache(bound)
        leader, follower = await asyncio.gather(chat(messages=MESSAGES), chat(messages=MESSAGES))
    assert follower._hidden_params["cache_hit"] is True
    assert follower.model_dump() == leader.model_dump()
    # As the live answer has it: None on litellm 1.110, no attribute on 1.100 (litellm's own
    # Choices drops a null logprobs there).
    absent = object()
    live = getattr(leader.choices[0], "logprobs", absent)
    assert getattr(follower.choices[0], "logprobs", absent) is live
    _same_attributes(leader, follower, "follower")


async def test_an_embedding_hit_equals_the_live_answer(server: OpenAIServer) -> None:
    async with bind_aembedding(
        "openai/text-embedding-3-small", api_base=server.base_url, api_key=GOOD
    ) as bound:
        embed = with_cache(bound)
        live = await embed(input=["a", "b"])
        hit = await embed(input=["a", "b"])
    assert hit._hidden_params["cache_hit"] is True
    assert hit.model_dump() == live.model_dump()
    _same_attributes(live, hit, "embedding")


# Item 8: a raising validator keeps the answer out of the store, not from the callers.


def _raising_validator(response: Any) -> bool:
    raise ValueError("not JSON")


async def test_a_raising_validator_still_answers_leader_and_followers(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.latency = 0.2
    async with bind_acompletion(MODEL, api_base=server.base_url, api_key=GOOD) as bound:
        chat = with_cache(bound, validator=_raising_validator)
        results = await asyncio.gather(*(chat(messages=MESSAGES) for _ in range(5)))
        assert [responses.text(r) for r in results] == [server.reply_text] * 5
        assert server.request_count() == 1
        again = await chat(messages=MESSAGES)  # Not stored: asks the server again.
    assert again._hidden_params.get("cache_hit") is not True
    assert server.request_count() == 2
    assert "the validator raised ValueError" in caplog.text


def test_a_raising_validator_still_answers_sync_leader_and_followers(
    server: OpenAIServer,
) -> None:
    server.latency = 0.2
    with bind_completion(MODEL, api_base=server.base_url, api_key=GOOD) as bound:
        chat = with_cache(bound, validator=_raising_validator)
        texts: list[str] = []
        threads = [
            threading.Thread(target=lambda: texts.append(responses.text(chat(messages=MESSAGES))))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert texts == [server.reply_text] * 4
    assert server.request_count() == 1


# Item 16: the attempts of the call records add up to the requests on the wire.


class _Records:
    def __init__(self) -> None:
        self.calls: list[CallRecord] = []

    def record(self, call: CallRecord) -> None:
        self.calls.append(call)


async def test_followers_of_a_failed_leader_record_no_attempt(server: OpenAIServer) -> None:
    server.latency = 0.1
    server.enqueue(Fault.status(503), Fault.status(503))
    records = _Records()
    policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01)
    async with bind_acompletion(MODEL, api_base=server.base_url, api_key=GOOD) as bound:
        chat = with_metrics(with_cache(with_retries(bound, policy)), records)
        results = await asyncio.gather(
            *(chat(messages=MESSAGES) for _ in range(10)), return_exceptions=True
        )
    assert all(isinstance(r, litellm.ServiceUnavailableError) for r in results)
    assert server.request_count() == 2
    assert sum(call.attempts for call in records.calls) == 2
    assert sorted(call.attempts for call in records.calls) == [0] * 9 + [2]


async def test_followers_of_a_leader_that_answers_after_retries(server: OpenAIServer) -> None:
    server.latency = 0.1
    server.enqueue(Fault.status(503), Fault.status(503))
    records = _Records()
    policy = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.01)
    async with bind_acompletion(MODEL, api_base=server.base_url, api_key=GOOD) as bound:
        chat = with_metrics(with_cache(with_retries(bound, policy)), records)
        await asyncio.gather(*(chat(messages=MESSAGES) for _ in range(10)))
    assert server.request_count() == 3
    assert sum(call.attempts for call in records.calls) == 3
    assert sum(call.cache_hit for call in records.calls) == 9


def test_sync_followers_of_a_failed_leader_record_no_attempt(
    checking: KeyCheckingServer,
) -> None:
    checking.latency = 0.3
    records = _Records()
    with bind_completion(MODEL, api_base=checking.base_url, api_key=BAD, max_retries=0) as bound:
        chat = with_metrics(with_cache(bound), records)

        def call() -> None:
            with contextlib.suppress(litellm.AuthenticationError):
                chat(messages=MESSAGES)

        threads = [threading.Thread(target=call) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert checking.request_count() == 1
    assert len(records.calls) == 5
    assert sum(call.attempts for call in records.calls) == 1


async def test_attempts_add_up_with_retries_outside_the_cache(server: OpenAIServer) -> None:
    server.latency = 0.1
    server.enqueue(Fault.status(503), Fault.status(503))
    records = _Records()
    policy = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.01, jitter=0.0)
    async with bind_acompletion(MODEL, api_base=server.base_url, api_key=GOOD) as bound:
        chat = with_metrics(with_retries(with_cache(bound), policy), records)
        results = await asyncio.gather(*(chat(messages=MESSAGES) for _ in range(10)))
        assert {responses.text(r) for r in results} == {server.reply_text}
        sequential = _Records()
        hit = with_metrics(with_retries(with_cache(bound), policy), sequential)
        await hit(messages=MESSAGES)
        await hit(messages=MESSAGES)
    assert server.request_count() == 4
    assert sum(call.attempts for call in records.calls) == 3
    assert [call.attempts for call in sequential.calls] == [1, 0]
    assert [call.cache_hit for call in sequential.calls] == [False, True]


@pytest.mark.parametrize("retries_outside", [False, True], ids=["cache-outside", "retries-outside"])
def test_sync_attempts_add_up_whatever_the_order(
    checking: KeyCheckingServer, retries_outside: bool
) -> None:
    server = checking  # Its refusals come after the latency, while the followers wait.
    server.latency = 0.2
    server.enqueue(Fault.status(503), Fault.status(503))
    records = _Records()
    policy = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.01, jitter=0.0)
    with bind_completion(MODEL, api_base=server.base_url, api_key=GOOD) as bound:
        stack = (
            with_retries(with_cache(bound), policy)
            if retries_outside
            else with_cache(with_retries(bound, policy))
        )
        chat = with_metrics(stack, records)
        outcomes: list[object] = []

        def call() -> None:
            try:
                outcomes.append(chat(messages=MESSAGES))
            except Exception as exc:  # Recorded: the count below is what is checked.
                outcomes.append(exc)

        threads = [threading.Thread(target=call) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(records.calls) == 6
    assert server.request_count() >= 3
    assert sum(call.attempts for call in records.calls) == server.request_count()
