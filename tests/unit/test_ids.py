"""Reservation and call ids: unique across threads, and across a fork (same prefix otherwise)."""

from __future__ import annotations

import os
import threading

import pytest

from fixedmodel._ids import unique_id


def test_ids_taken_by_many_threads_at_once_are_all_distinct() -> None:
    taken: list[list[str]] = [[] for _ in range(8)]

    def take(into: list[str]) -> None:
        into.extend(unique_id() for _ in range(10_000))

    threads = [threading.Thread(target=take, args=(into,)) for into in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [name for into in taken for name in into]
    assert len(set(every)) == len(every) == 80_000


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_never_gives_an_id_its_parent_gives() -> None:
    # Parent and child share a Redis store: the child's counter restarts, so its ids must
    # come from a fresh random prefix, not the parent's.
    before = unique_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, "\n".join(unique_id() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split("\n")
    os.waitpid(pid, 0)
    parent = [unique_id() for _ in range(100)]
    assert len(child) == 100
    assert not set(child) & set(parent)
    assert child[0][:24] != before[:24]
    assert parent[0][:24] == before[:24]
