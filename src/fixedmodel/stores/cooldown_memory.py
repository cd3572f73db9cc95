"""The in-process cooldown store: the circuit rule of ``_cooldown_store`` over a dict.

Shared by the threads and event loops of one process; for cooldowns shared by several
processes or hosts use :class:`~fixedmodel.stores.redis_cooldown.RedisCooldownStore`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from fixedmodel._pickling import refuse_pickling
from fixedmodel.stores._cooldown_store import ADMITTED, PROBE_POLL, Entry

if TYPE_CHECKING:
    from fixedmodel._cooldown import CooldownPolicy

__all__ = ["MemoryCooldownStore"]


@dataclass
class _Circuit:
    failures: int = 0
    last_failure: float = 0.0
    open_until: float = 0.0
    probe_until: float = 0.0


def _open_until(circuit: _Circuit, deadline: float) -> None:
    """Open ``circuit`` until ``deadline``, unless it is already open longer."""
    if deadline > circuit.open_until:
        circuit.open_until = deadline
        circuit.probe_until = 0.0  # A new opening: the next half-open gets a fresh probe.


class MemoryCooldownStore:
    """Circuit breakers of deployments in this process; conforms to ``CooldownStore``.

    Args:
        clock: Monotonic clock in seconds; tests pass a controllable one.
    """

    def __reduce__(self) -> NoReturn:
        refuse_pickling(
            "A load balancer on the in-process cooldown store (MemoryCooldownStore)",
            "with_load_balancing(..., store=RedisCooldownStore(url))",
        )

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._circuits: dict[str, _Circuit] = {}

    def enter(self, key: str, policy: CooldownPolicy) -> Entry:
        """Decide whether a call may go to the deployment ``key`` now."""
        circuit = self._circuits.get(key)
        if circuit is None:  # Healthy and never failed: no lock, no clock.
            return ADMITTED
        with self._lock:
            now = self._clock()
            if now < circuit.open_until:
                return Entry(granted=False, retry_in=circuit.open_until - now)
            if circuit.open_until:
                if now < circuit.probe_until:
                    # A probe is out: look again soon, it usually reports before its lease.
                    return Entry(granted=False, retry_in=min(circuit.probe_until - now, PROBE_POLL))
                circuit.probe_until = now + policy.probe_timeout
                return Entry(granted=True, probe=True)
            return Entry(granted=True, failures=circuit.failures)

    async def aenter(self, key: str, policy: CooldownPolicy) -> Entry:
        """Async :meth:`enter` (no I/O: it does not yield to the event loop)."""
        return self.enter(key, policy)

    def succeeded(self, key: str) -> None:
        """Record that a call to ``key`` succeeded: the circuit closes, failures reset.

        A circuit open until a deadline still ahead stays open until then: that deadline was
        set by a failure after this call went out (a Retry-After, or the failures adding
        up), and a deadline only ever moves later.
        """
        if key in self._circuits:
            with self._lock:
                circuit = self._circuits.get(key)
                if circuit is not None and circuit.open_until > self._clock():
                    circuit.failures = 0
                else:
                    self._circuits.pop(key, None)

    async def asucceeded(self, key: str) -> None:
        """Async :meth:`succeeded`."""
        self.succeeded(key)

    def failed(
        self, key: str, policy: CooldownPolicy, *, probe: bool, cool_for: float | None
    ) -> None:
        """Record a failure of ``key``; ``cool_for`` seconds (a Retry-After) open it at once."""
        with self._lock:
            now = self._clock()
            circuit = self._circuits.get(key)
            if circuit is None:
                circuit = self._circuits[key] = _Circuit()
            if probe:  # The probe is back: its failure opens the circuit again.
                circuit.probe_until = 0.0
                circuit.failures = 0
                _open_until(circuit, now + (policy.cooldown if cool_for is None else cool_for))
                return
            if cool_for is not None:
                _open_until(circuit, now + cool_for)
                return
            # Counted in every state: a failure while open is news too (the deployment is
            # still failing), and may only keep it out longer.
            if now - circuit.last_failure > policy.failure_window:
                circuit.failures = 0
            circuit.failures += 1
            circuit.last_failure = now
            if circuit.failures >= policy.failures:
                circuit.failures = 0
                _open_until(circuit, now + policy.cooldown)

    async def afailed(
        self, key: str, policy: CooldownPolicy, *, probe: bool, cool_for: float | None
    ) -> None:
        """Async :meth:`failed`."""
        self.failed(key, policy, probe=probe, cool_for=cool_for)

    def released(self, key: str) -> None:
        """Give back the probe of ``key`` without a verdict (the call was cancelled)."""
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is not None:
                circuit.probe_until = 0.0

    async def areleased(self, key: str) -> None:
        """Async :meth:`released`."""
        self.released(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
