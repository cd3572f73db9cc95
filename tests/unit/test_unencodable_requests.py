"""Requests and answers no layer may fail on: lone surrogates, huge and deeply nested values.

The bound call answers such requests (litellm and the provider accept them), so a layer must
too: the cache keys them (or calls through uncached with a warning), stores their answers,
and the rate limiter estimates their tokens, without raising into the caller.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from fixedmodel import RateLimit, bind_acompletion, bind_completion, responses, with_rate_limit
from fixedmodel.middleware import _tokens
from fixedmodel.middleware._cache_key import KeyMaker, flight_key
from fixedmodel.middleware._tokens import estimate_tokens
from fixedmodel.middleware.cache import is_cache_hit, with_cache
from fixedmodel.stores.disk import DiskCacheStore
from fixedmodel.stores.memory import MemoryCacheStore
from fixedmodel.testing import FakeACompletion, FakeCompletion

MODEL = "openai/gpt-4o-mini"
LONE = "\ud83d"  # The first half of a surrogate pair: valid in a str, not in UTF-8.
DEPTH = 2000  # Deeper than Python's default recursion limit (1000).


def _deep(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def _tool_call_messages(arguments: str) -> list[dict[str, Any]]:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]


HI = [{"role": "user", "content": "hi"}]
UNENCODABLE: dict[str, dict[str, Any]] = {
    "content": {"messages": [{"role": "user", "content": f"hi {LONE}"}]},
    "tool-arguments": {"messages": _tool_call_messages('{"a": "' + LONE + '"}')},
    "dict-key": {"messages": HI, "extra_body": {LONE: 1}},
    "low-surrogate-in-a-part": {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "\udc00"}]}]
    },
}
DEEP: dict[str, dict[str, Any]] = {
    "tool-schema": {
        "messages": HI,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": _deep(DEPTH)}}],
    },
    "extra-body": {"messages": HI, "extra_body": {"x": _deep(DEPTH)}},
}


def _answers_deep_requests() -> FakeCompletion:
    """A bound call that answers requests nested deeper than the recursion limit.

    Newer litellm releases answer them; older ones (1.100) fail inside litellm on the
    ``repr`` of the request, so the layer is tested over a fake that, like a provider,
    answers.
    """
    return FakeCompletion(lambda _: "fine", model=MODEL)


def _stores(tmp_path: Path) -> dict[str, Any]:
    return {"memory": MemoryCacheStore(), "disk": DiskCacheStore(tmp_path / "cache")}


@pytest.mark.parametrize("store_name", ["memory", "disk"])
@pytest.mark.parametrize("case", list(UNENCODABLE))
def test_lone_surrogates_are_cached_like_any_text(
    case: str, store_name: str, tmp_path: Path
) -> None:
    chat = bind_completion(MODEL, mock_response="fine", api_key="sk-x")
    cached = with_cache(chat, store=_stores(tmp_path)[store_name])
    first = cached(**UNENCODABLE[case])
    second = cached(**UNENCODABLE[case])
    assert responses.text(first) == responses.text(second) == "fine"
    assert not is_cache_hit(first)
    assert is_cache_hit(second)


async def test_lone_surrogates_are_cached_by_async_callables() -> None:
    chat = bind_acompletion(MODEL, mock_response="fine", api_key="sk-x")
    cached = with_cache(chat)
    await cached(**UNENCODABLE["content"])
    assert is_cache_hit(await cached(**UNENCODABLE["content"]))


def test_keys_of_different_lone_surrogates_differ() -> None:
    keys = KeyMaker(None, MODEL, None)
    texts = ["\ud83d", "\ud83e", "\udc00", "\ud83d\ude00", "\U0001f600", ""]
    found = {keys.key("completion", {"messages": [{"role": "user", "content": t}]}) for t in texts}
    assert len(found) == len(texts)


def test_a_lone_surrogate_in_a_header_keeps_single_flight_working() -> None:
    keys = KeyMaker(None, MODEL, None)
    request = {"messages": HI, "extra_headers": {"x-api-key": f"k{LONE}"}, "api_key": f"s{LONE}"}
    key = keys.key("completion", request)
    assert flight_key(key, request) == flight_key(key, dict(request))
    other = {**request, "api_key": "s\ud83e"}
    assert flight_key(key, request) != flight_key(key, other)


@pytest.mark.parametrize("store_name", ["memory", "disk"])
def test_an_answer_holding_a_lone_surrogate_is_stored_and_replayed(
    store_name: str, tmp_path: Path
) -> None:
    reply = f"half a smiley: {LONE}"
    chat = bind_completion(MODEL, mock_response=reply, api_key="sk-x")
    cached = with_cache(chat, store=_stores(tmp_path)[store_name])
    live = cached(messages=HI)
    hit = cached(messages=HI)
    assert is_cache_hit(hit)
    assert responses.text(hit) == responses.text(live) == reply
    assert hit.model_dump() == live.model_dump()


@pytest.mark.parametrize("case", list(DEEP))
def test_a_request_too_deep_to_key_goes_through_uncached_with_a_warning(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert sys.getrecursionlimit() < DEPTH * 2
    chat = _answers_deep_requests()
    cached = with_cache(chat)
    with caplog.at_level(logging.WARNING, "fixedmodel.cache"):
        first = cached(**DEEP[case])
        second = cached(**DEEP[case])
    assert responses.text(first) == responses.text(second) == "fine"
    assert not is_cache_hit(second)
    warnings = [r.getMessage() for r in caplog.records if r.name == "fixedmodel.cache"]
    assert len(warnings) == 1  # Once per parameter, not per call.
    assert "without the cache" in warnings[0]


def test_the_token_estimate_of_a_deep_tool_schema_does_not_recurse() -> None:
    tokens = estimate_tokens(DEEP["tool-schema"], MODEL, 100)
    assert tokens > 100 + DEPTH  # Every level of the schema counts for something.


def test_a_deep_content_part_is_estimated() -> None:
    nested: Any = "text"
    for _ in range(DEPTH):
        nested = [nested]
    request = {"messages": [{"role": "user", "content": nested}]}
    assert estimate_tokens(request, MODEL, 10) > 10


@pytest.mark.parametrize("case", [*DEEP, "content"])
def test_the_token_limiter_lets_such_requests_through(case: str) -> None:
    request = DEEP.get(case) or UNENCODABLE[case]
    if case in DEEP:
        chat = _answers_deep_requests()
    else:
        chat = bind_completion(MODEL, mock_response="fine", api_key="sk-x")
    limited = with_rate_limit(chat, RateLimit(tokens=10_000_000))
    assert responses.text(limited(**request)) == "fine"


def test_a_huge_request_is_cached() -> None:
    request = {"messages": [{"role": "user", "content": "word " * 1_000_000}]}  # 5 MB
    chat = bind_completion(MODEL, mock_response="fine", api_key="sk-x")
    cached = with_cache(chat)
    cached(**request)
    assert is_cache_hit(cached(**request))


def test_async_bypass_of_a_deep_request() -> None:
    chat = FakeACompletion(lambda _: "fine", model=MODEL)
    cached = with_cache(chat)
    answer = asyncio.run(cached(**DEEP["tool-schema"]))
    assert responses.text(answer) == "fine"


def _tokenizer_inputs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the characters of text each tokenizer call of the estimate is handed."""
    sizes: list[int] = []
    real = _tokens._count  # pyright: ignore[reportPrivateUsage]

    def recording(model: str, **arguments: object) -> int:
        sizes.append(len(repr(arguments)))
        return real(model, **arguments)

    monkeypatch.setattr(_tokens, "_count", recording)
    return sizes


@pytest.mark.parametrize("kind", ["completion", "embedding", "embedding-list"])
def test_a_huge_text_is_estimated_from_a_sample(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "word " * 1_000_000  # 5 MB, about a million tokens
    request: dict[str, Any] = {
        "completion": {"messages": [{"role": "user", "content": text}]},
        "embedding": {"input": text},
        "embedding-list": {"input": [text, "short"]},
    }[kind]
    exact = _tokens._count(MODEL, text=text)  # pyright: ignore[reportPrivateUsage]
    sizes = _tokenizer_inputs(monkeypatch)
    estimate = estimate_tokens(request, MODEL, 0)
    assert abs(estimate - exact) <= exact * 0.01
    # The tokenizer never saw the whole text: tokenizing 5 MB costs a third of a second of
    # CPU on the caller's event loop.
    assert sizes
    assert max(sizes) < _tokens.LONG_TEXT + 1_000
