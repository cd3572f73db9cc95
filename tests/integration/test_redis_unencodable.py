"""A Redis cache keys and stores what UTF-8 cannot encode, like the memory and disk stores."""

from __future__ import annotations

import asyncio
from typing import Any

from fixedmodel import bind_acompletion, bind_completion, responses
from fixedmodel.middleware.cache import is_cache_hit, with_cache
from fixedmodel.stores import RedisCacheStore
from tests.integration.redis_server import RedisServer, redis_server, unique_namespace

__all__ = ["redis_server"]  # A fixture, used by name.

MODEL = "openai/gpt-4o-mini"
QUESTION = [{"role": "user", "content": "which half? \ud83d"}]
REPLY = "this one: \ude00"


def test_sync_lone_surrogates_in_question_and_answer(redis_server: RedisServer) -> None:
    with RedisCacheStore(redis_server.url, namespace=unique_namespace("surrogate")) as store:
        chat = bind_completion(MODEL, mock_response=REPLY, api_key="sk-x")
        cached = with_cache(chat, store=store)
        live = cached(messages=QUESTION)
        hit = cached(messages=QUESTION)
    assert is_cache_hit(hit)
    assert responses.text(hit) == responses.text(live) == REPLY


def test_async_lone_surrogates_in_question_and_answer(redis_server: RedisServer) -> None:
    async def main() -> tuple[Any, Any]:
        chat = bind_acompletion(MODEL, mock_response=REPLY, api_key="sk-x")
        cached = with_cache(chat, store=store)
        return await cached(messages=QUESTION), await cached(messages=QUESTION)

    with RedisCacheStore(redis_server.url, namespace=unique_namespace("surrogate")) as store:
        live, hit = asyncio.run(main())
    assert is_cache_hit(hit)
    assert responses.text(hit) == responses.text(live) == REPLY
