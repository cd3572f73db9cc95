"""Budgets in the field: streams that fail or are dropped, the end of the loop, pacing.

The scenarios take a ``make_budget`` so that ``tests/integration/test_redis_budget_field.py``
runs the same ones over a real Redis.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import litellm
import pytest

from fixedmodel import (
    Budget,
    bind_acompletion,
    responses,
    with_budget,
    with_cache,
    with_fallbacks,
    with_load_balancing,
    with_retries,
)
from fixedmodel.middleware.retries import RetryPolicy
from fixedmodel.routing._chain import has_next_in_chain
from fixedmodel.routing.budget import budget_pacing
from fixedmodel.testing import (
    Fail,
    FakeACompletion,
    FakeCompletion,
    FakeEmbedding,
    FakeUsage,
    Reply,
)

MakeBudget = Callable[..., Budget]

MESSAGES = [{"role": "user", "content": "Hi"}]
MODEL = "gpt-4o-mini"
USAGE = FakeUsage(prompt_tokens=10, completion_tokens=20)
WORDS = Reply("one two three four", chunks=["one ", "two ", "three ", "four"])


def _price(prompt: int, completion: int) -> float:
    info = litellm.get_model_info(MODEL)
    return prompt * info["input_cost_per_token"] + completion * info["output_cost_per_token"]


def _worst(chat: Any, **kwargs: Any) -> tuple[float, int]:
    cost, tokens = chat._worst_case(chat._read(kwargs))
    return cost / 1e9, tokens


def memory_budget(**options: Any) -> Budget:
    return Budget(**options)


class FailingAStream(FakeACompletion):
    """litellm streams whose iteration fails before the first chunk."""

    async def __call__(self, **kwargs: Any) -> Any:
        stream = await super().__call__(**kwargs)

        async def failing() -> AsyncIterator[Any]:
            raise ConnectionResetError("the provider hung up")
            yield  # An async generator.

        stream.completion_stream = failing()
        return stream


class FailingStream(FakeCompletion):
    """Sync litellm streams whose iteration fails before the first chunk."""

    def __call__(self, **kwargs: Any) -> Any:
        stream = super().__call__(**kwargs)

        def failing() -> Any:
            raise ConnectionResetError("the provider hung up")
            yield  # A generator.

        stream.completion_stream = failing()
        return stream


# Item 14: failed and abandoned streams -------------------------------------------------


async def scenario_async_streams_dropped_or_failed(make_budget: MakeBudget, ending: str) -> None:
    probe: Any = with_budget(FakeACompletion(model=MODEL), Budget(max_cost=1.0))
    worst, _ = _worst(probe, messages=MESSAGES, stream=True, max_tokens=10_000)
    budget = make_budget(max_cost=20 * worst)  # Twenty worst cases; 38 streams follow.
    dropped = with_budget(FakeACompletion(lambda call: WORDS, model=MODEL), budget)
    failing = with_budget(FailingAStream(lambda call: WORDS, model=MODEL), budget)
    for _ in range(19):
        stream: Any = await dropped(messages=MESSAGES, stream=True, max_tokens=10_000)
        async for _chunk in stream:
            break  # One chunk reached the caller.
        if ending == "aclose":
            await stream.aclose()
        elif ending == "close":
            stream.close()
        del stream  # "break": the caller dropped it, which ends it once collected.
        stream = await failing(messages=MESSAGES, stream=True, max_tokens=10_000)
        with pytest.raises(Exception, match="hung up"):
            async for _chunk in stream:
                pass
        del stream
    gc.collect()
    status = await budget.astatus()
    prompt = litellm.token_counter(model=MODEL, messages=MESSAGES)
    delivered = litellm.token_counter(model=MODEL, text="one ")
    assert status.tokens == 19 * (prompt + delivered)  # The failures are refunded.
    assert status.cost == pytest.approx(19 * _price(prompt, delivered), rel=1e-6)
    assert status.requests == 38
    answer = await with_budget(FakeACompletion(["next"], model=MODEL), budget)(
        messages=MESSAGES, max_tokens=10_000
    )
    assert responses.text(answer) == "next"


@pytest.mark.parametrize("ending", ["aclose", "close", "break"])
async def test_async_streams_dropped_or_failed_give_their_reservation_back(ending: str) -> None:
    await scenario_async_streams_dropped_or_failed(memory_budget, ending)


def scenario_sync_streams_dropped_or_failed(make_budget: MakeBudget, ending: str) -> None:
    probe: Any = with_budget(FakeCompletion(model=MODEL), Budget(max_cost=1.0))
    worst, _ = _worst(probe, messages=MESSAGES, stream=True, max_tokens=10_000)
    budget = make_budget(max_cost=20 * worst)
    dropped = with_budget(FakeCompletion(lambda call: WORDS, model=MODEL), budget)
    failing = with_budget(FailingStream(lambda call: WORDS, model=MODEL), budget)
    for _ in range(19):
        stream: Any = dropped(messages=MESSAGES, stream=True, max_tokens=10_000)
        for _chunk in stream:
            break
        if ending == "close":
            stream.close()
        del stream
        stream = failing(messages=MESSAGES, stream=True, max_tokens=10_000)
        with pytest.raises(Exception, match="hung up"):
            for _chunk in stream:
                pass
        del stream
    # A dropped stream settles when it is collected; litellm's logging threads may still
    # hold one for a moment after the loop (seen on a busy machine), so wait for them.
    deadline = time.monotonic() + 10.0
    gc.collect()
    while budget.status().cost_in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
        gc.collect()
    status = budget.status()
    prompt = litellm.token_counter(model=MODEL, messages=MESSAGES)
    delivered = litellm.token_counter(model=MODEL, text="one ")
    assert status.tokens == 19 * (prompt + delivered)
    assert status.cost == pytest.approx(19 * _price(prompt, delivered), rel=1e-6)
    answer = with_budget(FakeCompletion(["next"], model=MODEL), budget)(
        messages=MESSAGES, max_tokens=10_000
    )
    assert responses.text(answer) == "next"


@pytest.mark.parametrize("ending", ["close", "break"])
def test_sync_streams_dropped_or_failed_give_their_reservation_back(ending: str) -> None:
    scenario_sync_streams_dropped_or_failed(memory_budget, ending)


def _role_only() -> Any:
    """The chunk OpenAI-compatible streams open with: a role, empty content."""
    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

    delta = Delta(role="assistant", content="")
    return ModelResponseStream(model=MODEL, choices=[StreamingChoices(index=0, delta=delta)])


class RoleThenFailingStream(FakeCompletion):
    """Sync litellm streams that hand over the role-only chunk, then fail."""

    def __call__(self, **kwargs: Any) -> Any:
        stream = super().__call__(**kwargs)

        def failing() -> Any:
            yield _role_only()
            raise ConnectionResetError("the provider hung up")

        stream.completion_stream = failing()
        return stream


class RoleThenFailingAStream(FakeACompletion):
    """Async litellm streams that hand over the role-only chunk, then fail."""

    async def __call__(self, **kwargs: Any) -> Any:
        stream = await super().__call__(**kwargs)

        async def failing() -> AsyncIterator[Any]:
            yield _role_only()
            raise ConnectionResetError("the provider hung up")

        stream.completion_stream = failing()
        return stream


async def scenario_streams_failing_after_the_role_chunk(make_budget: MakeBudget) -> None:
    # The role-only chunk reached the caller, then the stream failed: it kept the prompt's
    # estimate charged, though the caller got nothing it could use (a stream failing before
    # any chunk is refunded).
    budget = make_budget(max_cost=1.0, max_tokens=100_000)
    sync_chat = with_budget(RoleThenFailingStream(lambda call: WORDS, model=MODEL), budget)
    async_chat = with_budget(RoleThenFailingAStream(lambda call: WORDS, model=MODEL), budget)
    received: list[Any] = []
    with pytest.raises(Exception, match="hung up"):
        for chunk in sync_chat(messages=MESSAGES, stream=True, max_tokens=100):
            received.append(chunk)
    with pytest.raises(Exception, match="hung up"):
        async for chunk in await async_chat(messages=MESSAGES, stream=True, max_tokens=100):
            received.append(chunk)
    assert len(received) == 2  # The role-only chunk reached the caller, twice.
    status = await budget.astatus()
    assert (status.cost, status.tokens, status.requests) == (0.0, 0, 2)
    assert (status.cost_in_flight, status.tokens_in_flight) == (0.0, 0)


async def test_a_stream_failing_after_the_role_only_chunk_is_refunded() -> None:
    await scenario_streams_failing_after_the_role_chunk(memory_budget)


async def test_a_stream_closed_part_way_settles_its_usage_when_it_reported_one() -> None:
    budget = Budget(max_cost=1.0)
    usage_first = Reply("a b", usage=USAGE, chunks=["a ", "b"])
    chat = with_budget(FakeACompletion(lambda call: usage_first, model=MODEL), budget)
    stream: Any = await chat(
        messages=MESSAGES, stream=True, stream_options={"include_usage": True}, max_tokens=500
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None
    assert (await budget.astatus()).tokens == 30


# Item 15: the end of the loop ------------------------------------------------------------


def scenario_settled_before_asyncio_run_returns(make_budget: MakeBudget, mocked: bool) -> None:
    budget = make_budget(max_cost=1.0)
    inner: Any = (
        bind_acompletion(f"openai/{MODEL}", mock_response="Hello.")
        if mocked
        else FakeACompletion(lambda call: Reply("Hello.", usage=USAGE), model=MODEL)
    )
    chat = with_budget(inner, budget)
    seen: list[Any] = []

    async def main() -> Any:
        stream: Any = await chat(
            messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            seen.append(chunk)
        return await budget.astatus()  # At once: no turn of the loop in between.

    at_end = asyncio.run(main())
    usage = seen[-1].usage
    real = _price(usage.prompt_tokens, usage.completion_tokens)
    for status in (at_end, budget.status()):
        assert status.tokens == usage.prompt_tokens + usage.completion_tokens
        assert status.cost == pytest.approx(real, rel=1e-6)


@pytest.mark.parametrize("mocked", [False, True], ids=["fake", "litellm mock"])
def test_an_async_stream_is_settled_before_its_end_reaches_the_caller(mocked: bool) -> None:
    scenario_settled_before_asyncio_run_returns(memory_budget, mocked)


# Item 13: exact bookkeeping under errors, cancellations and cache hits ---------------------


async def scenario_exact_under_errors_cancellations_and_hits(make_budget: MakeBudget) -> None:
    budget = make_budget(max_cost=1.0)
    release = asyncio.Event()

    def answer(call: Any) -> Any:
        text = str(call.messages[-1]["content"])
        if text == "fail":
            return Fail(503)
        return Reply("ok", usage=USAGE)

    class Slow(FakeACompletion):
        async def __call__(self, **kwargs: Any) -> Any:
            if kwargs["messages"][-1]["content"] == "slow":
                await release.wait()
            return await super().__call__(**kwargs)

    chat = with_budget(with_cache(Slow(answer, model=MODEL)), budget)
    await chat(messages=MESSAGES, max_tokens=1000)
    await chat(messages=MESSAGES, max_tokens=1000)  # A cache hit under the budget.
    with pytest.raises(litellm.ServiceUnavailableError):
        await chat(messages=[{"role": "user", "content": "fail"}], max_tokens=1000)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(
            chat(messages=[{"role": "user", "content": "slow"}], max_tokens=1000), 0.05
        )
    stream: Any = await chat(
        messages=MESSAGES, stream=True, stream_options={"include_usage": True}, max_tokens=1000
    )
    async for _chunk in stream:
        pass
    status = await budget.astatus()
    assert status.cost == pytest.approx(2 * _price(10, 20), rel=1e-6)
    assert status.tokens == 60
    assert status.requests == 5


async def test_bookkeeping_is_exact_under_errors_cancellations_and_cache_hits() -> None:
    await scenario_exact_under_errors_cancellations_and_hits(memory_budget)


# Item 5: pacing instead of refusing ------------------------------------------------------


class Gated(FakeACompletion):
    """Calls that wait for the test to let them answer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = 0
        self.gate = asyncio.Event()

    async def __call__(self, **kwargs: Any) -> Any:
        self.started += 1
        await self.gate.wait()
        return await super().__call__(**kwargs)


