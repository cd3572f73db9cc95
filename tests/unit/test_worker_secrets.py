"""The way docs/workers.md offers to keep credentials out of a pickled stack keeps them out."""

from __future__ import annotations

import pickle

import pytest

from fixedmodel import (
    RateLimit,
    RateLimiter,
    RedisCacheStore,
    RedisLimiterStore,
    bind_acompletion,
    with_cache,
    with_rate_limit,
)

API_KEY = "sk-test-7f3a9c-secret"
PASSWORD = "p4ss-w0rd-secret"
URL = f"redis://:{PASSWORD}@127.0.0.1:6399/0"


def _stack(api_key: str | None, url: str) -> object:
    bound = (
        bind_acompletion("openai/gpt-4o-mini")
        if api_key is None
        else bind_acompletion("openai/gpt-4o-mini", api_key=api_key)
    )
    limiter = RateLimiter(RateLimit(requests=10), store=RedisLimiterStore(url))
    return with_cache(with_rate_limit(bound, limiter), RedisCacheStore(url))


def test_credentials_given_in_the_driver_travel_in_clear_bytes() -> None:
    payload = pickle.dumps(_stack(API_KEY, URL))  # what the docs warn about
    assert API_KEY.encode() in payload
    assert PASSWORD.encode() in payload


def test_credentials_read_from_the_workers_environment_do_not_travel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("REDIS_URL", URL)
    payload = pickle.dumps(_stack(None, "env:REDIS_URL"))
    assert API_KEY.encode() not in payload
    assert PASSWORD.encode() not in payload
    assert b"REDIS_URL" in payload
    # A worker with its own URL builds its stores from it.
    monkeypatch.setenv("REDIS_URL", "redis://:other@127.0.0.1:6398/0")
    copy = pickle.loads(payload)
    client = copy.store._clients.sync()  # type: ignore[attr-defined]  # the store's own client
    assert client.connection_pool.connection_kwargs["port"] == 6398
    assert client.connection_pool.connection_kwargs["password"] == "other"
    assert repr(copy.store) == "RedisCacheStore('env:REDIS_URL', namespace='')"  # type: ignore[attr-defined]


def test_a_worker_without_the_variable_is_told_which_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", URL)
    payload = pickle.dumps(RedisCacheStore("env:REDIS_URL"))
    monkeypatch.delenv("REDIS_URL")
    with pytest.raises(ValueError, match="REDIS_URL is not set"):
        pickle.loads(payload)
