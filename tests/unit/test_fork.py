"""Forked children start with fresh closing bookkeeping and metrics locks (issue 10, item 12)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from fixedmodel import _resources
from fixedmodel.middleware.observe import CallRecord, InMemoryMetrics

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")


def _in_child(check: object) -> int:
    """Run ``check()`` in a forked child; return the child's exit status (0: passed)."""
    pid = os.fork()
    if pid == 0:  # the child: report by exit status only
        code = 1
        try:
            code = 0 if check() else 2  # type: ignore[operator]  # a callable, see callers
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20  # a child stuck on a lock held at the fork never ends
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1  # hung


def _record() -> CallRecord:
    return CallRecord("m", "completion", False, 0.1, 1, 1, None, False, 1, 0.0, None)


def test_a_child_forked_while_a_lock_is_held_can_still_close_and_record() -> None:
    metrics = InMemoryMetrics()
    held = threading.Event()
    release = threading.Event()

    def hold_locks() -> None:
        with _resources._lock, metrics._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_locks)
    holder.start()
    held.wait(10)

    def child_check() -> bool:
        # The thread holding both locks does not exist in the child.
        _resources.release_sync_clients()
        metrics.record(_record())
        return metrics.summary().calls == 1 and not _resources._sync_scope.active

    try:
        assert _in_child(child_check) == 0
    finally:
        release.set()
        holder.join(10)


def test_a_child_does_not_wait_for_the_parents_calls_in_flight() -> None:
    epoch = _resources._begin(_resources._sync_scope)  # a parent call in flight
    try:
        assert _in_child(lambda: not _resources._sync_scope.active) == 0
    finally:
        _resources._end_sync(epoch)