async def scenario_pacing(make_budget: MakeBudget) -> None:
    probe: Any = with_budget(FakeACompletion(model=MODEL), Budget(max_cost=1.0))
    worst, _ = _worst(probe, messages=MESSAGES)  # No max_tokens: the whole output window.
    budget = make_budget(max_cost=3.5 * worst, max_wait=30.0)
    fake = Gated(lambda call: Reply("ok", usage=USAGE), model=MODEL)
    chat = with_budget(fake, budget)
    calls = [asyncio.ensure_future(chat(messages=MESSAGES)) for _ in range(10)]
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert fake.started == 3  # The cap holds three worst cases; the others wait.
    assert not any(call.done() for call in calls)
    in_flight = await budget.astatus()
    assert in_flight.cost_in_flight == pytest.approx(in_flight.cost)
    assert 3 * worst <= in_flight.cost_in_flight <= 3.5 * worst  # Prompts bounded by bytes.
    fake.gate.set()
    answers = await asyncio.gather(*calls)
    assert [responses.text(a) for a in answers] == ["ok"] * 10
    status = await budget.astatus()
    assert status.cost == pytest.approx(10 * _price(10, 20), rel=1e-6)
    assert status.requests == 10


async def test_calls_wait_for_reservations_in_flight_instead_of_failing() -> None:
    await scenario_pacing(memory_budget)


