"""The configuration of the cooldown rule, shared by load balancing and the cooldown stores.

``fixedmodel.routing.load_balancing`` applies the rule and ``fixedmodel.stores`` keeps its
state; both need :class:`CooldownPolicy`, so it lives here, below both, and neither imports
the other for it. Users import it from ``fixedmodel`` (or
``fixedmodel.routing.load_balancing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

__all__ = ["CooldownPolicy"]


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"CooldownPolicy.{name} must be a number of seconds, got {type(value).__name__}"
        raise TypeError(msg)
    if not (value > 0 and value < float("inf")):
        msg = f"CooldownPolicy.{name} must be a finite number of seconds > 0, got {value!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class CooldownPolicy:
    """When a deployment cools down, for how long, and what a call does when all do.

    A 429 with ``Retry-After`` (or ``retry-after-ms``) cools the deployment down at once for
    that long (at most ``max_retry_after``), and so does a 503 or any other failure that
    counts (below) carrying that advice. Other failures that say the deployment is in
    trouble (429 without advice, 5xx, timeouts, connection errors, 401/403) count; at
    ``failures`` in a row, none more than ``failure_window`` after the previous, it cools
    down for ``cooldown``. Afterwards one call at a time probes it: success closes the
    circuit, failure cools it down again. Bad requests (400, 404, 422) say nothing about the
    deployment and do not count.

    Attributes:
        failures: Consecutive failures that open the circuit (an int >= 1).
        cooldown: Seconds a deployment is skipped after ``failures`` failures or a failed
            probe.
        failure_window: Seconds after which an old failure no longer counts towards
            ``failures``.
        max_retry_after: Longest cooldown, in seconds, a provider's Retry-After can impose.
        probe_timeout: Seconds a probe may take before another caller may probe instead (a
            process that died while probing does not block the deployment for ever).
        when_all_cooling: ``"wait"`` until the earliest deployment can be tried again (if
            that is within ``max_wait``), or ``"raise"`` at once. Either way, the error
            raised is a ``litellm.RateLimitError`` (HTTP 429) whose ``retry-after-ms``
            header says when a deployment recovers, so ``with_retries`` and
            ``with_fallbacks`` outside handle it like a provider's 429.
        max_wait: Longest wait, in seconds, for a deployment to recover.

    Raises:
        TypeError: A value has the wrong type.
        ValueError: A value is out of range.
    """

    failures: int = 3
    cooldown: float = 30.0
    failure_window: float = 60.0
    max_retry_after: float = 300.0
    probe_timeout: float = 60.0
    when_all_cooling: Literal["wait", "raise"] = "wait"
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        failures = cast("object", self.failures)  # Checked: callers may pass anything.
        if isinstance(failures, bool) or not isinstance(failures, int):
            msg = f"CooldownPolicy.failures must be an int >= 1, got {type(failures).__name__}"
            raise TypeError(msg)
        if failures < 1:
            msg = f"CooldownPolicy.failures must be an int >= 1, got {failures}"
            raise ValueError(msg)
        for name in ("cooldown", "failure_window", "max_retry_after", "probe_timeout", "max_wait"):
            _check_seconds(name, getattr(self, name))
        if self.when_all_cooling not in ("wait", "raise"):
            msg = (
                "CooldownPolicy.when_all_cooling must be 'wait' or 'raise', "
                f"got {self.when_all_cooling!r}"
            )
            raise ValueError(msg)
