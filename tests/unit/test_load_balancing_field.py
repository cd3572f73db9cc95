"""with_load_balancing in the field: cooldown deadlines, fallback chains, retries underneath,
even shares, exact bookkeeping (issue "Routing and budgets in the field")."""

from __future__ import annotations

import pytest

from fixedmodel import CooldownPolicy, MemoryCooldownStore

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
