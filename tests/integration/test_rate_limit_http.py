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
import gc
import http.server
import itertools
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import litellm
import pytest

from fixedmodel import bind_acompletion, bind_aembedding, bind_completion
from fixedmodel.middleware.rate_limit import RateLimit, RateLimiter, with_rate_limit
from fixedmodel.stores._limiter_store import Acquisition
from fixedmodel.stores.limiter_memory import MemoryLimiterStore
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


@pytest.mark.heavy  # Seconds of fixedmodel's own logic; run at the newest litellm only.
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
    # The bounds compare with a baseline taken by the same sampler, in the same test, just
    # before the callers start: on a loaded machine the loop lags without any limiter at all.
    async with chat_for(server) as chat:
        limited = with_rate_limit(chat, RateLimit(requests=3, period=2 * PERIOD))
        loop = asyncio.get_running_loop()

        async def sample_lags(until: float) -> list[float]:
            lags: list[float] = []
            while loop.time() < until:
                due = loop.time() + 0.005
                await asyncio.sleep(0.005)
                lags.append(loop.time() - due)
            return lags

        await chat(messages=[{"role": "user", "content": "warm-up"}])  # the first is slower
        server.reset()
        baseline = await sample_lags(loop.time() + 0.4)
        reopens = loop.time() + 2 * PERIOD  # not before this: the budget is spent from now on
        for n in range(3):
            await limited(messages=[{"role": "user", "content": f"first {n}"}])
        cpu_started, wall_started = time.process_time(), loop.time()
        callers = [
            asyncio.create_task(limited(messages=[{"role": "user", "content": "waiting"}]))
            for _ in range(200)
        ]
        lags = await sample_lags(reopens - 0.1)
        cpu = time.process_time() - cpu_started
        wall = loop.time() - wall_started
        assert not any(task.done() for task in callers)
        for task in callers:  # all give their places back
            task.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        await limited(messages=[{"role": "user", "content": "after"}])
    assert len(lags) >= 20, f"only {len(lags)} samples while the callers waited"
    typical, usual = statistics.median(lags), statistics.median(baseline)
    # Waiters that polled or spun would raise the typical lag; one that blocked the loop
    # (a sync sleep until the window reopens) would show a lag of most of a period.
    assert typical <= 2 * usual + 0.005, (
        f"median lag {typical * 1e3:.1f} ms, {usual * 1e3:.1f} ms before"
    )
    worst, noise = max(lags), max(baseline)
    assert worst < 0.020 + 3 * noise, (
        f"loop lag up to {worst * 1e3:.1f} ms, {noise * 1e3:.1f} ms before"
    )
    # process_time counts this process only: other load on the machine lowers the share.
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
        # Baseline under the same load: the same five calls without the limiter.
        started = time.monotonic()
        for n in range(5):
            await chat(messages=[{"role": "user", "content": f"plain {n}"}], max_tokens=250)
        alone = time.monotonic() - started
        server.reset()
        limited = with_rate_limit(chat, RateLimit(tokens=300, period=PERIOD))
        started = time.monotonic()
        for n in range(5):
            await limited(messages=[{"role": "user", "content": f"call {n}"}], max_tokens=250)
        elapsed = time.monotonic() - started
    assert server.request_count() == 5
    # Without the refund, each of the last four calls would wait most of a period.
    assert elapsed - alone < PERIOD


def test_sync_callers_wait_for_the_window(server: OpenAIServer) -> None:
    with bind_completion(
        "openai/test", api_base=server.base_url, api_key="sk-x", max_retries=0
    ) as chat:
        chat(messages=[{"role": "user", "content": "warm-up"}])  # the first call is slower
        # Baseline under the same load: one call's time, from sending to the next arrival.
        started = time.monotonic()
        chat(messages=[{"role": "user", "content": "timed"}])
        one_call = time.monotonic() - started
        limited = with_rate_limit(chat, RateLimit(requests=2, period=0.5))
        sent = []
        for n in range(3):
            sent.append(time.monotonic())
            limited(messages=[{"role": "user", "content": f"{n}"}])
    _, _, first, second, third = (r.arrived_at for r in server.requests)
    # The second is within the limit: one call's time after the first, not a window's.
    assert second - first < 0.1 + 2 * one_call
    assert third - sent[0] >= 0.5  # the third waited for the window
    # Arrivals: the first arrived before its call returned (sent[1]), however slow the machine.
    assert third - first >= 0.5 - (sent[1] - sent[0])


