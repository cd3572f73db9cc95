"""with_load_balancing in the field: cooldown deadlines, fallback chains, retries underneath,
even shares, exact bookkeeping (issue "Routing and budgets in the field")."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import litellm
import pytest

from fixedmodel import (
    CooldownPolicy,
    MemoryCooldownStore,
    RateLimit,
    RetryPolicy,
    responses,
    with_cache,
    with_fallbacks,
    with_load_balancing,
    with_rate_limit,
    with_retries,
)
from fixedmodel.middleware import retries as retries_module
from fixedmodel.middleware._errors import retry_after
from fixedmodel.routing import load_balancing as lb_module
from fixedmodel.routing._chain import has_next_in_chain
from fixedmodel.routing.load_balancing import Strategy
from fixedmodel.testing import CompletionCall, Fail, FakeACompletion, FakeCompletion

MESSAGES = [{"role": "user", "content": "Hi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- a deadline only moves later --------------------------------------------------------------


def test_slower_failures_while_open_keep_the_deployment_out_until_the_latest_deadline() -> None:
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    policy = CooldownPolicy(failures=3, cooldown=30.0)
    store.failed("d", policy, probe=False, cool_for=1.0)  # 429 with Retry-After: 1
    for _ in range(3):  # Three slower 429s without advice, reported while open.
        clock.now += 0.3
        store.failed("d", policy, probe=False, cool_for=None)
    clock.now += 1.0  # Past the Retry-After, long before the cooldown of the third.
    entry = store.enter("d", policy)
    assert not entry.granted
    assert entry.retry_in == pytest.approx(30.0 - 1.0)


@pytest.mark.parametrize("probe", [False, True], ids=["a call", "the probe"])
def test_a_shorter_retry_after_never_shortens_a_cooldown(probe: bool) -> None:
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    policy = CooldownPolicy(failures=1, cooldown=30.0)
    store.failed("d", policy, probe=False, cool_for=None)  # Open for 30 s.
    clock.now += 1.0
    store.failed("d", policy, probe=probe, cool_for=2.0)
    clock.now += 5.0
    entry = store.enter("d", policy)
    assert not entry.granted
    assert entry.retry_in == pytest.approx(24.0)


def test_a_failed_probe_never_shortens_a_later_opening() -> None:
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    policy = CooldownPolicy(failures=1, cooldown=10.0)
    store.failed("d", policy, probe=False, cool_for=None)
    clock.now += 10.0
    assert store.enter("d", policy).probe
    store.failed("d", policy, probe=False, cool_for=60.0)  # Another call: Retry-After 60.
    store.failed("d", policy, probe=True, cool_for=None)  # The probe fails: 10 s only.
    clock.now += 20.0
    entry = store.enter("d", policy)
    assert not entry.granted
    assert entry.retry_in == pytest.approx(40.0)


@pytest.mark.parametrize("status", [503, 529])
def test_a_deployment_that_asked_for_time_with_a_5xx_is_left_alone(status: int) -> None:
    # A 503 with Retry-After is advice as much as a 429's (RFC 9110 §10.2.3), and
    # with_fallbacks honours it: the balancer sent the next calls straight back until the
    # failures added up.
    sick = FakeCompletion([Fail(status, headers={"retry-after": "30"}), "a", "a", "a"], model="m")
    healthy = FakeCompletion(lambda call: "b", model="m")
    chat = with_load_balancing({"a": sick, "b": healthy}, "round_robin", CooldownPolicy(failures=3))
    answers = [responses.text(chat(messages=MESSAGES)) for _ in range(6)]
    assert answers == ["b"] * 6
    assert len(sick.calls) == 1


def test_a_success_of_an_earlier_call_does_not_end_a_live_cooldown() -> None:
    # A slow call entered while the deployment was healthy; meanwhile another call got a
    # 429 with Retry-After: 60. The slow call's success closed the circuit, and the next
    # call went straight back to the deployment that had asked for a minute.
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    policy = CooldownPolicy(failures=3, cooldown=30.0)
    store.failed("d", policy, probe=False, cool_for=None)  # One failure: entries carry it.
    assert store.enter("d", policy).failures == 1  # The slow call goes out.
    store.failed("d", policy, probe=False, cool_for=60.0)  # Another call's 429.
    clock.now += 1.0
    store.succeeded("d")  # The slow call answers.
    entry = store.enter("d", policy)
    assert not entry.granted
    assert entry.retry_in == pytest.approx(59.0)
    clock.now += 60.0  # Past the deadline: one probe, whose success closes the circuit.
    assert store.enter("d", policy).probe
    store.succeeded("d")
    entry = store.enter("d", policy)
    assert entry.granted
    assert not entry.probe  # Closed.


# --- inside a fallback chain: hand over at once -----------------------------------------------


def _all_cooling(
    names: tuple[str, ...], clock: Clock | None = None
) -> tuple[MemoryCooldownStore, CooldownPolicy]:
    store = MemoryCooldownStore() if clock is None else MemoryCooldownStore(clock=clock)
    policy = CooldownPolicy(failures=1, cooldown=4.0, when_all_cooling="wait", max_wait=30.0)
    for name in names:
        store.failed(f"default:{name}", policy, probe=False, cool_for=4.0)
    return store, policy


async def test_a_balancer_with_a_next_in_chain_hands_over_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)
        raise AssertionError("the balancer waited")

    monkeypatch.setattr(lb_module, "_async_sleep", record)
    store, policy = _all_cooling(("a", "b"))
    fakes = {n: FakeACompletion(lambda call: "x", model="m") for n in ("a", "b")}
    chat = with_load_balancing(fakes, cooldown=policy, store=store)
    token = has_next_in_chain.set(True)
    try:
        with pytest.raises(litellm.RateLimitError) as raised:
            await chat(messages=MESSAGES)
    finally:
        has_next_in_chain.reset(token)
    assert slept == []
    assert "every deployment" in str(raised.value)
    assert 3.0 < int(raised.value.response.headers["retry-after-ms"]) / 1000 <= 4.0
    assert all(not fake.calls for fake in fakes.values())


def test_a_sync_balancer_with_a_next_in_chain_hands_over_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(lb_module, "_sync_sleep", slept.append)
    store, policy = _all_cooling(("a", "b"))
    fakes = {n: FakeCompletion(lambda call: "x", model="m") for n in ("a", "b")}
    chat = with_load_balancing(fakes, cooldown=policy, store=store)
    token = has_next_in_chain.set(True)
    try:
        with pytest.raises(litellm.RateLimitError):
            chat(messages=MESSAGES)
    finally:
        has_next_in_chain.reset(token)
    assert slept == []


def test_a_balancer_at_the_end_of_a_chain_still_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    clock = Clock()
    store, policy = _all_cooling(("a",), clock)

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += 5.0  # The store's time: past the 4 s cooldown.

    monkeypatch.setattr(lb_module, "_sync_sleep", sleep)
    monkeypatch.setattr(lb_module, "_REMEMBER_REFUSAL", 0.0)
    chat = with_load_balancing(
        {"a": FakeCompletion(lambda call: "x", model="m")}, cooldown=policy, store=store
    )
    assert responses.text(chat(messages=MESSAGES)) == "x"
    assert len(slept) == 1


# --- retries underneath stop once the deployment cools ----------------------------------------


def _retrying(answer: Callable[[CompletionCall], Any], order: list[str], name: str) -> Any:
    def recorded(call: CompletionCall) -> Any:
        order.append(name)
        return answer(call)

    return with_retries(
        FakeCompletion(recorded, model="m"), RetryPolicy(max_attempts=3, initial_wait=0.5)
    )


@pytest.mark.parametrize(
    ("failure", "failures"),
    [
        (Fail(429, headers={"retry-after": "1"}), 1),
        (Fail(429, headers={"retry-after": "1"}), 3),  # A Retry-After cools at once.
        (Fail(500), 1),
        (Fail(503), 1),
    ],
    ids=["429 Retry-After, failures=1", "429 Retry-After, failures=3", "500", "503"],
)
def test_retries_underneath_stop_once_the_deployment_cools(
    monkeypatch: pytest.MonkeyPatch, failure: Fail, failures: int
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(retries_module, "_sync_sleep", slept.append)
    order: list[str] = []
    chat = with_load_balancing(
        {
            "a": _retrying(lambda call: failure, order, "a"),
            "b": _retrying(lambda call: "b", order, "b"),
        },
        strategy="round_robin",
        cooldown=CooldownPolicy(failures=failures, cooldown=30.0),
    )
    assert responses.text(chat(messages=MESSAGES)) == "b"
    assert order == ["a", "b"]
    assert slept == []  # Not one Retry-After or backoff slept on the cooling deployment.


def test_retries_underneath_go_on_until_the_circuit_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retries_module, "_sync_sleep", lambda seconds: None)
    order: list[str] = []
    chat = with_load_balancing(
        {
            "a": _retrying(lambda call: Fail(500), order, "a"),
            "b": _retrying(lambda call: "b", order, "b"),
        },
        strategy="round_robin",
        cooldown=CooldownPolicy(failures=2, cooldown=30.0),
    )
    assert responses.text(chat(messages=MESSAGES)) == "b"
    assert order == ["a", "a", "b"]  # The second failure opened the circuit.
    for _ in range(4):
        chat(messages=MESSAGES)
    assert order.count("a") == 2  # Cooling: skipped.


def test_a_half_open_probe_is_one_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retries_module, "_sync_sleep", lambda seconds: None)
    monkeypatch.setattr(lb_module, "_REMEMBER_REFUSAL", 0.0)
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    order: list[str] = []
    chat = with_load_balancing(
        {
            "a": _retrying(lambda call: Fail(503), order, "a"),
            "b": _retrying(lambda call: "b", order, "b"),
        },
        strategy="round_robin",
        cooldown=CooldownPolicy(failures=3, cooldown=30.0),
        store=store,
    )
    chat(messages=MESSAGES)
    assert order.count("a") == 3  # Closed: three attempts, the third opens the circuit.
    for _ in range(3):
        clock.now += 30.0
        chat(messages=MESSAGES)
        chat(messages=MESSAGES)
    assert order.count("a") == 6  # Each probe: one request.


async def test_async_retries_underneath_stop_once_the_deployment_cools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(retries_module, "_async_sleep", record)
    order: list[str] = []

    def answer(name: str, reply: Any) -> Any:
        def respond(call: CompletionCall) -> Any:
            order.append(name)
            return reply

        return with_retries(FakeACompletion(respond, model="m"), RetryPolicy(max_attempts=3))

    chat = with_load_balancing(
        {"a": answer("a", Fail(429, headers={"retry-after": "1"})), "b": answer("b", "b")},
        strategy="round_robin",
        cooldown=CooldownPolicy(failures=1),
    )
    assert responses.text(await chat(messages=MESSAGES)) == "b"
    assert order == ["a", "b"]
    assert slept == []


# --- a deployment that keeps failing does not skew the others' shares -------------------------


@pytest.mark.parametrize("strategy", ["round_robin", "least_busy", "usage_based"])
@pytest.mark.parametrize("sick_at", [0, 1, 2])
def test_a_failing_deployment_spreads_its_share_evenly(strategy: Strategy, sick_at: int) -> None:
    names = ["a", "b", "c"]
    sick = names[sick_at]
    limit = RateLimit(requests=10**6)
    fakes = {
        name: with_rate_limit(
            FakeCompletion(lambda call, name=name: Fail(500) if name == sick else name, model="m"),
            limit,
        )
        for name in names
    }
    chat = with_load_balancing(fakes, strategy=strategy, cooldown=CooldownPolicy(failures=10**6))
    served = Counter(responses.text(chat(messages=MESSAGES)) for _ in range(300))
    healthy = [served[name] for name in names if name != sick]
    assert sum(healthy) == 300
    assert abs(healthy[0] - healthy[1]) <= 9  # Within 3 %.
    sent = fakes[sick]._inner  # type: ignore[attr-defined]
    if strategy != "usage_based":  # There its failed requests count as usage, as they should.
        assert 90 <= len(sent.calls) <= 110  # The sick one is still tried in its turn only.


# --- bookkeeping stays exact ------------------------------------------------------------------


async def test_in_flight_counts_return_to_zero_after_errors_cancellations_and_streams() -> None:
    release = asyncio.Event()

    class Held(FakeACompletion):
        async def __call__(self, **kwargs: Any) -> Any:
            await release.wait()
            return await super().__call__(**kwargs)

    held = Held(lambda call: "held", model="m")
    failing = FakeACompletion(lambda call: Fail(400), model="m")
    streaming = FakeACompletion(lambda call: "streamed", model="m")
    chat = with_load_balancing({"held": held, "failing": failing, "streaming": streaming})
    stuck = [asyncio.ensure_future(chat(messages=MESSAGES)) for _ in range(3)]
    await asyncio.sleep(0.01)
    for task in stuck:
        task.cancel()
    await asyncio.gather(*stuck, return_exceptions=True)
    release.set()
    for _ in range(6):
        try:
            result = await chat(messages=MESSAGES, stream=True)
        except litellm.BadRequestError:
            continue
        async for _chunk in result:
            pass
    deployments = chat._deployments  # type: ignore[attr-defined]
    assert [d.in_flight for d in deployments] == [0, 0, 0]


async def test_usage_of_a_call_that_outlasts_the_window_is_counted_once() -> None:
    release = asyncio.Event()
    first = [True]

    class Slow(FakeACompletion):
        async def __call__(self, **kwargs: Any) -> Any:
            if first[0]:
                first[0] = False
                await release.wait()
            return await super().__call__(**kwargs)

    limit = RateLimit(tokens=10**6, period=0.05, assumed_completion_tokens=500)
    slow = with_rate_limit(Slow(lambda call: "long answer " * 20, model="m"), limit)
    chat = with_load_balancing({"slow": slow}, strategy="usage_based")
    outlasting = asyncio.ensure_future(chat(messages=MESSAGES))
    await asyncio.sleep(0.1)  # Past the window: the next call drops its entry.
    await chat(messages=MESSAGES)
    release.set()
    await outlasting  # Its real token count arrives after its entry left the window.
    await asyncio.sleep(0.1)
    usage = chat._deployments[0].usage  # type: ignore[attr-defined]
    assert usage.used_share(time.monotonic()) == 0.0
    assert (usage.requests, usage.tokens) == (0, 0.0)


def test_a_cache_hit_under_a_deployment_costs_no_usage() -> None:
    limit = RateLimit(requests=100)
    fake = FakeCompletion(lambda call: "x", model="m")
    chat = with_load_balancing(
        {"cached": with_cache(with_rate_limit(fake, limit))}, strategy="usage_based"
    )
    for _ in range(3):
        chat(messages=MESSAGES)
    assert len(fake.calls) == 1
    usage = chat._deployments[0].usage  # type: ignore[attr-defined]
    assert usage.requests == 1
    assert usage.used_share(time.monotonic()) == pytest.approx(0.01)


# --- a callable appears once among the deployments --------------------------------------------


def test_a_repeated_deployment_is_refused_at_construction() -> None:
    # Listed twice, a failing model was asked twice per call: the second "deployment" is the
    # same object, with a cooldown of its own.
    a = FakeCompletion(model="a/one")
    b = FakeCompletion(model="b/two")
    with pytest.raises(ValueError, match="'a/one' twice"):
        with_load_balancing([a, a])
    with pytest.raises(ValueError, match="'a/one' twice"):
        with_load_balancing({"east": a, "west": with_retries(a)})  # Under another layer.
    with pytest.raises(ValueError, match="'b/two' twice"):
        with_load_balancing([with_load_balancing([a, b]), b])  # Through nesting.
    # Two callables bound to one model name are two deployments: accepted.
    with_load_balancing([a, FakeCompletion(model="a/one")])


# --- a failure before any request says nothing of the deployment -------------------------------


def _refusing_a(metadata_key: str) -> Callable[[CompletionCall], Any]:
    """Deployment a: your code refuses some requests before sending them; the rest get 503."""

    def answer(call: CompletionCall) -> Any:
        metadata: Any = call.params.get("metadata") or {}
        if metadata.get(metadata_key):
            raise ValueError("this request is refused before anything is sent")
        return Fail(503)

    return answer


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_failure_before_sending_is_no_verdict_on_a_deployment(asynchronous: bool) -> None:
    # A half-open probe that ended with a ValueError raised before any request closed the
    # circuit ("it answered"), and such an error between failures reset their count: the
    # deployment was declared healthy by a call that never reached it.
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    policy = CooldownPolicy(failures=3, cooldown=10.0, when_all_cooling="raise")
    fake = FakeACompletion if asynchronous else FakeCompletion
    a = fake(_refusing_a("refuse"), model="m")
    chat: Any = with_load_balancing({"a": a}, cooldown=policy, store=store)

    async def call(**kwargs: Any) -> None:
        with pytest.raises(Exception) as raised:
            result = chat(messages=MESSAGES, **kwargs)
            await result if asynchronous else result
        assert isinstance(raised.value, ValueError | litellm.ServiceUnavailableError)

    store.failed("default:a", policy, probe=False, cool_for=5.0)
    clock.now += 6.0  # Half-open: the next call is the probe.
    await call(metadata={"refuse": True})
    assert store.enter("default:a", policy).probe  # Still half-open: probed again.
    store.released("default:a")
    # Two 503s, a refusal before sending, a third 503: three failures in a row open it.
    store.succeeded("default:a")
    for refuse in (False, False, True, False):
        await call(metadata={"refuse": refuse})
    entry = store.enter("default:a", policy)
    assert not entry.granted
    assert entry.retry_in == pytest.approx(10.0)


# --- a call arriving while another call probes waits for the probe --------------------------------


def test_a_refusal_while_a_probe_is_out_says_look_again_soon() -> None:
    # The probe's lease (probe_timeout, 60 s) was the retry_in: with max_wait 30 s the other
    # callers never waited for the probe, they failed at once with "recovers in 60 s".
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    policy = CooldownPolicy(failures=1, cooldown=5.0, probe_timeout=60.0)
    store.failed("d", policy, probe=False, cool_for=None)
    clock.now += 6.0
    assert store.enter("d", policy).probe  # Another caller probes.
    entry = store.enter("d", policy)
    assert not entry.granted
    assert 0.0 < entry.retry_in <= 1.0
    clock.now += 59.5  # Near the end of the lease: what is left of it.
    assert store.enter("d", policy).retry_in == pytest.approx(0.5)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_call_arriving_during_a_probe_waits_for_it(
    monkeypatch: pytest.MonkeyPatch, asynchronous: bool
) -> None:
    clock = Clock()
    store = MemoryCooldownStore(clock=clock)
    policy = CooldownPolicy()  # Waits up to 30 s; a probe's lease is 60 s.
    store.failed("default:a", policy, probe=False, cool_for=5.0)
    clock.now += 6.0
    assert store.enter("default:a", policy).probe  # Another caller's probe is out.
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds
        if len(slept) == 2:
            store.succeeded("default:a")  # The probe answered.

    async def asleep(seconds: float) -> None:
        sleep(seconds)

    monkeypatch.setattr(lb_module, "_sync_sleep", sleep)
    monkeypatch.setattr(lb_module, "_async_sleep", asleep)
    monkeypatch.setattr(lb_module, "_REMEMBER_REFUSAL", 0.0)
    fake = FakeACompletion if asynchronous else FakeCompletion
    chat: Any = with_load_balancing(
        {"a": fake(lambda call: "a", model="m")}, cooldown=policy, store=store
    )
    answer = chat(messages=MESSAGES)
    assert responses.text(await answer if asynchronous else answer) == "a"
    assert len(slept) == 2 and all(0.0 < pause <= 1.0 for pause in slept)
    # A policy that does not wait (or a chain around it) raises at once, with the advice to
    # look again in about a second, not the probe's lease: a chain would skip it that long,
    # a with_retries outside would wait that long.
    store.failed("default:a", policy, probe=False, cool_for=5.0)
    clock.now += 6.0
    assert store.enter("default:a", policy).probe
    raising = CooldownPolicy(when_all_cooling="raise")
    chat = with_load_balancing(
        {"a": fake(lambda call: "a", model="m")}, cooldown=raising, store=store
    )
    with pytest.raises(litellm.RateLimitError) as raised:
        answer = chat(messages=MESSAGES)
        await answer if asynchronous else answer
    advice = retry_after(raised.value)
    assert advice is not None and 0.0 < advice <= 1.0
    assert len(slept) == 2


# --- a stream of the last deployment tried that fails before any content counts against it --------


def _role_only() -> Any:
    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

    delta = Delta(role="assistant", content="")
    return ModelResponseStream(model="m", choices=[StreamingChoices(index=0, delta=delta)])


def _text(text: str) -> Any:
    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

    delta = Delta(content=text)
    return ModelResponseStream(model="m", choices=[StreamingChoices(index=0, delta=delta)])


def _failing_streams(asynchronous: bool, before: list[Any]) -> Any:
    """A fake whose streams yield ``before`` (chunks), then fail: the connection drops."""
    base = FakeACompletion if asynchronous else FakeCompletion

    class Failing(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__(lambda call: "x", model="m")

        def _break(self, stream: Any) -> Any:
            def chunks() -> Any:
                yield from before
                raise ConnectionResetError(104, "Connection reset by peer")

            async def achunks() -> Any:
                for chunk in before:
                    yield chunk
                raise ConnectionResetError(104, "Connection reset by peer")

            stream.completion_stream = achunks() if asynchronous else chunks()
            return stream

        if asynchronous:

            async def __call__(self, **kwargs: Any) -> Any:
                return self._break(await super().__call__(**kwargs))
        else:

            def __call__(self, **kwargs: Any) -> Any:
                return self._break(super().__call__(**kwargs))

    return Failing()


async def _drain(stream: Any, asynchronous: bool) -> None:
    if asynchronous:
        async for _ in await stream:
            pass
    else:
        for _ in stream:
            pass


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_stream_failing_before_content_on_the_last_deployment_cools_it(
    asynchronous: bool,
) -> None:
    # The last deployment a call tries is not read ahead: its stream reached the caller, failed
    # after the role-only chunk, and the balancer never heard of it. An only deployment whose
    # streams all break never cooled, and a chain around it paid a failed request every call.
    policy = CooldownPolicy(failures=1, cooldown=30.0, when_all_cooling="raise")
    store = MemoryCooldownStore()
    broken = _failing_streams(asynchronous, [_role_only()])
    chat: Any = with_load_balancing({"a": broken}, cooldown=policy, store=store)
    with pytest.raises(Exception, match="Connection reset"):
        await _drain(chat(messages=MESSAGES, stream=True), asynchronous)
    entry = store.enter("default:a", policy)
    assert not entry.granted and entry.retry_in == pytest.approx(30.0, abs=1.0)
    # Inside a chain: the chain reads ahead, falls back, and the next call skips it.
    store = MemoryCooldownStore()
    broken = _failing_streams(asynchronous, [_role_only()])
    backup = (FakeACompletion if asynchronous else FakeCompletion)(["b", "b"], model="n")
    balanced = with_load_balancing({"a": broken}, cooldown=policy, store=store)
    chain: Any = with_fallbacks(balanced, backup)
    for _ in range(2):
        answer = chain(messages=MESSAGES, stream=True)
        stream = await answer if asynchronous else answer
        if asynchronous:
            assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "b"
        else:
            assert "".join(c.choices[0].delta.content or "" for c in stream) == "b"
    assert len(broken.calls) == 1


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_stream_failing_after_content_is_the_callers(asynchronous: bool) -> None:
    policy = CooldownPolicy(failures=1, cooldown=30.0, when_all_cooling="raise")
    store = MemoryCooldownStore()
    broken = _failing_streams(asynchronous, [_role_only(), _text("Hel")])
    chat: Any = with_load_balancing({"a": broken}, cooldown=policy, store=store)
    with pytest.raises(Exception, match="Connection reset"):
        await _drain(chat(messages=MESSAGES, stream=True), asynchronous)
    assert store.enter("default:a", policy).granted


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_streams_failing_before_content_add_up_to_the_failures_that_cool(
    asynchronous: bool,
) -> None:
    # failures=3: each stream was handed over (the return said "answered": failures reset
    # to 0), then failed before content (1). The count never passed 1 and the deployment,
    # whose every stream broke, never cooled; the stream's end alone tells its outcome.
    policy = CooldownPolicy(failures=3, cooldown=30.0, when_all_cooling="raise")
    store = MemoryCooldownStore()
    broken = _failing_streams(asynchronous, [_role_only()])
    chat: Any = with_load_balancing({"a": broken}, cooldown=policy, store=store)
    for _ in range(3):
        with pytest.raises(Exception, match="Connection reset"):
            await _drain(chat(messages=MESSAGES, stream=True), asynchronous)
    entry = store.enter("default:a", policy)
    assert not entry.granted and entry.retry_in == pytest.approx(30.0, abs=1.0)
    # A stream that delivers resets the count when it ends, as an answer does at its return.
    store = MemoryCooldownStore()
    store.failed("default:a", policy, probe=False, cool_for=None)
    store.failed("default:a", policy, probe=False, cool_for=None)
    fake = (FakeACompletion if asynchronous else FakeCompletion)(["fine"], model="m")
    chat = with_load_balancing({"a": fake}, cooldown=policy, store=store)
    await _drain(chat(messages=MESSAGES, stream=True), asynchronous)
    assert store.enter("default:a", policy).failures == 0
