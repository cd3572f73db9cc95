"""The example of docs/scaling.md runs, as written, against a real redis-server.

Two substitutions make it run here: the test server's URL for ``REDIS_URL``, and litellm's
``mock_response`` in the binding so that no provider is called. Both must find their text,
so the page cannot drift from what is tested.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path

import redis

from fixedmodel.stores.redis_cache import RedisCacheStore
from fixedmodel.stores.redis_limiter import RedisLimiterStore
from tests.integration import redis_server as servers

redis_server = servers.redis_server

PAGE = Path(__file__).parents[2] / "docs" / "scaling.md"
URL_LINE = re.compile(r'^REDIS_URL = "redis://[^"]*"', re.MULTILINE)
BINDING = 'bind_acompletion("openai/gpt-4o-mini")'


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_the_scaling_example_runs(redis_server: servers.RedisServer) -> None:
    blocks = _python_blocks(PAGE.read_text())
    assert len(blocks) == 1
    source = blocks[0]
    assert URL_LINE.search(source), "the example no longer sets REDIS_URL"
    assert BINDING in source, "the example no longer binds openai/gpt-4o-mini"
    source = URL_LINE.sub(f'REDIS_URL = "{redis_server.url}"', source)
    source = source.replace(BINDING, 'bind_acompletion("openai/gpt-4o-mini", mock_response="4")')

    namespace: dict[str, object] = {"__name__": "scaling_example"}
    exec(compile(source, str(PAGE), "exec"), namespace)
    answer = namespace["answer"]
    assert inspect.iscoroutinefunction(answer)

    async def twice() -> list[str]:
        return [await answer("What is 2 + 2?"), await answer("What is 2 + 2?")]

    assert asyncio.run(twice()) == ["4", "4"]

    client = redis.Redis.from_url(redis_server.url)
    assert len(client.keys("myapp:fixedmodel:cache:v1:*")) == 1
    # The second answer came from the cache: the shared quota counted one request.
    assert client.hget("fixedmodel:rl:openai-gpt-4o-mini", "requests") == b"1"
    client.close()
    for name in ("limiter_store", "cache"):
        store = namespace[name]
        assert isinstance(store, (RedisLimiterStore, RedisCacheStore))
        store.close()
