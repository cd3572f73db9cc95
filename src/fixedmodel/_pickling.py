"""How fixedmodel's objects travel to worker processes (pickle), and why some cannot.

A stack is pickled by rebuilding: each layer pickles the public call that made it (the
factory and its arguments), so a worker gets a fresh layer around the same configuration,
with new locks, threads and connections of its own. State that lives outside the process
(a Redis store, a disk cache's directory) is shared that way; state that lives inside it (an
in-memory cache or limiter window, metrics kept in memory) cannot be, and refuses with an
error that names the shared alternative, instead of being copied and silently diverging.
"""

from __future__ import annotations

from typing import NoReturn

__all__ = ["refuse_pickling"]


def refuse_pickling(what: str, instead: str) -> NoReturn:
    """Raise the error for an object whose state cannot leave this process.

    Raises:
        TypeError: Always, naming ``what`` and the alternative ``instead``.
    """
    msg = (
        f"{what} keeps its state in this process, so it cannot be sent to another one "
        f"(pickled): a copy would not share it. Use {instead} to share it across processes."
    )
    raise TypeError(msg)
