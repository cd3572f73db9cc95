"""Ids that no other call, in this process or any other, is given: cheap enough for each call.

A budget reservation and a load-balanced call on a shared store are named by such an id, and
the id travels to Redis, where every process sharing the store writes its own. ``uuid4`` gives
that too, but reads the operating system's random source on every call (about 10 µs between
two litellm calls); here the random part is drawn once per process, and again in the child of
a fork, and a counter tells this process's ids apart.
"""

from __future__ import annotations

import itertools
import os

__all__ = ["unique_id"]


def _fresh() -> tuple[str, itertools.count[int]]:
    return os.urandom(12).hex(), itertools.count()


_prefix, _counter = _fresh()


def unique_id() -> str:
    """An id unique across processes and hosts: 96 random bits, then a counter (hex)."""
    return f"{_prefix}{next(_counter):x}"


def _renew_in_child() -> None:
    global _prefix, _counter
    _prefix, _counter = _fresh()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_in_child)
