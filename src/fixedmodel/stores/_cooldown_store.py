"""The interface of cooldown stores, and the circuit rule every store applies.

A load balancer (:func:`fixedmodel.with_load_balancing`) asks a store, before sending a call
to a deployment, whether the deployment may be used, and tells it afterwards how the call
went. The store keeps, per deployment, a circuit breaker; a store shared by processes (Redis)
makes every process skip a deployment that one of them saw failing.

The circuit rule
----------------
Per key the store keeps ``failures`` (consecutive failures), ``last_failure``,
``open_until`` (0: never opened) and ``probe_until`` (0: no probe out). With the
:class:`~fixedmodel.routing.load_balancing.CooldownPolicy` ``P``, at time ``now``:

- ``enter``: *open* while ``now < open_until``: refused, ``retry_in = open_until - now``.
  *Half-open* once ``open_until`` has passed: the first caller takes the probe
  (``probe_until = now + P.probe_timeout``) and is admitted as the probe; others are refused
  while the probe is out (``retry_in = probe_until - now``). *Closed* (never opened, or
  closed again): admitted, told the current ``failures``.
- ``succeeded``: the deployment answered: everything is reset (closed, no failures).
- ``failed(cool_for)``: a deadline only ever moves later: every opening sets
  ``open_until = max(open_until, deadline)``. A failed probe opens the circuit again until
  ``now + cool_for`` (a Retry-After) or ``now + P.cooldown``. Otherwise a Retry-After of
  ``cool_for`` seconds opens it at once until ``now + cool_for``; any other failure counts,
  in every state (a failure while open says the deployment is still failing): ``failures``
  counts up (reset first when the previous failure is older than ``P.failure_window``) and
  at ``P.failures`` the circuit opens until ``now + P.cooldown``. An opening that moves the
  deadline also frees the probe slot, so the next half-open gets a fresh probe.
- ``released``: a probe ended without a verdict (cancelled): another caller may probe.

Every operation is atomic per key and O(1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from fixedmodel.routing.load_balancing import CooldownPolicy

__all__ = ["CooldownStore", "Entry"]


@dataclass(frozen=True)
class Entry:
    """What a store decided about sending one call to one deployment.

    Attributes:
        granted: The deployment may be used.
        probe: Granted as the one probe of a half-open circuit: report how it went.
        failures: Consecutive failures recorded so far (closed circuit).
        retry_in: Seconds until the deployment could be tried, when refused.
    """

    granted: bool
    probe: bool = False
    failures: int = 0
    retry_in: float = 0.0


ADMITTED = Entry(granted=True)
"""A closed circuit with no failures: the usual answer."""


@runtime_checkable
class CooldownStore(Protocol):
    """Circuit breakers of deployments, keyed by deployment; see the module for the rule.

    Times are the store's own (a Redis store uses the server's ``TIME``); only durations
    cross the interface. The async methods do the same as the sync ones.
    """

    def enter(self, key: str, policy: CooldownPolicy) -> Entry:
        """Decide whether a call may go to the deployment ``key`` now."""
        ...

    async def aenter(self, key: str, policy: CooldownPolicy) -> Entry:
        """Async :meth:`enter`."""
        ...

    def succeeded(self, key: str) -> None:
        """Record that a call to ``key`` succeeded: the circuit closes, failures reset."""
        ...

    async def asucceeded(self, key: str) -> None:
        """Async :meth:`succeeded`."""
        ...

    def failed(
        self, key: str, policy: CooldownPolicy, *, probe: bool, cool_for: float | None
    ) -> None:
        """Record a failure of ``key``; ``cool_for`` seconds (a Retry-After) open it at once."""
        ...

    async def afailed(
        self, key: str, policy: CooldownPolicy, *, probe: bool, cool_for: float | None
    ) -> None:
        """Async :meth:`failed`."""
        ...

    def released(self, key: str) -> None:
        """Give back the probe of ``key`` without a verdict (the call was cancelled)."""
        ...

    async def areleased(self, key: str) -> None:
        """Async :meth:`released`."""
        ...
