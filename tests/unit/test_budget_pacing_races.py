"""Budget pacing's wake-ups under races: a settlement never leaves a waiter its full timeout.

``Settlements.notify`` takes no lock when nobody waits, so a waiter and a notifier pair up
by order alone. The interleavings a thread switch can make are forced here through a
``generation`` that runs the other side at the point where a switch would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from fixedmodel.routing._pacing import Settlements


class _Switching(Settlements):
    """A ``Settlements`` whose next read of ``generation`` runs ``then`` right after the read,
    before the reader goes on: what a thread switch at that point would do."""

    def __init__(self) -> None:
        self._value = 0
        self.then: Callable[[], None] | None = None
        super().__init__()

    @property  # type: ignore[override]
    def generation(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]
        value = self._value
        then, self.then = self.then, None
        if then is not None:
            then()
        return value

    @generation.setter
    def generation(self, value: int) -> None:  # pyright: ignore[reportIncompatibleVariableOverride]
        self._value = value


def _notify_in_a_thread(settlements: Settlements) -> Callable[[], None]:
    """Start a notify in another thread; give it half a second (it may need the lock the
    reader holds, and then finishes once the reader waits)."""
    started: list[threading.Thread] = []

    def then() -> None:
        thread = threading.Thread(target=settlements.notify)
        started.append(thread)
        thread.start()
        thread.join(0.5)

    then.started = started  # type: ignore[attr-defined]
    return then


def test_a_settlement_right_after_a_thread_checked_the_generation_wakes_it() -> None:
    settlements = _Switching()
    seen = settlements.generation
    then = _notify_in_a_thread(settlements)
    settlements.then = then
    start = time.monotonic()
    settlements.wait_change(seen, 5.0)
    waited = time.monotonic() - start
    for thread in then.started:  # type: ignore[attr-defined]
        thread.join()
    assert waited < 2.5, f"a settlement made during the wait left it waiting {waited:.1f} s"


async def test_a_settlement_right_after_a_task_checked_the_generation_wakes_it() -> None:
    settlements = _Switching()
    seen = settlements.generation
    then = _notify_in_a_thread(settlements)
    settlements.then = then
    start = time.monotonic()
    await settlements.await_change(seen, 5.0)
    waited = time.monotonic() - start
    for thread in then.started:  # type: ignore[attr-defined]
        await asyncio.to_thread(thread.join)
    assert waited < 2.5, f"a settlement made during the wait left it waiting {waited:.1f} s"


def test_two_settlements_racing_never_bring_back_a_generation_a_waiter_saw() -> None:
    # Y reads the generation to add one and is switched out; Z settles, a waiter notes the
    # generation, X settles (nobody waits yet), then Y writes its stale sum: with ``+= 1``
    # the generation was the waiter's again, and it waited its full timeout after X.
    settlements = _Switching()
    noted: list[int] = []

    def switched_out() -> None:
        settlements.notify()  # Z
        noted.append(settlements.generation)  # the waiter notes it, then asks the store
        settlements.notify()  # X: settles after the waiter's refusal

    settlements.then = switched_out
    settlements.notify()  # Y
    if not noted:  # A notify that reads no generation: the same order, without the switch.
        settlements.notify()
        noted.append(settlements.generation)
        settlements.notify()
    start = time.monotonic()
    settlements.wait_change(noted[0], 2.0)
    waited = time.monotonic() - start
    assert waited < 1.0, f"X's settlement left the waiter waiting {waited:.1f} s"
