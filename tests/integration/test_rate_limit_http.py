"""with_rate_limit over real HTTP through litellm to the loopback server, in real time.

The limiter decides when requests are *sent*; the server records when they *arrive*. In
between, litellm's own work for a burst of calls on one event loop (and, here, the server
thread competing for the same two cores and the GIL) delays each request by a few to more
than a hundred milliseconds, unevenly. So the window is checked exactly on the times the
requests left (recorded by the callable inside the limiter) and, on the server's arrival
times, for windows shortened by the observed spread of those delays: any ``limit + 1``
arrivals span more than ``period - spread`` exactly when the sends obey the limit.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Any

import litellm
import pytest

from fixedmodel import bind_acompletion, bind_aembedding, bind_completion
from fixedmodel.middleware.rate_limit import RateLimit, RateLimiter, with_rate_limit
from tests.support.openai_server import Fault, OpenAIServer

LIMIT, PERIOD = 10, 1.0


def max_in_any_window(times: Sequence[float], period: float) -> int:
    """Largest number of ``times`` in any half-open window ``[t, t + period)``."""
    ordered = sorted(times)
    best = start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= period:
            start += 1
        best = max(best, end - start + 1)
    return best


class SendTimes:
    """An async chat that notes when each request leaves the limiter, by its message."""

    def __init__(self, chat: Any) -> None:
        self.chat = chat
        self.sent: dict[str, float] = {}

    @property
    def model(self) -> str:
        return str(self.chat.model)

    async def __call__(self, **kwargs: Any) -> Any:
        self.sent[kwargs["messages"][0]["content"]] = time.monotonic()
        return await self.chat(**kwargs)


def chat_for(server: OpenAIServer) -> Any:
    # max_retries=0: one call is exactly one request on the wire.
    return bind_acompletion("openai/test", api_base=server.base_url, api_key="sk-x", max_retries=0)


async def test_requests_never_exceed_the_limit_in_any_window(server: OpenAIServer) -> None:
    ids = itertools.count()
    async with chat_for(server) as chat:
        # litellm's first calls are much slower (imports, connections): not what is measured.
        await asyncio.gather(
            *(chat(messages=[{"role": "user", "content": "warm"}]) for _ in range(LIMIT))
        )
        server.reset()
        sends = SendTimes(chat)
        limited = with_rate_limit(sends, RateLimit(requests=LIMIT, period=PERIOD))
        deadline = time.monotonic() + 4.5 * PERIOD

        async def caller() -> None:
            while time.monotonic() < deadline:
                await limited(messages=[{"role": "user", "content": f"{next(ids)}"}])

        await asyncio.gather(*(caller() for _ in range(LIMIT + LIMIT // 2)))

    arrived = {r.body["messages"][0]["content"]: r.arrived_at for r in server.requests}
    assert arrived.keys() == sends.sent.keys()  # one request per admitted call, no more
    sent = sorted(sends.sent.values())
    assert max_in_any_window(sent, PERIOD) <= LIMIT

    delays = [arrived[key] - moment for key, moment in sends.sent.items()]
    spread = max(delays) - min(delays)
    assert spread < 0.5 * PERIOD, f"requests took {min(delays):.3f}-{max(delays):.3f} s to arrive"
    assert max_in_any_window(list(arrived.values()), PERIOD - spread) <= LIMIT

    # Sustained throughput: at the limit, the 4 * LIMIT requests before the (4 * LIMIT + 1)th
    # fill exactly four periods; at >= 90 % they take no more than 4 / 0.9 periods.
    assert len(sent) > 4 * LIMIT
    throughput = 4 * PERIOD / (sent[4 * LIMIT] - sent[0])
    assert throughput >= 0.9, f"{throughput:.1%} of the limit"


async def test_200_waiting_callers_neither_block_nor_busy_the_event_loop(
    server: OpenAIServer,
) -> None:
    # Lag is measured while the callers wait, not while litellm works: its own per-call
    # processing holds the loop for several milliseconds whatever the limiter does.
    async with chat_for(server) as chat:
        limited = with_rate_limit(chat, RateLimit(requests=3, period=PERIOD))
        loop = asyncio.get_running_loop()
        reopens = loop.time() + PERIOD  # not before this: the budget is spent from now on
        for n in range(3):
            await limited(messages=[{"role": "user", "content": f"first {n}"}])
        cpu_started, wall_started = time.process_time(), loop.time()
        callers = [
            asyncio.create_task(limited(messages=[{"role": "user", "content": "waiting"}]))
            for _ in range(200)
        ]
        lags: list[float] = []
        while loop.time() < reopens - 0.1:
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            lags.append(loop.time() - due)
        cpu = time.process_time() - cpu_started
        wall = loop.time() - wall_started
        assert not any(task.done() for task in callers)
        for task in callers:  # all give their places back
            task.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        await limited(messages=[{"role": "user", "content": "after"}])
    assert max(lags) < 0.020, f"loop lag up to {max(lags) * 1000:.1f} ms"
    assert cpu < 0.2 * wall, f"{cpu:.3f} s of CPU while waiting {wall:.3f} s"
    assert server.request_count() == 4


async def test_a_429_with_retry_after_pauses_every_caller_of_the_limiter(
    server: OpenAIServer,
) -> None:
    server.enqueue(Fault.status(429, retry_after=1))
    limiter = RateLimiter(RateLimit(requests=1, period=0.25))
    async with (
        chat_for(server) as chat,
        bind_aembedding(
            "openai/text-embedding-3-small",
            api_base=server.base_url,
            api_key="sk-x",
            max_retries=0,
        ) as embed,
    ):
        limited_chat = with_rate_limit(chat, limiter)
        limited_embed = with_rate_limit(embed, limiter)  # the same quota
        failing = asyncio.create_task(limited_chat(messages=[{"role": "user", "content": "1"}]))
        others = [asyncio.create_task(limited_embed(input=f"text {n}")) for n in range(3)]
        with pytest.raises(litellm.RateLimitError):
            await failing
        await asyncio.gather(*others)

    first, *rest = server.requests
    assert first.fault is not None and first.fault.status_code == 429
    assert len(rest) == 3
    assert all(r.path.endswith("/embeddings") for r in rest)
    assert rest[0].arrived_at - first.arrived_at >= 1.0


async def test_real_usage_refunds_the_estimate(server: OpenAIServer) -> None:
    # Each call is charged ~260 tokens up front (max_tokens=250), so without the refund to
    # the ~10 tokens the server reports, only one call would fit per period.
    async with chat_for(server) as chat:
        limited = with_rate_limit(chat, RateLimit(tokens=300, period=PERIOD))
        started = time.monotonic()
        for n in range(5):
            await limited(messages=[{"role": "user", "content": f"call {n}"}], max_tokens=250)
        elapsed = time.monotonic() - started
    assert server.request_count() == 5
    assert elapsed < PERIOD


def test_sync_callers_wait_for_the_window(server: OpenAIServer) -> None:
    with bind_completion(
        "openai/test", api_base=server.base_url, api_key="sk-x", max_retries=0
    ) as chat:
        chat(messages=[{"role": "user", "content": "warm-up"}])  # the first call is slower
        limited = with_rate_limit(chat, RateLimit(requests=2, period=0.5))
        sent = []
        for n in range(3):
            sent.append(time.monotonic())
            limited(messages=[{"role": "user", "content": f"{n}"}])
    _, first, second, third = (r.arrived_at for r in server.requests)
    assert second - first < 0.25
    assert third - sent[0] >= 0.5  # the third waited for the window
    assert third - first >= 0.5 - 0.05  # arrivals: less the unevenness of send delays
