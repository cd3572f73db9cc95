"""The clock a store measures elapsed time by, to bound a forward step of a wall clock.

The budget stores (and the Redis limiter and cooldown stores) follow a wall clock, the
process's or the Redis server's, but no further forward than the time that passed meanwhile:
a wall clock stepped forward must not end a window early. ``time.monotonic()`` stops while
the system is suspended on Linux and macOS: after a laptop's hour of sleep, the wall clock
is an hour ahead of it, every forward move was bounded by it, and the windows lagged the
wall clock by that hour for the life of the process. The clock here goes on during a
suspend: ``CLOCK_BOOTTIME`` on Linux, ``CLOCK_MONOTONIC`` on macOS (which, unlike Python's
``time.monotonic()`` there, counts sleep); ``time.monotonic()`` elsewhere, or when the
system does not offer them.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable

__all__ = ["elapsed", "pick"]


def pick(platform: str = sys.platform) -> Callable[[], float]:
    """The clock of elapsed seconds that counts a suspend on ``platform``, if there is one."""
    if platform.startswith("linux"):
        clock_id: int | None = getattr(time, "CLOCK_BOOTTIME", None)
    elif platform == "darwin":
        clock_id = getattr(time, "CLOCK_MONOTONIC", None)
    else:
        clock_id = None
    if clock_id is None:
        return time.monotonic
    try:
        time.clock_gettime(clock_id)
    except OSError:  # Not offered by this kernel (or sandbox).
        return time.monotonic
    return functools.partial(time.clock_gettime, clock_id)


elapsed: Callable[[], float] = pick()
"""Seconds since an arbitrary point, going on while the system is suspended where it can."""