async def test_without_max_wait_calls_past_the_reservations_are_refused() -> None:
    probe: Any = with_budget(FakeACompletion(model=MODEL), Budget(max_cost=1.0))
    worst, _ = _worst(probe, messages=MESSAGES)
    budget = Budget(max_cost=3.5 * worst)
    fake = Gated(lambda call: Reply("ok", usage=USAGE), model=MODEL)
    chat = with_budget(fake, budget)
    calls = [asyncio.ensure_future(chat(messages=MESSAGES)) for _ in range(5)]
    await asyncio.sleep(0.05)
    fake.gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r for r in results if isinstance(r, litellm.BudgetExceededError)]
    assert len(refused) == 2
    assert "held by calls in flight" in str(refused[0])


async def test_budget_pacing_sets_the_wait_of_budgets_that_set_none() -> None:
    probe: Any = with_budget(FakeACompletion(model=MODEL), Budget(max_cost=1.0))
    worst, _ = _worst(probe, messages=MESSAGES)
    budget = Budget(max_cost=1.5 * worst)
    fake = Gated(lambda call: Reply("ok", usage=USAGE), model=MODEL)
    chat = with_budget(fake, budget)
    with budget_pacing(30.0):
        calls = [asyncio.ensure_future(chat(messages=MESSAGES)) for _ in range(3)]
    await asyncio.sleep(0.05)
    fake.gate.set()
    assert len(await asyncio.gather(*calls)) == 3


