"""A routing layer's say in the retries underneath it.

A load balancer sends a call to one deployment, which is often ``with_retries(...)``. Once
that deployment cools down, another attempt on it is wasted (and sleeps its Retry-After):
the balancer would rather try another deployment now. While it calls a deployment it sets
:data:`give_up` to a function that ``with_retries`` calls with each failure; a reason (str)
ends the retries there, and the failure is raised to the balancer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

__all__ = ["give_up"]

give_up: ContextVar[Callable[[BaseException], str | None] | None] = ContextVar(
    "fixedmodel_give_up", default=None
)
