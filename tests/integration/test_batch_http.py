"""abatch/batch against the loopback server: order, isolation of failures, resume."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import litellm
import pytest

from fixedmodel import (
    CompletionRequest,
    DiskCacheStore,
    RetryPolicy,
    abatch,
    aiter_batch,
    batch,
    bind_acompletion,
    bind_completion,
    responses,
    with_cache,
    with_retries,
)
from fixedmodel.testing.server import Fault, OpenAIServer


def _prompt(body: dict[str, Any]) -> str:
    return str(body["messages"][0]["content"])


def _requests(count: int) -> list[CompletionRequest]:
    return [{"messages": [{"role": "user", "content": f"item {i}"}]} for i in range(count)]


@pytest.mark.heavy  # Seconds of fixedmodel's own logic; run at the newest litellm only.
async def test_a_thousand_requests_keep_their_order_and_only_the_bad_ones_fail(
    server: OpenAIServer,
) -> None:
    failing = {f"item {i}" for i in range(0, 1000, 10)}  # 10%
    server.fault_rule = lambda body: Fault.status(400) if _prompt(body) in failing else None
    server.reply_text = "ok"
    async with bind_acompletion("openai/test", api_base=server.base_url, api_key="k") as bound:
        chat = with_retries(bound, RetryPolicy(initial_wait=0.01, max_wait=0.01))
        results = await abatch(chat, _requests(1000), concurrency=32, progress=False)
    assert [result.index for result in results] == list(range(1000))
    assert [result.id for result in results] == [str(i) for i in range(1000)]
    bad = [result.index for result in results if not result.ok]
    assert bad == list(range(0, 1000, 10))
    assert all(isinstance(results[i].error, litellm.BadRequestError) for i in bad)
    assert all(responses.text(r.response) == "ok" for r in results if r.response is not None)
    sent = sorted(_prompt(request.body) for request in server.requests)
    assert sent == sorted(f"item {i}" for i in range(1000))  # each request once


async def test_an_interrupted_batch_resumes_from_the_disk_cache(
    server: OpenAIServer, tmp_path: Path
) -> None:
    server.latency = 0.005
    requests = _requests(60)
    finished = 0
    async with bind_acompletion("openai/test", api_base=server.base_url, api_key="k") as bound:
        chat = with_cache(bound, DiskCacheStore(tmp_path / "cache"))

        async def run_until_half() -> None:
            nonlocal finished
            async for _ in aiter_batch(chat, requests, concurrency=4, progress=False):
                finished += 1
                if finished == 30:
                    raise asyncio.CancelledError  # as a Ctrl-C or a task cancel would

        with pytest.raises(asyncio.CancelledError):
            await run_until_half()
        # Requests cancelled in flight may still be reaching the server: let them land first.
        await asyncio.sleep(0.3)
        first_run = server.request_count()
        server.reset()
        results = await abatch(chat, requests, concurrency=4, progress=False)
    assert all(result.ok for result in results)
    assert first_run >= 30
    resent = sorted(int(_prompt(request.body).split()[1]) for request in server.requests)
    assert resent == sorted(set(resent)), "a request was sent twice in the rerun"
    assert min(resent) >= 30, f"the rerun resent an item answered before: {resent}"
    # Only what was in flight when the first run stopped can have been sent twice.
    assert first_run + len(resent) - 60 <= 4


def test_the_sync_batch_runs_on_threads_in_order(server: OpenAIServer) -> None:
    server.fault_rule = lambda body: Fault.status(401) if _prompt(body) == "item 3" else None
    with bind_completion("openai/test", api_base=server.base_url, api_key="k") as chat:
        results = batch(chat, _requests(20), concurrency=5, ids=[f"r{i}" for i in range(20)])
    assert [result.id for result in results] == [f"r{i}" for i in range(20)]
    assert [result.index for result in results if not result.ok] == [3]
    # litellm maps a 401 to AuthenticationError from 1.109 on, to BadRequestError before.
    assert isinstance(results[3].error, (litellm.AuthenticationError, litellm.BadRequestError))
    assert getattr(results[3].error, "status_code", None) == 401
    assert server.request_count() == 20