async def test_a_paced_call_waits_inside_a_fallback_chain_too() -> None:
    # Pacing slows calls down; it does not move them to the next model of a chain.
    probe: Any = with_budget(FakeACompletion(model=MODEL), Budget(max_cost=1.0))
    worst, _ = _worst(probe, messages=MESSAGES)
    budget = Budget(max_cost=1.5 * worst, max_wait=30.0)
    fake = Gated(lambda call: Reply("ok", usage=USAGE), model=MODEL)
    chat = with_budget(fake, budget)
    token = has_next_in_chain.set(True)
    try:
        calls = [asyncio.ensure_future(chat(messages=MESSAGES)) for _ in range(2)]
    finally:
        has_next_in_chain.reset(token)
    await asyncio.sleep(0.05)
    assert fake.started == 1 and not any(call.done() for call in calls)
    fake.gate.set()
    assert len(await asyncio.gather(*calls)) == 2


async def test_a_call_that_spending_alone_refuses_is_refused_at_once() -> None:
    probe: Any = with_budget(FakeACompletion(model=MODEL), Budget(max_cost=1.0))
    worst, _ = _worst(probe, messages=MESSAGES, max_tokens=1000)
    budget = Budget(max_cost=1.5 * worst, max_wait=60.0)
    spend = Reply("ok", usage=FakeUsage(prompt_tokens=10, completion_tokens=900))
    chat = with_budget(FakeACompletion(lambda call: spend, model=MODEL), budget)
    await chat(messages=MESSAGES, max_tokens=1000)  # Spends most of one worst case.
    started = time.monotonic()
    with pytest.raises(litellm.BudgetExceededError):
        await chat(messages=MESSAGES, max_tokens=1000)
    assert time.monotonic() - started < 30.0  # Not the 60 s of max_wait: nothing to wait for.


