"""with_load_balancing and the in-process cooldown store, without a network."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import litellm
import pytest

from fixedmodel import (
    CooldownPolicy,
    MemoryCooldownStore,
    RateLimit,
    responses,
    with_load_balancing,
    with_rate_limit,
)
from fixedmodel.middleware._call import call_scope
from fixedmodel.routing import load_balancing as lb_module
from fixedmodel.testing import CompletionCall, Fail, FakeACompletion, FakeCompletion

MESSAGES = [{"role": "user", "content": "Hi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _named(answer: str) -> FakeCompletion:
    return FakeCompletion(lambda call: answer, model="m")


def test_round_robin_spreads_evenly() -> None:
    fakes = {name: _named(name) for name in ("a", "b", "c")}
    chat = with_load_balancing(fakes, strategy="round_robin")
    served = Counter(responses.text(chat(messages=MESSAGES)) for _ in range(300))
    assert served == {"a": 100, "b": 100, "c": 100}


def test_a_list_of_deployments_is_named_by_model_and_position() -> None:
    chat = with_load_balancing([_named("x"), _named("y")], strategy="round_robin")
    with call_scope() as info:
        chat(messages=MESSAGES)
    assert info.served_by in {"m#0", "m#1"}
    assert info.deployments_tried == 1


async def test_least_busy_avoids_the_deployment_with_calls_in_flight() -> None:
    release = asyncio.Event()

    async def slow_answer(call: CompletionCall) -> str:
        return "slow"

    class Slow(FakeACompletion):
        async def __call__(self, **kwargs: Any) -> Any:
            await release.wait()
            return await super().__call__(**kwargs)

    slow = Slow(lambda call: "slow", model="m")
    fast = FakeACompletion(lambda call: "fast", model="m")
    chat = with_load_balancing({"slow": slow, "fast": fast}, strategy="least_busy")
    stuck = [asyncio.ensure_future(chat(messages=MESSAGES)) for _ in range(2)]
    await asyncio.sleep(0.01)
    # One call went to each; "slow" still holds one, so every later call goes to "fast".
    answers = [responses.text(await chat(messages=MESSAGES)) for _ in range(20)]
    assert answers.count("fast") == 20
    release.set()
    await asyncio.gather(*stuck)


def test_usage_based_prefers_the_deployment_with_headroom() -> None:
    small = with_rate_limit(_named("small"), RateLimit(requests=10))
    large = with_rate_limit(_named("large"), RateLimit(requests=1000))
    chat = with_load_balancing({"small": small, "large": large}, strategy="usage_based")
    served = Counter(responses.text(chat(messages=MESSAGES)) for _ in range(100))
    # "small" is picked only while its used share is below "large"'s.
    assert served["small"] <= 2
    assert served["large"] >= 98


def test_a_failing_deployment_cools_down_then_gets_one_probe() -> None:
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    failing = [True]
    bad = FakeCompletion(lambda call: Fail(503) if failing[0] else "recovered", model="m")
    good = FakeCompletion(lambda call: "good", model="m")
    policy = CooldownPolicy(failures=3, cooldown=30.0)
    chat = with_load_balancing(
        {"bad": bad, "good": good}, strategy="round_robin", cooldown=policy, store=store
    )
    lb_module._REMEMBER_REFUSAL = 0.0  # type: ignore[misc]  # ask the store each time here
    try:
        for _ in range(6):  # Every call that lands on "bad" fails over to "good".
            assert responses.text(chat(messages=MESSAGES)) == "good"
        assert len(bad.calls) == 3  # The third failure opened the circuit.
        for _ in range(10):
            chat(messages=MESSAGES)
        assert len(bad.calls) == 3  # Cooling: not one request.
        clock.now += 30.0
        # Half-open: the first call to reach it is the one probe; it fails, so it cools again.
        for _ in range(4):
            chat(messages=MESSAGES)
        assert len(bad.calls) == 4
        clock.now += 30.0
        failing[0] = False
        answers = [responses.text(chat(messages=MESSAGES)) for _ in range(4)]
        assert len(bad.calls) == 6  # The probe succeeded and closed the circuit.
        assert answers.count("recovered") == 2
    finally:
        lb_module._REMEMBER_REFUSAL = 1.0  # type: ignore[misc]


def test_a_failed_probe_cools_down_again() -> None:
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    policy = CooldownPolicy(failures=1, cooldown=10.0)
    store.failed("k", policy, probe=False, cool_for=None)
    assert not store.enter("k", policy).granted
    clock.now += 10.0
    probe = store.enter("k", policy)
    assert probe.granted and probe.probe
    other = store.enter("k", policy)  # One probe at a time.
    assert not other.granted
    store.failed("k", policy, probe=True, cool_for=None)
    refused = store.enter("k", policy)
    assert not refused.granted and refused.retry_in == pytest.approx(10.0)
    clock.now += 10.0
    assert store.enter("k", policy).probe
    store.released("k")  # Cancelled probe: another caller may probe.
    assert store.enter("k", policy).probe
    store.succeeded("k")
    assert store.enter("k", policy) == lb_module.Entry(granted=True)


def test_a_probe_that_never_reports_is_replaced_after_its_timeout() -> None:
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    policy = CooldownPolicy(failures=1, cooldown=5.0, probe_timeout=20.0)
    store.failed("k", policy, probe=False, cool_for=None)
    clock.now += 5.0
    assert store.enter("k", policy).probe
    clock.now += 19.0
    assert not store.enter("k", policy).granted
    clock.now += 1.0
    assert store.enter("k", policy).probe


def test_failures_far_apart_do_not_add_up() -> None:
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    policy = CooldownPolicy(failures=2, failure_window=60.0)
    store.failed("k", policy, probe=False, cool_for=None)
    clock.now += 61.0
    store.failed("k", policy, probe=False, cool_for=None)
    assert store.enter("k", policy).granted
    store.failed("k", policy, probe=False, cool_for=None)
    assert not store.enter("k", policy).granted


def test_a_429_with_retry_after_cools_down_at_once_for_that_long() -> None:
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    limited = FakeCompletion([Fail(429, headers={"retry-after": "12"})], model="m")
    other = FakeCompletion(lambda call: "other", model="m")
    chat = with_load_balancing(
        {"limited": limited, "other": other}, strategy="round_robin", store=store
    )
    for _ in range(4):
        assert responses.text(chat(messages=MESSAGES)) == "other"
    assert len(limited.calls) == 1
    entry = store.enter("default:limited", CooldownPolicy())
    assert not entry.granted
    assert entry.retry_in == pytest.approx(12.0)


def test_bad_requests_do_not_count_and_are_not_sent_elsewhere() -> None:
    first = FakeCompletion(lambda call: Fail(400), model="m")
    second = FakeCompletion(lambda call: Fail(400), model="m")
    store = MemoryCooldownStore()
    chat = with_load_balancing(
        {"first": first, "second": second}, strategy="round_robin", store=store
    )
    for _ in range(10):
        with pytest.raises(litellm.BadRequestError):
            chat(messages=MESSAGES)
    # One request per call, and neither deployment counted a failure.
    assert len(first.calls) == len(second.calls) == 5
    assert store.enter("default:first", CooldownPolicy()).failures == 0


def test_when_all_cool_down_the_call_waits_for_the_earliest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds
        monkeypatch.setattr(lb_module.time, "monotonic", lambda: clock.now)

    monkeypatch.setattr(lb_module, "_sync_sleep", sleep)
    monkeypatch.setattr(lb_module.time, "monotonic", lambda: clock.now)
    only = FakeCompletion([Fail(429, headers={"retry-after": "0.5"}), "ok"], model="m")
    chat = with_load_balancing([only], store=store)
    with pytest.raises(litellm.RateLimitError):  # The deployment it tried failed.
        chat(messages=MESSAGES)
    assert responses.text(chat(messages=MESSAGES)) == "ok"
    assert slept and sum(slept) == pytest.approx(0.5, abs=0.01)


def test_when_all_cool_down_raise_says_when_one_recovers() -> None:
    only = FakeCompletion([Fail(429, headers={"retry-after": "20"})], model="m")
    policy = CooldownPolicy(when_all_cooling="raise")
    chat = with_load_balancing([only], cooldown=policy)
    with pytest.raises(litellm.RateLimitError):
        chat(messages=MESSAGES)
    with pytest.raises(litellm.RateLimitError, match="cooling down") as raised:
        chat(messages=MESSAGES)
    from fixedmodel.middleware._errors import retry_after

    advice = retry_after(raised.value)
    assert advice is not None and 19.0 < advice <= 20.0  # What the store said.
    assert len(only.calls) == 1


def test_every_failure_is_recorded_and_the_last_carries_the_others() -> None:
    first = FakeCompletion([Fail(503)], model="m")
    second = FakeCompletion([Fail(500)], model="m")
    chat = with_load_balancing({"one": first, "two": second}, strategy="round_robin")
    with call_scope() as info, pytest.raises(litellm.InternalServerError) as raised:
        chat(messages=MESSAGES)
    assert info.deployments_tried == 2
    assert {name for name, _ in info.route_failures} == {"one", "two"}
    assert "failed with" in "\n".join(raised.value.__notes__)


def test_a_stream_keeps_its_deployment_busy_until_it_ends() -> None:
    first = FakeCompletion(lambda call: "first answer", model="m")
    second = FakeCompletion(lambda call: "second answer", model="m")
    chat = with_load_balancing({"first": first, "second": second}, strategy="least_busy")
    stream = chat(messages=MESSAGES, stream=True)
    balanced: Any = chat
    busy = {d.name: d.in_flight for d in balanced._deployments}
    assert sorted(busy.values()) == [0, 1]
    "".join(responses.text_deltas(stream))
    assert all(d.in_flight == 0 for d in balanced._deployments)


def test_misconfiguration_is_refused_at_wrap_time() -> None:
    with pytest.raises(ValueError, match="at least one"):
        with_load_balancing([])
    with pytest.raises(ValueError, match="strategy"):
        with_load_balancing([_named("a")], strategy="random")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    with pytest.raises(TypeError, match="one kind"):
        with_load_balancing([FakeCompletion(), FakeACompletion()])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="list of callables"):
        with_load_balancing(FakeCompletion())  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    with pytest.raises(ValueError, match="failures"):
        CooldownPolicy(failures=0)
    with pytest.raises(ValueError, match="cooldown"):
        CooldownPolicy(cooldown=-1)
    with pytest.raises(ValueError, match="when_all_cooling"):
        CooldownPolicy(when_all_cooling="spin")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="CooldownStore"):
        with_load_balancing([_named("a")], store=object())  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]


def test_a_cooling_deployments_share_is_spread_over_the_others() -> None:
    cooling = FakeCompletion([Fail(429, headers={"retry-after": "60"})], model="m")
    chat = with_load_balancing(
        {"cooling": cooling, "b": _named("b"), "c": _named("c")}, strategy="round_robin"
    )
    served = Counter(responses.text(chat(messages=MESSAGES)) for _ in range(61))
    assert len(cooling.calls) == 1
    assert abs(served["b"] - served["c"]) <= 1


def test_a_deployment_whose_budget_is_spent_passes_the_call_on_without_cooling() -> None:
    from fixedmodel import Budget, with_budget

    spent = Budget(max_requests=1)
    store = MemoryCooldownStore()
    first = with_budget(_named("first"), spent)
    chat = with_load_balancing(
        {"first": first, "second": _named("second")}, strategy="round_robin", store=store
    )
    served = [responses.text(chat(messages=MESSAGES)) for _ in range(6)]
    assert served.count("first") == 1
    assert served.count("second") == 5
    assert store.enter("default:first", CooldownPolicy()).failures == 0


def test_a_long_cooldown_is_waited_out_in_bounded_steps_or_raised_past_max_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(lb_module, "_sync_sleep", sleep)
    monkeypatch.setattr(lb_module.time, "monotonic", lambda: clock.now)
    store = MemoryCooldownStore(clock=clock)
    only = FakeCompletion([Fail(429, headers={"retry-after": "20"}), "ok"], model="m")
    chat = with_load_balancing([only], store=store, cooldown=CooldownPolicy(max_wait=30.0))
    with pytest.raises(litellm.RateLimitError):
        chat(messages=MESSAGES)
    assert responses.text(chat(messages=MESSAGES)) == "ok"
    assert sum(slept) == pytest.approx(20.0, abs=0.01)
    assert max(slept) <= 1.0  # A probe elsewhere may end early: it looks again each second.
    impatient = with_load_balancing(
        [FakeCompletion([Fail(429, headers={"retry-after": "60"})], model="m")],
        cooldown=CooldownPolicy(max_wait=30.0),
    )
    with pytest.raises(litellm.RateLimitError):
        impatient(messages=MESSAGES)
    slept.clear()
    with pytest.raises(litellm.RateLimitError, match="cooling down"):
        impatient(messages=MESSAGES)
    assert slept == []  # 60 s is past max_wait: raised at once.


@pytest.mark.parametrize("status", [529, 520, 599, 501, 505])
def test_any_5xx_moves_the_call_to_another_deployment(status: int) -> None:
    # 529 and 520 are retryable; 501 and 505 are not retried, but another server may serve.
    first = FakeCompletion([Fail(status)], model="m")
    second = FakeCompletion(["from second"], model="m")
    chat = with_load_balancing({"first": first, "second": second}, strategy="round_robin")
    with call_scope() as info:
        assert responses.text(chat(messages=MESSAGES)) == "from second"
    assert info.deployments_tried == 2
    assert [name for name, _ in info.route_failures] == ["first"]
