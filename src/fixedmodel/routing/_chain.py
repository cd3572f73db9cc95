"""Whether the call runs inside a fallback chain with another callable still to try.

``with_fallbacks`` sets this while it calls its callables; a layer that would otherwise wait
(a balancer whose deployments all cool down) reads its truth and hands over at once, because
the next callable in the chain can answer now. The value is the chain's call itself, whose
truth is worked out only when read (a later callable not waiting out retry advice and whose
context window takes the request, or an outer chain's next one), so that a successful call
pays nothing for it; ``False`` outside a chain.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["has_next_in_chain"]

has_next_in_chain: ContextVar[object] = ContextVar("fixedmodel_has_next_in_chain", default=False)