def test_the_wait_is_bounded() -> None:
    probe: Any = with_budget(FakeCompletion(model=MODEL), Budget(max_cost=1.0))
    worst, _ = _worst(probe, messages=MESSAGES)
    budget = Budget(max_cost=1.5 * worst, max_wait=0.3)
    chat = with_budget(FakeCompletion(lambda call: WORDS, model=MODEL), budget)
    held: Any = chat(messages=MESSAGES, stream=True)  # In flight while unread.
    started = time.monotonic()
    with pytest.raises(litellm.BudgetExceededError, match="after waiting"):
        chat(messages=MESSAGES)
    assert time.monotonic() - started >= 0.3
    held.close()
    assert responses.text(chat(messages=MESSAGES)) == "one two three four"


def test_max_wait_is_checked() -> None:
    with pytest.raises(ValueError, match="max_wait"):
        Budget(max_cost=1.0, max_wait=-1.0)
    with pytest.raises(ValueError, match="max_wait"):
        Budget(max_cost=1.0, max_wait=float("inf"))


async def test_no_leak_when_calls_fail_are_retried_and_fall_back() -> None:
    # The first-day batch: a primary failing for a while, retries, a fallback, concurrency 16,
    # no max_tokens. Every reservation comes back; the cap only paces.
    probe: Any = with_budget(FakeACompletion(model=MODEL), Budget(max_cost=1.0))
    worst, _ = _worst(probe, messages=MESSAGES)
    budget = Budget(max_cost=4.5 * worst, max_wait=30.0)
    failures = iter(range(60))

    def primary_answer(call: Any) -> Any:
        return Fail(503) if next(failures, None) is not None else Reply("p", usage=USAGE)

    primary = with_retries(
        with_budget(FakeACompletion(primary_answer, model=MODEL), budget),
        RetryPolicy(max_attempts=2, initial_wait=0.0, max_wait=0.0, jitter=0.0),
    )
    backup = with_budget(FakeACompletion(lambda call: Reply("b", usage=USAGE), model=MODEL), budget)
    chat = with_fallbacks(primary, backup)
    gate = asyncio.Semaphore(16)

    async def one() -> str:
        async with gate:
            return responses.text(await chat(messages=MESSAGES))

    answers = await asyncio.gather(*(one() for _ in range(300)))
    assert len(answers) == 300
    status = await budget.astatus()
    assert status.cost == pytest.approx(300 * _price(10, 20), rel=1e-6)
    assert status.tokens == 300 * 30


async def test_a_batch_paces_a_budget_by_default_instead_of_refusing_items() -> None:
    from fixedmodel import abatch, batch

    probe: Any = with_budget(FakeACompletion(model=MODEL), Budget(max_cost=1.0))
    worst, _ = _worst(probe, messages=MESSAGES)
    requests: list[Any] = [{"messages": MESSAGES} for _ in range(12)]

    class Slow(FakeACompletion):
        async def __call__(self, **kwargs: Any) -> Any:
            await asyncio.sleep(0.01)
            return await super().__call__(**kwargs)

    class SlowSync(FakeCompletion):
        def __call__(self, **kwargs: Any) -> Any:
            time.sleep(0.01)
            return super().__call__(**kwargs)

    def answer(call: Any) -> Reply:
        return Reply("ok", usage=USAGE)

    # Async: the cap holds three worst cases; 12 items at concurrency 8 all answer.
    chat = with_budget(Slow(answer, model=MODEL), Budget(max_cost=3.5 * worst))
    results = await abatch(chat, requests, concurrency=8)
    assert [r.error for r in results] == [None] * 12
    # The same budget called by hand at that concurrency refuses (no pacing outside a batch).
    bare = with_budget(Slow(answer, model=MODEL), Budget(max_cost=3.5 * worst))
    outcomes = await asyncio.gather(
        *(bare(messages=MESSAGES) for _ in range(8)), return_exceptions=True
    )
    assert any(isinstance(o, litellm.BudgetExceededError) for o in outcomes)

    # Sync: the batch's threads are paced too.
    sync_chat = with_budget(SlowSync(answer, model=MODEL), Budget(max_cost=3.5 * worst))
    sync_results = await asyncio.to_thread(batch, sync_chat, requests, concurrency=8)
    assert [r.error for r in sync_results] == [None] * 12


