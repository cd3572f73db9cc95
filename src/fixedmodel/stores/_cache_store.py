"""What a response cache store is, and the one byte format every store holds.

A store is a plain key/value map from ``str`` keys to ``bytes`` values with an optional
time to live, in a synchronous and an asynchronous flavour. It knows nothing about litellm:
the cache middleware computes the key (a secret-free hash) and encodes the answer with
:func:`encode_entry` before it reaches any store, and decodes what a store returns with
:func:`decode_entry`. So an entry written through one store implementation reads back
through any other, and a Redis store written later needs nothing from this module but the
Protocol.

Entry format, version 1: the ASCII header ``fixedmodel-cache/1`` and a newline, then the
UTF-8 JSON object ``{"kind": "completion" | "embedding", "response": {...}}``, where
``response`` is the answer as ``model_dump(mode="json")`` gives it (no hidden parameters,
headers or request data, hence no secrets).
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "ENTRY_FORMAT_VERSION",
    "CacheStore",
    "CorruptEntryError",
    "EntryKind",
    "after_fork_in_child",
    "decode_entry",
    "encode_entry",
    "encode_json_entry",
]

ENTRY_FORMAT_VERSION = 1
"""Version of the stored byte format; an entry of another version reads as corrupt."""

EntryKind = Literal["completion", "embedding"]

_HEADER = b"fixedmodel-cache/%d\n" % ENTRY_FORMAT_VERSION


@runtime_checkable
class CacheStore(Protocol):
    """Where the cache middleware keeps encoded answers; sync and async in one object.

    Implementations must be safe to call from several threads (sync methods) and from
    several tasks (async methods). A failing method may raise any ``Exception``: the cache
    logs it and calls the model instead, so a store never needs to swallow its own errors.
    A ``get`` that finds an unreadable value may raise :class:`CorruptEntryError`; the
    cache then counts a corrupt entry (a miss that the fresh answer overwrites).

    Optionally, a store may define ``check_for(*, asynchronous: bool) -> None`` (not part
    of the Protocol): ``with_cache`` calls it when wrapping, and it raises ``TypeError``
    when the store cannot serve callables of that kind, naming what is missing.
    """

    def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` when absent or expired."""
        ...

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key``, replacing any older value.

        Args:
            key: The cache key (ASCII, at most a few hundred characters).
            value: The encoded entry; stored and returned byte for byte.
            ttl: Seconds until the entry expires, or ``None`` to keep it until evicted.
        """
        ...

    async def aget(self, key: str) -> bytes | None:
        """Async :meth:`get`; must not block the event loop for long."""
        ...

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        """Async :meth:`set`; must not block the event loop for long."""
        ...


class CorruptEntryError(ValueError):
    """Stored bytes that are not a readable entry of the current format version."""


def encode_entry(kind: EntryKind, response: object) -> bytes:
    """Encode one answer for a store.

    Args:
        kind: Which call produced it.
        response: The answer as JSON-compatible data (``model_dump(mode="json")``).

    Returns:
        The entry bytes: format header, then compact JSON.

    Raises:
        TypeError: ``response`` holds a value JSON cannot represent.
        ValueError: ``response`` contains a reference cycle.
    """
    body = json.dumps(response, separators=(",", ":"), ensure_ascii=False)
    return encode_json_entry(kind, body.encode())


def encode_json_entry(kind: EntryKind, response_json: bytes) -> bytes:
    """:func:`encode_entry` for an answer already encoded as one JSON object (UTF-8).

    The one place that writes the entry layout; the answer is not parsed again, so a fresh
    answer is stored for the cost of one serialization.
    """
    return b"".join((_HEADER, b'{"kind":"', kind.encode(), b'","response":', response_json, b"}"))


def decode_entry(data: object) -> tuple[EntryKind, dict[str, object]]:
    """Decode what a store returned into the answer kind and its JSON data.

    Raises:
        CorruptEntryError: ``data`` is not bytes, has another format version or is not a
            well-formed entry. The message never quotes the stored data.
    """
    if not isinstance(data, bytes):
        msg = f"a cache entry must be bytes, the store returned {type(data).__name__}"
        raise CorruptEntryError(msg)
    if not data.startswith(_HEADER):
        raise CorruptEntryError(_header_problem(data))
    try:
        decoded: object = json.loads(data[len(_HEADER) :])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"cache entry body is not valid JSON ({type(exc).__name__})"
        raise CorruptEntryError(msg) from None
    if isinstance(decoded, dict):
        entry: dict[str, object] = decoded  # pyright: ignore[reportUnknownVariableType]
        kind, response = entry.get("kind"), entry.get("response")
        if isinstance(response, dict):
            fields: dict[str, object] = response  # pyright: ignore[reportUnknownVariableType]
            if kind == "completion":
                return "completion", fields
            if kind == "embedding":
                return "embedding", fields
    raise CorruptEntryError("cache entry body is not a completion or embedding entry")


def _header_problem(data: bytes) -> str:
    prefix = _HEADER[: _HEADER.index(b"/") + 1]
    expected = _HEADER[:-1].decode()
    if data.startswith(prefix):
        version = data[len(prefix) : data.find(b"\n", 0, 64)]
        if version.isdigit():
            return f"cache entry has format version {int(version)}, expected {expected!r}"
    return f"cache entry does not start with the header {expected!r}"


class _ForkAware(Protocol):
    def _after_fork(self) -> None: ...


# Objects whose in-process state (locks, worker threads, calls in flight) does not survive
# os.fork(): each gets its _after_fork() called in the child, before any other code runs.
_fork_aware: weakref.WeakSet[_ForkAware] = weakref.WeakSet()


def after_fork_in_child(obj: _ForkAware) -> None:
    """Have ``obj._after_fork()`` called in the child of every later ``os.fork()``.

    In a forked child only the forking thread exists: a lock another thread held stays
    locked forever, a worker thread is gone, a call in flight never lands. ``_after_fork``
    replaces such state (it must not block or do I/O); ``obj`` is held weakly.
    """
    _fork_aware.add(obj)


def _reset_in_child() -> None:
    # Only this thread runs in the child, and the fork happened while it held the GIL, so
    # no other thread is halfway through changing the set.
    for obj in list(_fork_aware):
        try:
            obj._after_fork()  # pyright: ignore[reportPrivateUsage]
        except Exception:  # A hook must never break the child; the object then fails late.
            logging.getLogger("fixedmodel.cache").exception("resetting %r after fork failed", obj)


if hasattr(os, "register_at_fork"):  # Not on Windows, which has no fork.
    os.register_at_fork(after_in_child=_reset_in_child)
