"""Faults of observers, logged once per kind and never raised into the call they observe.

Tracing, metrics, logging and stream watchers watch a call; none of them may change its
result. A span processor, a meter, a metrics sink or a watcher that raises is reported here:
a warning with the traceback the first time a kind of fault (where it happened and the
exception class) is seen in the process, DEBUG records after that, so a broken exporter
cannot flood the log with one traceback per call.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["observer_fault"]

_LOG = logging.getLogger("fixedmodel")
_MAX_KINDS = 256  # Kinds are few (places times exception classes); the bound is a safeguard.
_seen: set[tuple[str, str]] = set()
_lock = threading.Lock()


def observer_fault(where: str, error: BaseException) -> None:
    """Report that the observer step ``where`` raised ``error``; the caller goes on.

    Args:
        where: What failed, as a reader of the log names it (e.g. ``"with_tracing: ending
            a span"``).
        error: The exception the observer raised.
    """
    kind = (where, type(error).__qualname__)
    with _lock:
        first = kind not in _seen and len(_seen) < _MAX_KINDS
        if first:
            _seen.add(kind)
    try:
        if first:
            _LOG.warning(
                "fixedmodel: %s failed (%s: %s); the call is not affected "
                "(logged once per kind, then at DEBUG)",
                where,
                type(error).__name__,
                error,
                exc_info=error,
            )
        else:
            _LOG.debug("fixedmodel: %s failed again (%s)", where, type(error).__name__)
    except Exception:
        pass
