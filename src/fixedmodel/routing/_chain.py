"""Whether the call runs inside a fallback chain with another callable still to try.

``with_fallbacks`` sets this while it calls every callable but its last; a layer that would
otherwise wait (a balancer whose deployments all cool down) reads it and hands over at once,
because the next callable in the chain can answer now.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["has_next_in_chain"]

has_next_in_chain: ContextVar[bool] = ContextVar("fixedmodel_has_next_in_chain", default=False)