# --- text with no UTF-8 form ---------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        {"messages": [{"role": "user", "content": "cut: \ud83d"}]},
        {"input": "cut: \ud83d"},
        {"input": ["fine", "cut: \ud83d"]},
    ],
    ids=["message", "embedding input", "embedding inputs"],
)
def test_a_request_holding_a_lone_surrogate_is_bounded_not_raised(
    request_: dict[str, Any],
) -> None:
    # The UTF-8 bound of the prompt used to raise UnicodeEncodeError before any request.
    fake = (
        FakeCompletion(["ok"], model=MODEL)
        if "messages" in request_
        else FakeEmbedding(
            [[[0.5]] * len(request_["input"]) if isinstance(request_["input"], list) else [0.5]],
            model="text-embedding-3-small",
        )
    )
    chat: Any = with_budget(fake, Budget(max_cost=1.0))
    chat(**request_)
    assert chat.budget.status().requests == 1


# A budget over a chain: the model that answers may not be the first --------------------------


def _cost(model: str, prompt: int, completion: int) -> float:
    info = litellm.get_model_info(model)
    return prompt * info["input_cost_per_token"] + completion * info["output_cost_per_token"]


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_a_budget_over_a_chain_charges_the_model_that_answered(stream: bool) -> None:
    # gpt-4o answers for gpt-4o-mini at about 17 times its price: the stream was settled
    # from its usage at gpt-4o-mini's price.
    budget = Budget(max_cost=1.0)
    primary = FakeCompletion([Fail(503)], model=f"openai/{MODEL}")
    backup = FakeCompletion([Reply("a b", usage=USAGE, chunks=["a ", "b"])], model="openai/gpt-4o")
    chat = with_budget(with_fallbacks(primary, backup), budget)
    if stream:
        options = {"stream_options": {"include_usage": True}}
        assert list(chat(messages=MESSAGES, stream=True, max_tokens=50, **options))[-1].usage
    else:
        assert responses.text(chat(messages=MESSAGES, max_tokens=50)) == "a b"
    assert budget.status().cost == pytest.approx(_cost("openai/gpt-4o", 10, 20), abs=2e-9)


def test_the_worst_case_of_a_chain_is_that_of_its_dearest_model() -> None:
    # 1,000 output tokens cost 0.0006 USD at gpt-4o-mini's price, 0.01 at gpt-4o's: a cap
    # of 0.005 must not let through a call the fallback may answer.
    primary = FakeCompletion([Fail(503)], model=f"openai/{MODEL}")
    backup = FakeCompletion(["x"], model="openai/gpt-4o")
    chat: Any = with_budget(with_fallbacks(primary, backup), Budget(max_cost=0.005))
    cost, _ = _worst(chat, messages=MESSAGES, max_tokens=1_000)
    assert cost >= _cost("openai/gpt-4o", 0, 1_000)
    with pytest.raises(litellm.BudgetExceededError):
        chat(messages=MESSAGES, max_tokens=1_000)
    assert primary.calls == []
    assert backup.calls == []


