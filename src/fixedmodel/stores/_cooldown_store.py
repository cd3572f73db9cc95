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
  while the probe is out, told to look again soon (``retry_in = min(probe_until - now,
  PROBE_POLL)``): the probe's lease bounds a probe that never reports, but a probe usually
  reports far sooner, and its success lets them in. *Closed* (never opened, or
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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from fixedmodel._cooldown import CooldownPolicy

__all__ = [
    "PROBE_POLL",
    "BalanceView",
    "CooldownStore",
    "Entry",
    "SharedBalanceStore",
    "SharedCall",
]

PROBE_POLL = 1.0
"""Longest ``retry_in`` of a refusal while another caller's probe is out (seconds)."""


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


@dataclass(frozen=True)
class BalanceView:
    """What every process sharing a store has in flight and has used, read at one moment.

    Attributes:
        turn: The group's place in the round-robin rotation (one per call, all processes).
        busy: Calls in flight per deployment, in the order asked, from every process.
        requests: Requests sent per deployment within its usage window.
        tokens: Tokens (estimated, then corrected) sent per deployment within that window.
    """

    turn: int
    busy: tuple[int, ...]
    requests: tuple[int, ...]
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class SharedCall:
    """A call recorded in a shared store, to end with :meth:`SharedBalanceStore.balance_ended`.

    Attributes:
        member: Its id among the deployment's calls in flight.
        bucket: The usage bucket it was counted in (-1: usage not counted).
        tokens: Tokens counted for it so far.
    """

    member: str
    bucket: int
    tokens: int


@runtime_checkable
class SharedBalanceStore(Protocol):
    """A cooldown store that also holds every strategy's state for all processes sharing it.

    ``group`` names the balancer's deployment group (its ``key``), ``name`` one deployment.
    Usage is counted per deployment in buckets of ``window / 10`` seconds and read over the
    last 11 buckets (so over ``window`` to ``1.1 * window`` seconds); ``window`` 0 means the
    deployment's usage is not counted. A call counts as in flight until it ends or for
    ``lease`` seconds, whichever is first (a process that died holds no count for ever).
    Every method is best effort: ``None`` or nothing when the store cannot answer.
    """

    def balance_view(
        self, group: str, names: Sequence[str], windows: Sequence[float]
    ) -> BalanceView | None:
        """Take the next turn and read in-flight counts and usage of ``names``."""
        ...

    async def abalance_view(
        self, group: str, names: Sequence[str], windows: Sequence[float]
    ) -> BalanceView | None:
        """Async :meth:`balance_view`."""
        ...

    def balance_started(
        self, group: str, name: str, *, lease: float, window: float, tokens: int
    ) -> SharedCall | None:
        """Record a call to ``name``: in flight, and (``window`` > 0) its usage."""
        ...

    async def abalance_started(
        self, group: str, name: str, *, lease: float, window: float, tokens: int
    ) -> SharedCall | None:
        """Async :meth:`balance_started`."""
        ...

    def balance_ended(
        self,
        group: str,
        name: str,
        call: SharedCall,
        *,
        window: float,
        tokens: int | None,
        sent: bool,
    ) -> None:
        """End ``call``: no longer in flight. Its usage is taken back if nothing was
        ``sent``, else corrected to ``tokens`` (kept as counted when None), while its bucket
        is still within the window."""
        ...

    async def abalance_ended(
        self,
        group: str,
        name: str,
        call: SharedCall,
        *,
        window: float,
        tokens: int | None,
        sent: bool,
    ) -> None:
        """Async :meth:`balance_ended`."""
        ...
