"""A system suspend does not leave the stores' windows behind the wall clock.

``time.monotonic()`` stops while Linux and macOS sleep; the stores bounded each forward move
of a wall clock (the process's, or the Redis server's) by it, so after an hour of sleep every
budget window lagged the wall clock by that hour for the life of the process. No real clock
is read: the test drives the wall clock, a stopped monotonic clock and the elapsed-time one.
"""

from __future__ import annotations

import sys
import time

import pytest

from fixedmodel.stores import _elapsed
from fixedmodel.stores._budget_store import Caps
from fixedmodel.stores.budget_memory import MemoryBudgetStore
from fixedmodel.stores.redis_limiter import _ClockHints  # pyright: ignore[reportPrivateUsage]

HOUR = 3600.0


class Clocks:
    """A wall clock, a monotonic one that stops during a suspend, and one that does not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall = HOUR * 500_000 + 10.0
        self.monotonic = 100.0
        self.boot = 200.0
        monkeypatch.setattr(time, "monotonic", lambda: self.monotonic)
        monkeypatch.setattr(_elapsed, "elapsed", lambda: self.boot)

    def run(self, seconds: float) -> None:
        self.wall += seconds
        self.monotonic += seconds
        self.boot += seconds

    def suspend(self, seconds: float) -> None:
        self.wall += seconds
        self.boot += seconds  # CLOCK_BOOTTIME counts the sleep; monotonic does not.


def test_a_budget_window_catches_up_with_the_wall_clock_after_a_suspend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clocks = Clocks(monkeypatch)
    store = MemoryBudgetStore()  # The default clocks: the wall clock is the test's.
    store._clock = lambda: clocks.wall  # type: ignore[method-assign]
    caps = Caps(cost=None, tokens=None, requests=2, period=HOUR)
    assert store.reserve("b", caps, "a", 0, 0).granted
    assert store.reserve("b", caps, "b", 0, 0).granted
    assert not store.reserve("b", caps, "c", 0, 0).granted
    clocks.suspend(2 * HOUR)  # The laptop sleeps two hours: two windows went by.
    reservation = store.reserve("b", caps, "d", 0, 0)
    assert reservation.granted  # A new window, as the wall clock says.
    resets_in = reservation.committed.resets_in
    assert resets_in == pytest.approx(HOUR - 10.0)
    # And it stays in step: the window ends when the wall clock's hour does.
    clocks.run(HOUR - 10.0 - 1.0)
    assert store.committed("b", caps).requests == 1
    clocks.run(2.0)
    assert store.committed("b", caps).requests == 0


def test_a_step_forward_without_a_suspend_is_still_not_followed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clocks = Clocks(monkeypatch)
    store = MemoryBudgetStore()
    store._clock = lambda: clocks.wall  # type: ignore[method-assign]
    caps = Caps(cost=None, tokens=None, requests=1, period=HOUR)
    assert store.reserve("b", caps, "a", 0, 0).granted
    clocks.wall += 2 * HOUR  # NTP steps the wall clock; no time passed.
    assert not store.reserve("b", caps, "b", 0, 0).granted


def test_the_redis_stores_measure_a_suspend_as_time_that_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The limiter, cooldown and budget stores send the time measured since their last reply
    # for a key; the server follows its own clock forward no further than that.
    clocks = Clocks(monkeypatch)
    hints = _ClockHints()
    head, sent = hints.args("k", "acquire")
    assert head == ["acquire", 0, -1, 0]
    hints.saw("k", 5_000_000, sent)
    clocks.suspend(HOUR)
    clocks.run(0.5)
    head, _ = hints.args("k", "acquire")
    assert head == ["acquire", 0, 5_000_000, round((HOUR + 0.5) * 1_000_000)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CLOCK_BOOTTIME is Linux's")
def test_on_linux_the_elapsed_clock_is_clock_boottime(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def clock_gettime(clock_id: int) -> float:
        asked.append(clock_id)
        return 42.0

    monkeypatch.setattr(time, "clock_gettime", clock_gettime)
    clock = _elapsed.pick("linux")
    assert clock() == 42.0
    assert asked[-1] == time.CLOCK_BOOTTIME


def test_without_a_suspend_aware_clock_monotonic_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _elapsed.pick("win32") is time.monotonic

    def refused(clock_id: int) -> float:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(time, "clock_gettime", refused)
    assert _elapsed.pick("linux") is time.monotonic


def test_the_elapsed_clock_goes_forward() -> None:
    first = _elapsed.elapsed()
    assert _elapsed.elapsed() >= first