# --- every request on the wire holds a permit ------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault.status(503), Fault.status(429, retry_after=0.2), Fault.status(500)],
    ids=["503", "429 with Retry-After", "500"],
)
async def test_the_sdk_retries_hold_permits_too(server: OpenAIServer, fault: Fault) -> None:
    # No max_retries bound: the openai SDK would retry each request twice under one permit.
    server.enqueue(*([fault] * 50))
    async with bind_acompletion("openai/test", api_base=server.base_url, api_key="sk-x") as chat:
        limited = with_rate_limit(chat, RateLimit(requests=5, period=10.0))
        calls = [
            asyncio.create_task(limited(messages=[{"role": "user", "content": f"{n}"}]))
            for n in range(5)
        ]
        await asyncio.sleep(2.5)  # The SDK's retries would all have gone out by now.
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
    assert server.request_count() == 5


async def test_the_sdk_retries_of_embeddings_hold_permits_too(server: OpenAIServer) -> None:
    # litellm's embedding path turns a plain max_retries=0 back into 2 (see docs/design.md).
    server.enqueue(*([Fault.status(503)] * 50))
    async with bind_aembedding(
        "openai/text-embedding-3-small", api_base=server.base_url, api_key="sk-x"
    ) as embed:
        limited = with_rate_limit(embed, RateLimit(requests=2, period=10.0))
        calls = [asyncio.create_task(limited(input=f"text {n}")) for n in range(2)]
        await asyncio.sleep(2.5)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
    assert server.request_count("/embeddings") == 2


async def test_a_call_the_sdk_retry_would_save_still_succeeds(server: OpenAIServer) -> None:
    server.enqueue(Fault.status(503))
    async with bind_acompletion("openai/test", api_base=server.base_url, api_key="sk-x") as chat:
        limited = with_rate_limit(chat, RateLimit(requests=5, period=10.0))
        answer = await limited(messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == server.reply_text
    assert server.request_count() == 2


# --- streams settle their charge from the usage they report ---------------------------------


STREAM_USAGE = {"stream": True, "stream_options": {"include_usage": True}, "max_tokens": 100}


async def test_a_stream_is_charged_the_usage_it_reports(server: OpenAIServer) -> None:
    server.usage_completion_tokens = 1499  # With the one-word prompt: 1,500 tokens a call.
    async with bind_acompletion(
        "openai/test", api_base=server.base_url, api_key="sk-x", max_retries=0
    ) as chat:
        limited = with_rate_limit(chat, RateLimit(tokens=2000, period=5.0))
        for n in range(2):
            stream = await limited(messages=[{"role": "user", "content": f"{n}"}], **STREAM_USAGE)
            async for _ in stream:
                pass
        # 3,000 tokens were used: the third waits for the window, as it would unstreamed.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                limited(messages=[{"role": "user", "content": "third"}], **STREAM_USAGE), 1.0
            )
    assert server.request_count() == 2


async def test_a_bound_stream_and_an_abandoned_one_are_settled_too(server: OpenAIServer) -> None:
    server.usage_completion_tokens = 1499
    async with bind_acompletion(
        "openai/test",
        api_base=server.base_url,
        api_key="sk-x",
        max_retries=0,
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=100,
    ) as chat:
        limited = with_rate_limit(chat, RateLimit(tokens=2000, period=5.0))
        stream = await limited(messages=[{"role": "user", "content": "bound"}])
        async for chunk in stream:
            if getattr(chunk, "usage", None) is not None:
                break  # Left unfinished, after the usage arrived.
        del stream, chunk
        gc.collect()
        await asyncio.sleep(0.1)  # The settlement is scheduled on the loop.
        stream = await limited(messages=[{"role": "user", "content": "second"}])
        async for _ in stream:
            pass
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(limited(messages=[{"role": "user", "content": "3"}]), 1.0)


