"""provider_batch over the loopback server's Files and Batches endpoints (OpenAI's Batch API)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fixedmodel import (
    BoundACompletion,
    ProviderBatchLineError,
    bind_acompletion,
    bind_aembedding,
    errors,
    is_cache_hit,
    provider_batch,
    responses,
    with_cache,
    with_fallbacks,
    with_retries,
)
from fixedmodel.stores import DiskCacheStore
from fixedmodel.testing.server import Fault, OpenAIServer

# Fields a live answer and a batch answer differ in by nature: ids and times.
_VOLATILE = ("id", "created")


def _chat(server: OpenAIServer, **defaults: Any) -> BoundACompletion:
    return bind_acompletion(
        "openai/gpt-4o-mini", api_base=server.base_url, api_key="sk-secret-key", **defaults
    )


def _requests(n: int) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": f"document {i}"}]} for i in range(n)]


async def _until(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    """Wait until ``condition()`` holds: the server's state changes on its own thread."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


def _comparable(response: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = response.model_dump()
    for name in _VOLATILE:
        dumped.pop(name, None)
    return dumped


async def test_1200_requests_are_one_upload_one_batch_no_live_call_and_answer_like_live(
    server: OpenAIServer, tmp_path: Path
) -> None:
    server.reply_text = "A short summary."
    chat = _chat(server, temperature=0.2, max_tokens=64, extra_params={"top_k": 3})
    requests = _requests(1200)
    results = await provider_batch(chat, requests, state=tmp_path / "job.json", poll_interval=0)

    assert len(server.batches.uploads) == 1
    assert len(server.batches.batches) == 1
    assert server.request_count("/chat/completions") == 0  # no live call
    assert [r.index for r in results] == list(range(1200))
    assert [r.id for r in results] == [str(i) for i in range(1200)]
    assert all(r.ok for r in results)

    # The same request live: its wire body is the batch line's body, and its answer the same.
    upload = server.batches.uploads[0]
    lines = server.batches.file_lines(upload["id"])
    assert [line["custom_id"] for line in lines] == [str(i) for i in range(1200)]
    live = await chat(**requests[7])
    assert lines[7]["body"] == server.requests[-1].body
    assert lines[7]["url"] == "/v1/chat/completions" and lines[7]["method"] == "POST"
    assert "sk-secret-key" not in json.dumps(lines)
    answer = results[7].response
    assert answer is not None
    assert _comparable(answer) == _comparable(live)
    assert responses.text(answer) == responses.text(live) == "A short summary."
    assert responses.usage(answer) == responses.usage(live)
    await chat.aclose()


async def test_cost_is_litellms_batch_price_below_the_live_price(
    server: OpenAIServer, tmp_path: Path
) -> None:
    import litellm
    from litellm.cost_calculator import batch_cost_calculator

    chat = _chat(server)
    [result] = await provider_batch(chat, _requests(1), state=tmp_path / "s.json", poll_interval=0)
    assert result.response is not None
    usage = result.response.usage  # type: ignore[attr-defined]
    prompt, completion = batch_cost_calculator(usage, "gpt-4o-mini", "openai")
    cost = result.response._hidden_params["response_cost"]
    assert cost == pytest.approx(prompt + completion)
    info = litellm.get_model_info("gpt-4o-mini", "openai")
    live = usage.prompt_tokens * info["input_cost_per_token"]
    live += usage.completion_tokens * info["output_cost_per_token"]
    assert 0 < cost < live  # gpt-4o-mini: half the live price in litellm's cost map


async def test_failed_lines_in_the_output_and_the_error_file_fail_with_the_providers_fields(
    server: OpenAIServer, tmp_path: Path
) -> None:
    def rule(body: dict[str, Any]) -> Fault | None:
        text = body["messages"][0]["content"]
        if text == "document 1":
            return Fault.status(400, message="max_tokens is too large")
        if text == "document 3":
            return Fault.status(500, message="the server broke")
        if text == "document 4":
            return Fault.status(429, message="slow down")
        return None

    server.fault_rule = rule
    chat = _chat(server)
    for where in ("error", "output"):
        server.batches.failed_lines_in = where  # type: ignore[assignment]
        results = await provider_batch(
            chat, _requests(6), state=tmp_path / f"{where}.json", poll_interval=0
        )
        assert [r.ok for r in results] == [True, False, True, False, False, True]
        bad_request = results[1].error
        assert isinstance(bad_request, errors.BadRequestError)
        assert bad_request.status_code == 400
        assert "max_tokens is too large" in str(bad_request)
        assert isinstance(results[3].error, errors.InternalServerError)
        assert isinstance(results[4].error, errors.RateLimitError)
        assert results[4].error.status_code == 429
    assert server.request_count("/chat/completions") == 0
    # The same requests live raise the same classes with the same text.
    for index in (1, 3):
        with pytest.raises(Exception) as live:
            await chat(**_requests(6)[index], max_retries=0)
        batch_error = results[index].error
        assert type(live.value) is type(batch_error)
        assert str(live.value) == str(batch_error)
    await chat.aclose()


async def test_an_expired_batch_sends_exactly_the_rest_in_one_new_batch(
    server: OpenAIServer, tmp_path: Path
) -> None:
    server.batches.expire_after = 4
    chat = _chat(server)

    async def release_after_first_batch() -> None:
        await _until(lambda: [b["status"] for b in server.batches.batches][:1] == ["expired"])
        server.batches.expire_after = None

    releasing = asyncio.ensure_future(release_after_first_batch())
    results = await provider_batch(chat, _requests(10), state=tmp_path / "s.json", poll_interval=0)
    await releasing
    batches = server.batches.batches
    assert [b["status"] for b in batches] == ["expired", "completed"]
    second = server.batches.file_lines(batches[1]["input_file_id"])
    assert [line["custom_id"] for line in second] == [str(i) for i in range(4, 10)]
    assert all(r.ok for r in results)
    assert [r.id for r in results] == [str(i) for i in range(10)]


async def test_lines_still_unanswered_after_max_rounds_fail_with_the_providers_code(
    server: OpenAIServer, tmp_path: Path
) -> None:
    server.batches.expire_after = 2
    chat = _chat(server)
    results = await provider_batch(
        chat, _requests(5), state=tmp_path / "s.json", poll_interval=0, max_rounds=1
    )
    assert [r.ok for r in results] == [True, True, False, False, False]
    error = results[3].error
    assert isinstance(error, ProviderBatchLineError)
    assert error.code == "batch_expired" and error.custom_id == "3"
    assert len(server.batches.batches) == 1


async def test_a_cancelled_batch_sends_the_lines_it_never_ran_again(
    server: OpenAIServer, tmp_path: Path
) -> None:
    server.batches.polls_in_progress = 3
    chat = _chat(server)

    async def cancel_once_running() -> None:
        await _until(lambda: bool(server.batches.batches))
        server.batches.cancel_all()

    cancelling = asyncio.ensure_future(cancel_once_running())
    results = await provider_batch(chat, _requests(6), state=tmp_path / "s.json", poll_interval=0)
    await cancelling
    batches = server.batches.batches
    assert batches[0]["status"] == "cancelled"
    assert batches[-1]["status"] == "completed"
    answered = sum(b["request_counts"]["completed"] for b in batches)
    assert answered == 6  # each line answered exactly once
    assert all(r.ok for r in results)


@pytest.mark.heavy  # 60,000 lines of our own splitting; run at the newest litellm only.
async def test_60000_lines_split_into_two_files_and_a_byte_limit_is_honoured(
    server: OpenAIServer, tmp_path: Path
) -> None:
    # Embeddings: the cheapest answers to rebuild, for the size OpenAI's line limit needs.
    embed = bind_aembedding(
        "openai/text-embedding-3-small", api_base=server.base_url, api_key="sk-x"
    )
    requests = [{"input": "x"} for _ in range(60_000)]
    results = await provider_batch(embed, requests, state=tmp_path / "big.json", poll_interval=0)
    uploads = sorted(server.batches.uploads, key=lambda u: str(u["filename"]))
    sizes = [len(server.batches.file_lines(u["id"])) for u in uploads]
    assert sizes == [50_000, 10_000]
    assert len(server.batches.batches) == 2
    assert len(results) == 60_000 and all(r.ok for r in results)
    chat = _chat(server)

    server.batches.reset()
    limit = 2_000
    results = await provider_batch(
        chat,
        _requests(40),
        state=tmp_path / "small.json",
        poll_interval=0,
        max_bytes_per_file=limit,
    )
    uploads = server.batches.uploads
    assert len(uploads) > 1
    assert all(u["bytes"] <= limit for u in uploads)
    assert sum(len(server.batches.file_lines(u["id"])) for u in uploads) == 40
    assert all(r.ok for r in results)


async def test_with_a_disk_cache_a_rerun_uploads_nothing_and_a_later_live_call_is_a_hit(
    server: OpenAIServer, tmp_path: Path
) -> None:
    chat = with_cache(_chat(server), DiskCacheStore(tmp_path / "cache"))
    requests = _requests(5)
    first = await provider_batch(chat, requests, state=tmp_path / "one.json", poll_interval=0)
    assert len(server.batches.uploads) == 1
    again = await provider_batch(chat, requests, state=tmp_path / "two.json", poll_interval=0)
    assert len(server.batches.uploads) == 1  # nothing new uploaded
    assert all(r.response is not None and is_cache_hit(r.response) for r in again)
    assert [responses.text(r.response) for r in again if r.response] == [
        responses.text(r.response) for r in first if r.response
    ]
    live = await chat(**requests[2])
    assert is_cache_hit(live)
    assert server.request_count("/chat/completions") == 0
    await chat.aclose()


@pytest.mark.heavy  # Kills a child interpreter; run at the newest litellm only.
async def test_a_resume_after_a_kill_finds_the_upload_and_the_batch_instead_of_making_new_ones(
    server: OpenAIServer, tmp_path: Path
) -> None:
    state = tmp_path / "job.json"
    server.batches.polls_in_progress = 10_000  # the batch runs until the test lets it end
    script = tmp_path / "job.py"
    script.write_text(
        "import asyncio, sys\n"
        "from fixedmodel import bind_acompletion, provider_batch\n"
        "chat = bind_acompletion('openai/gpt-4o-mini', api_base=sys.argv[1], api_key='sk-x')\n"
        "reqs = [{'messages': [{'role': 'user', 'content': f'document {i}'}]} for i in range(8)]\n"
        "asyncio.run(provider_batch(chat, reqs, state=sys.argv[2], poll_interval=0.05))\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), server.base_url, str(state), env=env
    )
    try:
        await _until(lambda: state.exists() and "batch-" in state.read_text(), seconds=120)
        assert child.returncode is None, "the job ended before its batch was created"
        await asyncio.sleep(0.2)  # polling now
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert len(server.batches.uploads) == 1 and len(server.batches.batches) == 1

    server.batches.polls_in_progress = 1
    results = await provider_batch(_chat(server), _requests(8), state=state, poll_interval=0)
    assert len(server.batches.uploads) == 1  # no new upload
    assert len(server.batches.batches) == 1  # no new batch
    assert all(r.ok for r in results)


async def test_a_kill_between_upload_and_record_finds_the_file_by_its_name(
    server: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fixedmodel import _batch_api

    state = tmp_path / "job.json"
    real_upload = _batch_api.BatchAPI.upload

    async def upload_then_die(self: Any, name: str, path: Path) -> str:
        await real_upload(self, name, path)
        raise RuntimeError("killed")  # before the file id reached the state

    monkeypatch.setattr(_batch_api.BatchAPI, "upload", upload_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        await provider_batch(_chat(server), _requests(3), state=state, poll_interval=0)
    monkeypatch.setattr(_batch_api.BatchAPI, "upload", real_upload)
    results = await provider_batch(_chat(server), _requests(3), state=state, poll_interval=0)
    assert len(server.batches.uploads) == 1
    assert len(server.batches.batches) == 1
    assert all(r.ok for r in results)


async def test_a_state_for_other_requests_or_another_model_is_refused(
    server: OpenAIServer, tmp_path: Path
) -> None:
    state = tmp_path / "job.json"
    await provider_batch(_chat(server), _requests(3), state=state, poll_interval=0)
    with pytest.raises(ValueError, match="other requests"):
        await provider_batch(_chat(server), _requests(4), state=state, poll_interval=0)
    other = bind_acompletion("openai/gpt-4o", api_base=server.base_url, api_key="sk-x")
    with pytest.raises(ValueError, match="gpt-4o-mini"):
        await provider_batch(other, _requests(3), state=state, poll_interval=0)
    assert len(server.batches.batches) == 1


async def test_interrupted_while_polling_leaves_the_batch_running_and_says_how_to_resume(
    server: OpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.batches.polls_in_progress = 10_000
    state = tmp_path / "job.json"
    job = asyncio.ensure_future(
        provider_batch(_chat(server), _requests(3), state=state, poll_interval=0.01)
    )
    await _until(lambda: bool(server.batches.batches))
    await asyncio.sleep(0.05)
    with caplog.at_level(logging.WARNING, logger="fixedmodel.provider_batch"):
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
    [batch] = server.batches.batches
    assert batch["status"] == "in_progress"  # still running at the provider
    assert batch["id"] in caplog.text and str(state) in caplog.text


async def test_embeddings(server: OpenAIServer, tmp_path: Path) -> None:
    embed = bind_aembedding(
        "openai/text-embedding-3-small", api_base=server.base_url, api_key="sk-x", dimensions=8
    )
    results = await provider_batch(
        embed, [{"input": ["a b", "c"]}, {"input": "d"}], state=tmp_path / "e.json", poll_interval=0
    )
    live = await embed(input=["a b", "c"])
    [upload] = server.batches.uploads
    lines = server.batches.file_lines(upload["id"])
    assert lines[0]["url"] == "/v1/embeddings"
    assert lines[0]["body"]["dimensions"] == 8
    first = results[0].response
    assert first is not None
    assert responses.embeddings(first) == responses.embeddings(live)
    await embed.aclose()


async def test_azure_wire_format(server: OpenAIServer, tmp_path: Path) -> None:
    root = server.base_url.removesuffix("/v1")
    chat = bind_acompletion(
        "azure/my-deployment", api_base=root, api_key="azure-key", api_version="2024-10-21"
    )
    results = await provider_batch(chat, _requests(2), state=tmp_path / "a.json", poll_interval=0)
    assert all(r.ok for r in results)
    [upload] = server.batches.uploads
    lines = server.batches.file_lines(upload["id"])
    assert lines[0]["url"] == "/chat/completions"
    assert lines[0]["body"]["model"] == "my-deployment"
    paths = [path for _, path, _ in server.batches.calls]
    assert all(p.startswith("/openai/") and "api-version=2024-10-21" in p for p in paths)
    assert all(headers.get("api-key") == "azure-key" for _, _, headers in server.batches.calls)
    assert server.batches.batches[0]["endpoint"] == "/chat/completions"


async def test_layers_that_cannot_apply_are_refused_naming_them(
    server: OpenAIServer, tmp_path: Path
) -> None:
    a, b = _chat(server), bind_acompletion("openai/gpt-4o", api_base=server.base_url)
    with pytest.raises(ValueError, match="with_fallbacks"):
        await provider_batch(with_fallbacks(a, b), _requests(1), state=tmp_path / "s.json")
    anthropic = bind_acompletion("anthropic/claude-3-5-haiku-latest")
    with pytest.raises(ValueError, match="'anthropic' is not supported"):
        await provider_batch(anthropic, _requests(1), state=tmp_path / "s.json")
    with pytest.raises(ValueError, match="share the custom_id 'x'"):
        await provider_batch(a, _requests(2), state=tmp_path / "s.json", ids=["x", "x"])
    # Retries govern live requests; a batch makes none, and runs through them.
    results = await provider_batch(
        with_retries(a), _requests(2), state=tmp_path / "r.json", poll_interval=0
    )
    assert all(r.ok for r in results)
    assert server.batches.uploads and not (tmp_path / "s.json").exists()


async def test_progress_follows_the_providers_request_counts_then_the_results(
    server: OpenAIServer, tmp_path: Path
) -> None:
    from fixedmodel import BatchProgress

    server.batches.polls_in_progress = 3
    seen: list[BatchProgress] = []
    also: list[BatchProgress] = []
    results = await provider_batch(
        _chat(server),
        _requests(8),
        state=tmp_path / "s.json",
        poll_interval=0,
        progress=seen.append,
        on_progress=also.append,
    )
    assert all(r.ok for r in results)
    polled = [p for p in seen if p.done == 0]
    assert [p.provider_status for p in polled][:1] == ["in_progress"]
    counts = [p.provider_completed for p in polled]
    assert counts == sorted(counts) and counts[-1] > counts[0]  # grows as the provider works
    assert seen[-1].done == 8 and seen[-1].provider_completed == 8
    assert seen[-1].prompt_tokens > 0 and seen[-1].cost > 0
    assert also == seen


async def test_the_servers_responder_answers_batch_lines_as_it_answers_live_calls(
    server: OpenAIServer, tmp_path: Path
) -> None:
    server.responder = lambda request: f"summary of {request.messages[-1]['content']}"
    results = await provider_batch(
        _chat(server), _requests(3), state=tmp_path / "s.json", poll_interval=0
    )
    assert [responses.text(r.response) for r in results if r.response is not None] == [
        f"summary of document {i}" for i in range(3)
    ]


async def test_a_budget_reserves_at_the_batch_price_and_settles_from_usage(
    server: OpenAIServer, tmp_path: Path
) -> None:
    import litellm

    from fixedmodel import Budget, with_budget

    info = litellm.get_model_info("gpt-4o-mini", "openai")
    # Room for the worst case of 5 lines (64 output tokens each) at the batch price, but not 6.
    prompt = litellm.token_counter(model="gpt-4o-mini", messages=_requests(1)[0]["messages"])
    batch_worst = prompt * info["input_cost_per_token_batches"]
    batch_worst += 64 * info["output_cost_per_token_batches"]
    budget = Budget(max_cost=5.5 * batch_worst * 1.2)
    chat = with_budget(_chat(server, max_tokens=64), budget)
    results = await provider_batch(chat, _requests(8), state=tmp_path / "s.json", poll_interval=0)

    answered = [r for r in results if r.ok]
    refused = [r for r in results if isinstance(r.error, litellm.BudgetExceededError)]
    assert answered and refused and len(answered) + len(refused) == 8
    [upload] = server.batches.uploads
    sent = {line["custom_id"] for line in server.batches.file_lines(upload["id"])}
    assert sent == {r.id for r in answered}  # refused lines were never uploaded
    status = await budget.astatus()
    spent = sum(r.response._hidden_params["response_cost"] for r in answered if r.response)
    assert status.cost == pytest.approx(spent, rel=1e-6)  # settled from usage, batch price
    assert status.cost_in_flight == 0  # nothing left held