def test_an_unpriced_member_that_answers_counts_its_tokens_not_the_chains_worst_case() -> None:
    # The chain reserves at gpt-4o's worst case; the unpriced primary answered, and its 30
    # tokens were charged that whole worst case (about 0.28 USD), as if gpt-4o had written
    # its longest answer. unknown_price='count_tokens' counts an unpriced model's tokens.
    budget = Budget(max_cost=1.0)
    primary = FakeCompletion([Reply("a b", usage=USAGE)], model="custom/not-priced")
    backup = FakeCompletion(["x"], model="openai/gpt-4o")
    chat = with_budget(with_fallbacks(primary, backup), budget)
    chat(messages=MESSAGES)
    status = budget.status()
    assert (status.cost, status.tokens, status.requests) == (0.0, 30, 1)


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
@pytest.mark.parametrize("router", ["fallbacks", "load_balancing"])
async def test_an_unpriced_member_after_a_priced_one_counts_its_tokens(
    stream: bool, router: str
) -> None:
    # The priced first member failed and the unpriced one answered: litellm priced nothing,
    # and the answer was priced at the first member's rates (as if gpt-4o had written it).
    for asynchronous in (False, True):
        budget = Budget(max_cost=1.0)
        answer = Reply("a b", usage=USAGE, chunks=["a ", "b"])
        fake = FakeACompletion if asynchronous else FakeCompletion
        priced = fake([Fail(503)], model="openai/gpt-4o")
        unpriced = fake([answer], model="custom/not-priced")
        stack: Any = (
            with_fallbacks(priced, unpriced)
            if router == "fallbacks"
            else with_load_balancing([priced, unpriced], strategy="round_robin")
        )
        chat: Any = with_budget(stack, budget)
        options: dict[str, Any] = {"messages": MESSAGES, "max_tokens": 50}
        if stream:
            options |= {"stream": True, "stream_options": {"include_usage": True}}
        result = await chat(**options) if asynchronous else chat(**options)
        if stream and asynchronous:
            assert [chunk async for chunk in result][-1].usage
        elif stream:
            assert list(result)[-1].usage
        status = budget.status()
        assert len(priced.calls) == 1
        assert (status.cost, status.tokens, status.requests) == (0.0, 30, 1)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_the_worst_case_of_a_chain_holds_for_a_member_binding_no_output_limit(
    asynchronous: bool,
) -> None:
    # The primary binds max_tokens=100; the fallback binds none. The request was read with
    # the primary's defaults alone: 100 output tokens reserved (0.0017 USD), and the fallback
    # wrote 5,000 (0.05 USD): five times a cap of 0.01.
    budget = Budget(max_cost=0.01)
    fake = FakeACompletion if asynchronous else FakeCompletion
    primary = fake([Fail(503)], model=f"openai/{MODEL}", max_tokens=100)
    long = Reply("long " * 10, usage=FakeUsage(prompt_tokens=10, completion_tokens=5_000))
    backup = fake([long], model="openai/gpt-4o")
    chat: Any = with_budget(with_fallbacks(primary, backup), budget)
    cost, _ = _worst(chat, messages=MESSAGES)
    assert cost >= _cost("openai/gpt-4o", 0, 16_384)
    with pytest.raises(litellm.BudgetExceededError):
        answer = chat(messages=MESSAGES)
        await answer if asynchronous else answer
    assert (primary.calls, backup.calls) == ([], [])
    assert budget.status().cost == 0.0
    # A limit the call gives holds for every member: 100 tokens at gpt-4o's price fit.
    cost, _ = _worst(chat, messages=MESSAGES, max_tokens=50)
    assert cost < 0.01
    # So does a choice count bound by one member only.
    many = with_budget(
        with_fallbacks(
            fake(model="openai/gpt-4o", max_tokens=10),
            fake(model="openai/gpt-4o", n=4, max_tokens=10),
        ),
        Budget(max_cost=1.0),
    )
    _, tokens = _worst(many, messages=MESSAGES)
    assert tokens >= 4 * 10


def test_refuse_holds_for_every_member_of_a_chain() -> None:
    # Reserving at a chain's dearest priced member let unknown_price="refuse" pass a chain
    # whose first member has no model: it could answer at a cost nobody knows.
    def no_model(**kwargs: object) -> object:
        calls.append(kwargs)
        return litellm.completion(model="openai/gpt-4o", mock_response="hi", **kwargs)

    calls: list[object] = []
    priced = FakeCompletion(["x"], model="openai/gpt-4o")
    refusing = Budget(max_cost=1.0, unknown_price="refuse")
    chat = with_budget(with_fallbacks(no_model, priced), refusing)
    with pytest.raises(litellm.BudgetExceededError, match="without a model"):
        chat(messages=MESSAGES)
    assert (calls, priced.calls) == ([], [])
    # A member litellm has no price for is named when the stack is wrapped, wherever it is.
    unpriced = FakeCompletion(["x"], model="custom/not-priced")
    for stack in (with_fallbacks(priced, unpriced), with_load_balancing([priced, unpriced])):
        with pytest.raises(ValueError, match="custom/not-priced"):
            with_budget(stack, Budget(max_cost=1.0, unknown_price="refuse"))
    # count_tokens (the default) lets both through.
    with_budget(with_fallbacks(priced, unpriced), Budget(max_cost=1.0))