def test_a_sync_stream_is_charged_the_usage_it_reports(server: OpenAIServer) -> None:
    server.usage_completion_tokens = 1499
    limit = RateLimit(tokens=2000, period=5.0)
    store = MemoryLimiterStore()
    with bind_completion(
        "openai/test", api_base=server.base_url, api_key="sk-x", max_retries=0
    ) as chat:
        limited = with_rate_limit(chat, RateLimiter(limit, store=store))
        stream = limited(messages=[{"role": "user", "content": "left"}], **STREAM_USAGE)
        for chunk in stream:
            if getattr(chunk, "usage", None) is not None:
                break
        stream.close()  # Closed early, after the usage: settled by the limiter's thread.
        for _ in limited(messages=[{"role": "user", "content": "read"}], **STREAM_USAGE):
            pass
        time.sleep(0.1)
    assert not store.acquire("default", limit, 100).granted


class RemoteLikeStore:
    """A store the limiter treats as remote (its settlements are scheduled, not inline)."""

    def __init__(self) -> None:
        self.inner = MemoryLimiterStore()

    def acquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        return self.inner.acquire(key, limit, tokens)

    async def aacquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        await asyncio.sleep(0)  # A round trip.
        return self.inner.acquire(key, limit, tokens)

    def adjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        self.inner.adjust(key, limit, segment, tokens)

    async def aadjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        await asyncio.sleep(0)
        self.inner.adjust(key, limit, segment, tokens)

    def pause(self, key: str, seconds: float) -> None:
        self.inner.pause(key, seconds)

    async def apause(self, key: str, seconds: float) -> None:
        self.inner.pause(key, seconds)


async def test_a_stream_over_a_remote_store_is_settled_on_the_loop(server: OpenAIServer) -> None:
    server.usage_completion_tokens = 1499
    limit = RateLimit(tokens=2000, period=5.0)
    store = RemoteLikeStore()
    async with bind_acompletion(
        "openai/test", api_base=server.base_url, api_key="sk-x", max_retries=0
    ) as chat:
        limited = with_rate_limit(chat, RateLimiter(limit, store=store))
        for n in range(2):
            stream = await limited(messages=[{"role": "user", "content": f"{n}"}], **STREAM_USAGE)
            async for _ in stream:
                pass
        await asyncio.sleep(0.05)
    assert not store.acquire("default", limit, 100).granted


# --- the estimate never blocks the loop -----------------------------------------------------


class SlowImageHost:
    """A loopback HTTP server that takes 1.5 s to answer, and counts the requests it gets."""

    def __init__(self) -> None:
        self.hits = 0
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.hits += 1
                time.sleep(1.5)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SlowImageHost:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


async def test_an_image_part_is_not_fetched_and_the_loop_keeps_running(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # litellm refuses to fetch from private addresses; with that check off, a loopback host
    # stands for the public image host of the report.
    monkeypatch.setattr(litellm, "user_url_validation", False, raising=False)
    with SlowImageHost() as host:
        image = {"url": host.url("cat.png"), "detail": "high"}
        parts = [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": image}]
        async with bind_acompletion(
            "openai/test", api_base=server.base_url, api_key="sk-x", max_retries=0
        ) as chat:
            limited = with_rate_limit(chat, RateLimit(tokens=100_000))
            loop = asyncio.get_running_loop()
            ticks: list[float] = []

            async def ticker() -> None:
                while True:
                    ticks.append(loop.time())
                    await asyncio.sleep(0.01)

            ticking = asyncio.create_task(ticker())
            await asyncio.sleep(0.05)
            await limited(messages=[{"role": "user", "content": parts}])
            ticking.cancel()
        gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert host.hits == 0
    assert max(gaps) < 1.0, f"the event loop stalled for {max(gaps):.2f} s"
