"""with_budget, Budget and the in-process budget store, without a network."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import litellm
import pytest

from fixedmodel import (
    Budget,
    MemoryBudgetStore,
    bind_acompletion,
    bind_completion,
    responses,
    with_budget,
    with_fallbacks,
)
from fixedmodel._streams import StreamUsage
from fixedmodel.routing import _pricing as pricing
from fixedmodel.testing import (
    Fail,
    FakeACompletion,
    FakeAEmbedding,
    FakeCompletion,
    FakeUsage,
    Reply,
)

MESSAGES = [{"role": "user", "content": "Hi"}]
MODEL = "gpt-4o-mini"  # litellm lists its price: 0.15 / 0.60 USD per million tokens.
USAGE = FakeUsage(prompt_tokens=10, completion_tokens=20)


def _price(prompt: int, completion: int) -> float:
    info = litellm.get_model_info(MODEL)
    return prompt * info["input_cost_per_token"] + completion * info["output_cost_per_token"]


def _worst_case(fn: object, **kwargs: Any) -> tuple[int, int]:
    wrapped: Any = fn
    return wrapped._worst_case(wrapped._read(kwargs))  # type: ignore[no-any-return]


def test_the_call_past_the_cap_is_refused_before_any_request() -> None:
    fake = FakeCompletion(lambda call: Reply("ok", usage=USAGE), model=MODEL)
    probe = with_budget(fake, Budget(max_cost=1.0))
    worst, _ = _worst_case(probe, messages=MESSAGES, max_tokens=100)
    real = _price(10, 20)
    # Nine real calls plus one worst case fit exactly; an eleventh cannot.
    budget = Budget(max_cost=9 * real + worst / 1e9)
    chat = with_budget(fake, budget)
    for _ in range(10):
        chat(messages=MESSAGES, max_tokens=100)
    with pytest.raises(litellm.BudgetExceededError, match="before sending") as raised:
        chat(messages=MESSAGES, max_tokens=100)
    assert len(fake.calls) == 10
    assert raised.value.max_budget == pytest.approx(budget.max_cost)
    status = budget.status()
    assert status.requests == 10
    assert status.cost == pytest.approx(10 * real, rel=1e-6)


def test_settling_to_real_usage_lets_more_calls_fit() -> None:
    fake = FakeCompletion(lambda call: Reply("ok", usage=USAGE), model=MODEL)
    probe = with_budget(fake, Budget(max_cost=1.0))
    worst, _ = _worst_case(probe, messages=MESSAGES, max_tokens=1000)
    budget = Budget(max_cost=3 * worst / 1e9)
    chat = with_budget(fake, budget)
    made = 0
    while True:
        try:
            chat(messages=MESSAGES, max_tokens=1000)
        except litellm.BudgetExceededError:
            break
        made += 1
    # Without settlement three worst cases would fill it; settled, many more calls fit.
    real = _price(10, 20)
    assert made > 3
    assert made * real <= budget.max_cost  # type: ignore[operator]


def test_the_worst_case_uses_the_model_limit_when_the_call_sets_none() -> None:
    fake = FakeCompletion(["ok"], model=MODEL)
    chat = with_budget(fake, Budget(max_cost=1.0))
    cost, tokens = _worst_case(chat, messages=MESSAGES)
    max_output = litellm.get_model_info(MODEL)["max_output_tokens"]
    assert tokens > max_output
    info = litellm.get_model_info(MODEL)
    highest_output = max(
        v
        for k, v in info.items()
        if k.startswith("output_cost_per_token") and "batches" not in k and v
    )
    assert cost >= max_output * highest_output * 1e9


def test_request_and_token_caps() -> None:
    fake = FakeCompletion(lambda call: Reply("ok", usage=USAGE), model="fake/unpriced")
    chat = with_budget(fake, Budget(max_requests=3))
    for _ in range(3):
        chat(messages=MESSAGES)
    with pytest.raises(litellm.BudgetExceededError, match="requests"):
        chat(messages=MESSAGES)
    tokens = Budget(max_tokens=200)
    capped = with_budget(FakeCompletion(lambda call: Reply("ok", usage=USAGE)), tokens)
    capped(messages=MESSAGES, max_tokens=50)
    assert tokens.status().tokens == 30  # Settled to the reported 10 + 20.
    with pytest.raises(litellm.BudgetExceededError, match="tokens"):
        capped(messages=MESSAGES, max_tokens=500)


def test_a_failed_call_is_refunded_but_counts_as_a_request() -> None:
    budget = Budget(max_cost=1.0)
    chat = with_budget(FakeCompletion([Fail(503)], model=MODEL), budget)
    with pytest.raises(litellm.ServiceUnavailableError):
        chat(messages=MESSAGES, max_tokens=100)
    status = budget.status()
    assert status.cost == 0 and status.tokens == 0 and status.requests == 1


async def test_a_stream_is_settled_from_its_usage_chunk() -> None:
    budget = Budget(max_cost=1.0)
    fake = FakeACompletion(lambda call: Reply("streamed words", usage=USAGE), model=MODEL)
    chat = with_budget(fake, budget)
    stream = await chat(
        messages=MESSAGES, stream=True, stream_options={"include_usage": True}, max_tokens=500
    )
    reserved = budget.status().cost
    assert reserved > _price(10, 20)
    text = "".join([piece async for piece in responses.atext_deltas(stream)])
    assert text == "streamed words"
    for _ in range(3):  # The settlement is scheduled on the loop.
        import asyncio

        await asyncio.sleep(0)
    assert budget.status().cost == pytest.approx(_price(10, 20), rel=1e-6)
    assert budget.status().tokens == 30


def test_a_sync_stream_without_usage_settles_an_estimate_of_what_it_delivered() -> None:
    # It used to keep its worst case (the whole output window) for ever.
    budget = Budget(max_cost=1.0)
    chat = with_budget(FakeCompletion(["a b c"], model=MODEL), budget)
    stream = chat(messages=MESSAGES, stream=True, max_tokens=100)
    worst = budget.status().cost
    assert "".join(responses.text_deltas(stream)) == "a b c"
    prompt = litellm.token_counter(model=MODEL, messages=MESSAGES)
    output = litellm.token_counter(model=MODEL, text="a b c")
    status = budget.status()
    assert status.tokens == prompt + output
    assert status.cost == pytest.approx(_price(prompt, output), rel=1e-6)
    assert status.cost < worst


async def test_a_litellm_stream_read_to_its_end_settles_its_real_cost() -> None:
    # litellm's mock stream leaves its usage out of stream.chunks: the layer then prices the
    # usage the stream reported (fixedmodel's StreamUsage), which litellm cannot read alone.
    budget = Budget(max_cost=10.0)
    chat = with_budget(
        bind_acompletion("openai/gpt-4o-mini", mock_response="Hello from the loopback server."),
        budget,
    )
    stream = await chat(
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=10,
    )
    worst = budget.status().cost
    last: Any = None
    async for chunk in stream:
        last = chunk
    for _ in range(3):  # The settlement is scheduled on the loop.
        await asyncio.sleep(0)
    usage = last.usage
    real = sum(
        litellm.cost_per_token(
            model="openai/gpt-4o-mini",
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )
    )
    assert budget.status().cost == pytest.approx(real, rel=1e-6)
    assert budget.status().cost < worst


def test_a_sync_litellm_stream_settles_its_real_cost() -> None:
    budget = Budget(max_cost=10.0)
    chat = with_budget(bind_completion("openai/gpt-4o-mini", mock_response="a b c d"), budget)
    stream = chat(messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    usage: Any = chunks[-1].usage
    real = sum(
        litellm.cost_per_token(
            model="openai/gpt-4o-mini",
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )
    )
    assert budget.status().cost == pytest.approx(real, rel=1e-6)


@pytest.mark.parametrize(
    "usage",
    [
        StreamUsage(prompt_tokens=8, completion_tokens=7),
        {"prompt_tokens": 8, "completion_tokens": 7},
        FakeUsage(prompt_tokens=8, completion_tokens=7),
        litellm.Usage(prompt_tokens=8, completion_tokens=7, total_tokens=15),
    ],
    ids=["StreamUsage", "dict", "FakeUsage", "litellm.Usage"],
)
def test_any_usage_shape_is_priced(usage: object) -> None:
    assert pricing.real_cost(MODEL, None, usage) == pytest.approx(_price(8, 7))


def test_cached_tokens_are_priced_the_way_litellm_prices_them() -> None:
    usage = litellm.Usage(
        prompt_tokens=1000,
        completion_tokens=10,
        total_tokens=1010,
        prompt_tokens_details={"cached_tokens": 800},
    )
    real = pricing.real_cost(MODEL, None, usage)
    full = _price(1000, 10)
    assert real is not None and real < full
    expected = sum(litellm.cost_per_token(model=MODEL, usage_object=usage))
    assert real == pytest.approx(expected)


def test_unknown_prices_follow_the_policy(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="no price"):
        with_budget(
            FakeCompletion(model="fake/unpriced"), Budget(max_cost=1.0, unknown_price="refuse")
        )
    budget = Budget(max_cost=1.0, max_tokens=10_000)
    chat = with_budget(
        FakeCompletion(lambda call: Reply("ok", usage=USAGE), model="fake/also-unpriced"), budget
    )
    pricing._warned.discard("fake/also-unpriced")
    with caplog.at_level(logging.WARNING, logger="fixedmodel.routing"):
        for _ in range(3):
            chat(messages=MESSAGES, max_tokens=10)
    assert len([r for r in caplog.records if "no price" in r.getMessage()]) == 1
    status = budget.status()
    assert status.cost == 0 and status.tokens == 90


def test_a_period_starts_a_fresh_window() -> None:
    now = [86400.0 * 100 + 10]
    store = MemoryBudgetStore(clock=lambda: now[0])
    budget = Budget(max_requests=2, period=86400, store=store)
    chat = with_budget(FakeCompletion(lambda call: "ok"), budget)
    chat(messages=MESSAGES)
    chat(messages=MESSAGES)
    with pytest.raises(litellm.BudgetExceededError):
        chat(messages=MESSAGES)
    assert budget.status().resets_in == pytest.approx(86400 - 10)
    now[0] += 86400
    chat(messages=MESSAGES)
    assert budget.status().requests == 1


def test_one_budget_is_shared_by_several_callables() -> None:
    budget = Budget(max_requests=3)
    one = with_budget(FakeCompletion(lambda call: "one"), budget)
    two = with_budget(FakeCompletion(lambda call: "two"), budget)
    one(messages=MESSAGES)
    two(messages=MESSAGES)
    one(messages=MESSAGES)
    with pytest.raises(litellm.BudgetExceededError):
        two(messages=MESSAGES)
    assert budget.status().requests_left == 0


async def test_embeddings_reserve_their_input_only() -> None:
    budget = Budget(max_tokens=1000)
    embed = with_budget(FakeAEmbedding([[0.1, 0.2]]), budget)
    _, tokens = _worst_case(embed, input="one two three")
    assert 0 < tokens < 20
    await embed(input="one two three")
    assert budget.status().requests == 1


def test_a_refusal_falls_back_to_a_callable_with_its_own_budget() -> None:
    spent = with_budget(FakeCompletion([]), Budget(max_requests=1, key="spent"))
    spent_budget: Any = spent
    spent_budget.budget._store.reserve("spent", spent_budget.budget._caps, "taken", 0, 0)
    backup = FakeCompletion(["from backup"])
    chat = with_fallbacks(spent, backup)
    assert responses.text(chat(messages=MESSAGES)) == "from backup"


def test_misconfiguration_is_refused() -> None:
    with pytest.raises(ValueError, match="needs max_cost"):
        Budget()
    with pytest.raises(ValueError, match="max_cost"):
        Budget(max_cost=-1.0)
    with pytest.raises(TypeError, match="max_requests"):
        Budget(max_requests=1.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="period"):
        Budget(max_requests=1, period=0)
    with pytest.raises(TypeError, match="Budget"):
        with_budget(FakeCompletion(), 5.0)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    shown = repr(Budget(max_cost=2.5, period=60))
    assert "max_cost=2.5" in shown and "period=60" in shown


TEXTS = [
    "Hello there?",
    "",
    "日本語のテキストはトークンが多い。" * 20,
    "emoji 🎉🚀✨ " * 30,
    "def f(x):\n    return {'a': [x, x ** 2]}\n" * 10,
    " " * 200,
    "a" * 1000,
    "Ünïcödé ñ ç ø ß " * 25,
]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-3.5-turbo", "claude-3-5-sonnet-20240620"])
@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_the_byte_bound_is_never_below_the_token_count(model: str, text: str) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": text, "name": "ann"},
    ]
    bound = pricing.prompt_bound({"messages": messages})
    counted = litellm.token_counter(model=model, messages=messages)
    assert bound is not None and bound >= counted
    embedded = pricing.prompt_bound({"input": [text, text]})
    assert embedded is not None and embedded >= 2 * litellm.token_counter(model=model, text=text)


def test_content_the_bytes_cannot_bound_is_counted() -> None:
    image = [{"type": "image_url", "image_url": {"url": "https://x.invalid/a.png"}}]
    assert pricing.prompt_bound({"messages": [{"role": "user", "content": image}]}) is None
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert pricing.prompt_bound({"messages": MESSAGES, "tools": tools}) is None
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}
    assert pricing.prompt_bound({"messages": [call]}) is None
    assert pricing.prompt_bound({"input": [[1, 2, 3]]}) is None


def test_near_the_cap_the_prompt_is_counted_exactly_before_refusing() -> None:
    fake = FakeCompletion(lambda call: Reply("ok", usage=USAGE), model=MODEL)
    long_prompt = [{"role": "user", "content": "word " * 400}]
    probe: Any = with_budget(fake, Budget(max_cost=1.0))
    exact, _ = probe._worst_case(probe._read({"messages": long_prompt, "max_tokens": 10}))
    cheap, _ = probe._worst_case(
        probe._read({"messages": long_prompt, "max_tokens": 10}), exact=False
    )
    assert cheap > exact  # 2000 bytes bound about 400 tokens.
    budget = Budget(max_cost=exact / 1e9)
    with_budget(fake, budget)(messages=long_prompt, max_tokens=10)  # Fits only when counted.
    assert len(fake.calls) == 1


def test_the_worst_case_reads_the_request_litellm_will_receive() -> None:
    # A bound default counts like a keyword of the call; n multiplies the output.
    bound_default = with_budget(
        FakeCompletion(["ok"], model=MODEL, max_tokens=50), Budget(max_cost=1.0)
    )
    _, tokens = _worst_case(bound_default, messages=MESSAGES)
    _, explicit = _worst_case(bound_default, messages=MESSAGES, max_tokens=50)
    assert tokens == explicit
    _, three = _worst_case(bound_default, messages=MESSAGES, n=3)
    assert three - tokens == 2 * 50
    _, via_extra = _worst_case(
        with_budget(FakeCompletion(["ok"], model=MODEL), Budget(max_cost=1.0)),
        messages=MESSAGES,
        extra_params={"max_tokens": 50},
    )
    assert via_extra == tokens


def test_a_cache_hit_under_the_budget_costs_nothing() -> None:
    from fixedmodel import with_cache

    budget = Budget(max_cost=1.0)
    fake = FakeCompletion(lambda call: Reply("ok", usage=USAGE), model=MODEL)
    chat = with_budget(with_cache(fake), budget)
    chat(messages=MESSAGES, max_tokens=100)
    spent = budget.status()
    chat(messages=MESSAGES, max_tokens=100)  # The same request: a hit.
    assert len(fake.calls) == 1
    after = budget.status()
    assert after.cost == pytest.approx(spent.cost) and after.tokens == spent.tokens
    assert after.requests == 2  # It still went through the budget as a request.