# Clock steps in the in-process store, as the Redis store survives them -----------------------


@pytest.mark.parametrize(
    "step", [-7200.0, -5.0, 7200.0, 5.0], ids=["back 2 h", "back 5 s", "forward 2 h", "forward 5 s"]
)
def test_a_clock_step_neither_resets_nor_reopens_a_window_in_memory(step: float) -> None:
    # The cap of 3 is reached 2 s into an hour. A step back of 5 s reopened the previous
    # hour as a fresh window (3 more requests), and stepping forward again would have
    # opened a fresh one once more; a step forward ended the window early.
    from fixedmodel.stores._budget_store import Caps
    from fixedmodel.stores.budget_memory import MemoryBudgetStore

    wall, ticks = [3600.0 * 500_000 + 2.0], [100.0]
    store = MemoryBudgetStore()  # The default clocks, driven by the test:
    store._clock = lambda: wall[0]  # type: ignore[method-assign]
    store._monotonic = lambda: ticks[0]
    caps = Caps(cost=None, tokens=None, requests=3, period=3600.0)
    for name in ("a", "b", "c"):
        assert store.reserve("b", caps, name, 0, 0).granted
    before = store.committed("b", caps)
    wall[0] += step
    ticks[0] += 0.5
    for name in ("d", "e"):
        assert not store.reserve("b", caps, name, 0, 0).granted
    after = store.committed("b", caps)
    assert after.requests == 3
    assert after.resets_in is not None and before.resets_in is not None
    assert abs(after.resets_in - before.resets_in) < 2.0
    # Time goes on from there: the window ends when the monotonic clock says so.
    wall[0] += before.resets_in
    ticks[0] += before.resets_in
    assert store.reserve("b", caps, "next", 0, 0).granted


def test_a_clock_passed_to_the_memory_store_never_takes_a_window_back() -> None:
    from fixedmodel.stores._budget_store import Caps
    from fixedmodel.stores.budget_memory import MemoryBudgetStore

    now = [3600.0 * 500_000 - 1.0]
    store = MemoryBudgetStore(clock=lambda: now[0])
    caps = Caps(cost=None, tokens=None, requests=2, period=3600.0)
    assert store.reserve("b", caps, "a", 0, 0).granted
    now[0] += 2.0  # A new hour: followed forward.
    assert store.reserve("b", caps, "b", 0, 0).granted
    assert store.reserve("b", caps, "c", 0, 0).granted
    now[0] -= 5.0  # Back into the previous hour: not followed.
    assert not store.reserve("b", caps, "d", 0, 0).granted
    assert store.committed("b", caps).requests == 2


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_call_refused_before_sending_still_warns_about_unknown_keywords(
    asynchronous: bool,
) -> None:
    # A misspelt max_tokens leaves the output unbounded, the worst case past the cap, and the
    # call refused: the layers reading the request do not warn (the sending call does), and
    # the refused call never sends, so nothing told why.
    from fixedmodel import UnknownKeywordWarning, bind_completion

    name = f"max_tokenz_{'a' if asynchronous else 's'}"
    inner = (bind_acompletion if asynchronous else bind_completion)("openai/gpt-4o", api_key="k")
    chat: Any = with_budget(inner, Budget(max_cost=0.00001))
    with (
        pytest.warns(UnknownKeywordWarning, match=name),
        pytest.raises(litellm.BudgetExceededError),
    ):
        answer = chat(messages=[{"role": "user", "content": "hi"}], **{name: 10})
        await answer if asynchronous else answer
