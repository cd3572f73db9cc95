"""Release the HTTP clients litellm caches, without ever closing one a call may still use.

litellm keeps the HTTP clients it builds in ``litellm.in_memory_llm_clients_cache`` (async
ones keyed per event loop) and never closes them while the process runs; they surface as
"unclosed transport" / "Unclosed client session" warnings once their loop is gone. Closing a
bound object evicts those clients from litellm's cache (the async ones of the running loop,
or the sync ones), so that no later call can be handed one, and closes each evicted client
once no call that could hold it is still running.

Which calls could hold it: litellm takes a client from its cache inside the call, some time
before the request reaches the wire, and a stream keeps using it until the stream ends. So
every call through a bound object holds a ticket (see :func:`track_calls`) from before
litellm looks at its cache until the call returns, or for a stream until the stream ends.
Tickets are numbered by epoch; evicting clients starts a new epoch, and the evicted clients
are closed when no ticket of an earlier epoch is left: a call that started later cannot
have been handed them. Async clients are tracked per event loop (litellm keys them per
loop), sync clients for the whole process. A client that still reports a connection in
flight (used by code that calls litellm directly, outside fixedmodel) is kept until a later
call ends. Checking the client alone would not do: between litellm taking it from the cache
and the request going out, nothing on the client shows that it is about to be used.

A close that waits for a stream is also done when the stream's loop shuts down first
(``asyncio.run`` returning while the stream is unfinished or was just read out): see
:func:`_guard_shutdown`.

These are litellm internals, so every step is defensive: a litellm release that changes them
makes closing a no-op, never an error, and closing never waits without a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from fixedmodel._litellm import litellm_module
from fixedmodel._streams import watch_stream

if TYPE_CHECKING:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

LOGGER = logging.getLogger("fixedmodel")

# Longest wait, in seconds, for litellm's logging worker to flush, and for the closing of
# evicted clients, in ``aclose()``. litellm 1.82.6's flush could wait forever on a second
# event loop; past this bound closing goes on without it.
CLOSE_TIMEOUT = 5.0

_lock = threading.Lock()


class _Scope:
    """Calls in flight and evicted clients waiting to be closed, for one loop or for sync calls.

    Only read and written under ``_lock``.
    """

    __slots__ = ("__weakref__", "active", "closing", "epoch", "guard", "pending")

    def __init__(self) -> None:
        self.epoch = 0
        self.active: dict[int, int] = {}  # epoch -> tickets of that epoch still running
        self.pending: list[tuple[int, object]] = []  # (epoch evicted in, client)
        self.closing: set[asyncio.Task[None]] = set()  # async closes under way
        # While evicted clients wait for a stream: closes them when the loop shuts down.
        self.guard: _Guard | None = None

    def due(self) -> list[object]:
        """Take the evicted clients no running ticket can hold (under ``_lock``)."""
        if not self.pending:
            return []
        oldest = min(self.active) if self.active else self.epoch + 1
        ready = [client for epoch, client in self.pending if epoch < oldest]
        if ready:
            self.pending = [(epoch, client) for epoch, client in self.pending if epoch >= oldest]
        return ready


_sync_scope = _Scope()
_loop_scopes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Scope] = (
    weakref.WeakKeyDictionary()
)


def _after_fork_in_child() -> None:
    """Start a forked child with fresh bookkeeping.

    The parent's calls in flight, its event loops and any thread that held ``_lock`` at the
    fork do not exist in the child: keeping their tickets would leave the child's evicted
    clients open for good, and a lock held at the fork would never be released.
    """
    global _lock, _sync_scope, _loop_scopes
    _lock = threading.Lock()
    _sync_scope = _Scope()
    _loop_scopes = weakref.WeakKeyDictionary()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _loop_scope(loop: asyncio.AbstractEventLoop) -> _Scope:
    scope = _loop_scopes.get(loop)
    if scope is None:
        with _lock:
            scope = _loop_scopes.setdefault(loop, _Scope())
    return scope


def _begin(scope: _Scope) -> int:
    with _lock:
        epoch = scope.epoch
        scope.active[epoch] = scope.active.get(epoch, 0) + 1
        return epoch


def _end(scope: _Scope, epoch: int) -> list[object]:
    with _lock:
        left = scope.active[epoch] - 1
        if left:
            scope.active[epoch] = left
        else:
            del scope.active[epoch]
        return scope.due()


def _end_sync(epoch: int) -> None:
    for client in _end(_sync_scope, epoch):
        _close_sync_client(_sync_scope, client)


def _end_async(loop: asyncio.AbstractEventLoop, scope: _Scope, epoch: int) -> None:
    due = _end(scope, epoch)
    if not due:
        return
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        _start_closing(scope, due)
    elif not loop.is_closed():  # a stream ended in another thread or in the collector
        # The loop may close meanwhile: then the collector gets the clients.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_start_closing, scope, due)


def _start_closing(scope: _Scope, clients: list[object]) -> None:
    task = asyncio.get_running_loop().create_task(_close_async_clients(scope, clients))
    with _lock:
        scope.closing.add(task)
    task.add_done_callback(lambda done: _forget(scope, done))


def _forget(scope: _Scope, task: asyncio.Task[None]) -> None:
    with _lock:
        scope.closing.discard(task)


def _stream_class() -> type[Any] | None:
    stream_class: object = getattr(litellm_module(), "CustomStreamWrapper", None)
    return stream_class if isinstance(stream_class, type) else None


def _returned(result: Any, release: Callable[[], None]) -> Any:
    """Give the ticket back now, or, when ``result`` is a stream, when the stream ends."""
    stream_class = _stream_class()
    if stream_class is None or not isinstance(result, stream_class):
        release()
    else:
        watch_stream(cast("CustomStreamWrapper", result), lambda _end: release())
    return result


def track_calls(function: Callable[..., Any], *, is_async: bool) -> Callable[..., Any]:
    """Wrap a litellm function so that each call holds a ticket while it may use a client.

    The ticket is taken before litellm can look at its client cache and given back when the
    call returns or raises, or, for a stream, when the stream ends (read to its end, failed,
    closed, or collected). Closing evicted clients waits for the tickets of earlier epochs.

    Args:
        function: ``litellm.acompletion``, ``litellm.completion`` or an embedding function.
        is_async: Whether ``function`` returns an awaitable.

    Returns:
        A function with the same parameters and results.
    """
    # Any: litellm's functions are untyped; the bound classes type their results.
    if is_async:

        async def tracked_async(**kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            scope = _loop_scope(loop)
            epoch = _begin(scope)
            released = False

            def release() -> None:
                nonlocal released
                if not released:
                    released = True
                    _end_async(loop, scope, epoch)

            try:
                return _returned(await function(**kwargs), release)
            except BaseException:
                release()
                raise

        return tracked_async

    def tracked_sync(**kwargs: Any) -> Any:
        epoch = _begin(_sync_scope)
        released = [False]

        def release() -> None:
            with _lock:
                if released[0]:
                    return
                released[0] = True
            _end_sync(epoch)

        try:
            return _returned(function(**kwargs), release)
        except BaseException:
            release()
            raise

    return tracked_sync


def _client_cache() -> object:
    return getattr(litellm_module(), "in_memory_llm_clients_cache", None)


def _entries(cache: object) -> dict[str, object]:
    entries = getattr(cache, "cache_dict", None)
    return dict(entries) if isinstance(entries, dict) else {}  # pyright: ignore[reportUnknownArgumentType]


def _loop_suffix() -> str | None:
    try:
        from litellm.caching.evicted_client_closer import running_loop_token
    except ImportError:  # before litellm 1.8x: keys end with the loop's id()
        return f"-{id(asyncio.get_running_loop())}"
    token = running_loop_token()
    return None if token is None else f"-{token}"


def _busy(client: object) -> bool:
    # litellm's own check for "a connection of this client is leased right now", for calls
    # made outside fixedmodel; where it cannot be asked, the tickets alone decide.
    try:
        from litellm.caching.evicted_client_closer import (  # litellm's own lease check
            _has_connection_in_flight,  # pyright: ignore[reportPrivateUsage]
        )
    except ImportError:
        return False
    try:
        return bool(_has_connection_in_flight(client))
    except Exception:
        return True


def _evict(cache: object, key: str) -> None:
    delete = getattr(cache, "delete_cache", None)
    if callable(delete):
        delete(key)
        return
    entries = getattr(cache, "cache_dict", None)
    if isinstance(entries, dict):
        entries.pop(key, None)  # pyright: ignore[reportUnknownMemberType]


def _is_async_client(client: object) -> bool:
    closer = getattr(client, "aclose", None) or getattr(client, "close", None)
    return inspect.iscoroutinefunction(closer) or "Async" in type(client).__name__


def _evict_into(scope: _Scope, keys: list[str], cache: object) -> list[object]:
    """Evict ``keys`` from litellm's cache into ``scope``'s pending list; return what is due."""
    with _lock:
        current = _entries(cache)
        for key in keys:
            client = current.get(key)
            if client is None:
                continue
            try:
                _evict(cache, key)
            except Exception:
                LOGGER.debug("fixedmodel: evicting a litellm client failed", exc_info=True)
                continue
            scope.pending.append((scope.epoch, client))
        # Calls that start from now on cannot be handed an evicted client.
        scope.epoch += 1
        return scope.due()


def _requeue(scope: _Scope, client: object) -> None:
    with _lock:
        scope.pending.append((scope.epoch, client))
        scope.epoch += 1


async def _close_async_clients(scope: _Scope, clients: list[object]) -> None:
    """Close ``clients``; a cancellation (the loop shutting down) does not stop the others.

    ``asyncio.run`` cancels every task left when its coroutine returns, and a close that a
    stream's end (or its collection) started is such a task. A cancellation delivered while
    one client closes ends that client's close (its sockets are closed before its first
    wait, for httpx and aiohttp); the remaining clients are still closed, and the
    cancellation is raised after them.
    """
    cancelled: asyncio.CancelledError | None = None
    for client in clients:
        if _busy(client):
            _requeue(scope, client)
            continue
        try:
            await _close_client(client)
        except asyncio.CancelledError as error:
            cancelled = error
    await _drop_guard(scope)
    if cancelled is not None:
        raise cancelled


def _uncancel() -> None:
    # Python 3.11+ counts cancellations; the one taken here must not make a later
    # ``asyncio.timeout`` in this task believe it was cancelled.
    task = asyncio.current_task()
    uncancel = getattr(task, "uncancel", None)
    if callable(uncancel):
        uncancel()


def _close_sync_client(scope: _Scope, client: object) -> None:
    if _busy(client):
        _requeue(scope, client)
        return
    closer = getattr(client, "close", None)
    try:
        if callable(closer):
            closer()
    except Exception:
        LOGGER.debug("fixedmodel: closing a litellm client failed", exc_info=True)


async def _bounded(awaitable: Awaitable[object]) -> None:
    """Await ``awaitable`` for at most :data:`CLOSE_TIMEOUT` seconds, in the current task.

    No helper task is made (``asyncio.wait_for`` makes one before Python 3.12): the loop's
    shutdown cancels every task, and a helper cancelled before its first step would leave
    ``awaitable`` never awaited ("coroutine ... was never awaited") and its client open.
    """
    task = asyncio.current_task()
    if task is None:  # not inside a task: nothing to bound with
        await awaitable
        return
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, expire)
    try:
        await awaitable
    except asyncio.CancelledError:
        if not expired:
            raise
        _uncancel()
        LOGGER.warning(
            "fixedmodel: gave up waiting for litellm after %.0f s while closing", CLOSE_TIMEOUT
        )
    finally:
        timer.cancel()


async def release_async_clients() -> None:
    """Flush litellm's logging worker, then evict and close this loop's cached clients.

    Each wait is bounded by :data:`CLOSE_TIMEOUT` seconds. A client that a call in flight
    may still use is closed when the last such call ends, not here.
    """
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

        await _bounded(GLOBAL_LOGGING_WORKER.flush())
    except Exception:  # internals moved: nothing to flush
        LOGGER.debug("fixedmodel: could not flush litellm's logging worker", exc_info=True)
    loop = asyncio.get_running_loop()
    scope = _loop_scope(loop)
    suffix = _loop_suffix()
    cache = _client_cache()
    keys = (
        []
        if suffix is None
        else [
            key
            for key, client in _entries(cache).items()
            if key.endswith(suffix) and _is_async_client(client)
        ]
    )
    due = _evict_into(scope, keys, cache)
    if due:
        await _close_async_clients(scope, due)
    await _guard_shutdown(scope)
    with _lock:
        under_way = list(scope.closing)
    if under_way:  # closes a call's end started: done before this returns, within the bound
        await _bounded(asyncio.gather(*under_way, return_exceptions=True))


class _Guard:
    """A started async generator the loop's shutdown closes; ``dismissed``: closed by us."""

    __slots__ = ("dismissed", "generator")

    def __init__(self, scope: _Scope) -> None:
        self.dismissed = False
        self.generator = _shutdown_guard(scope, self)


async def _guard_shutdown(scope: _Scope) -> None:
    """While evicted clients wait for a stream, have the loop's shutdown close them.

    A stream that is still open when its loop ends (the caller broke out of it, or keeps it
    past ``asyncio.run``) would keep its evicted clients open for good, and a close started
    by a stream's end just before ``asyncio.run`` returns is cancelled with every other task.
    So the scope holds a started async generator, which the loop registers; the loop's
    ``shutdown_asyncgens()`` (run by ``asyncio.run`` and pytest-asyncio after cancelling
    the tasks) closes it in a fresh task, and its ``finally`` closes every client still
    pending: no stream can be read once its loop is gone.
    """
    with _lock:
        if scope.guard is not None or not scope.pending:
            return
        guard = scope.guard = _Guard(scope)
    with contextlib.suppress(StopAsyncIteration):
        await guard.generator.__anext__()


async def _drop_guard(scope: _Scope) -> None:
    """Dismiss the scope's shutdown guard once no evicted client waits any more.

    The started generator holds its loop (through the loop's finalizer hook), and the scope
    is kept per loop: left in place, it would keep a loop closed without
    ``shutdown_asyncgens()`` alive.
    """
    with _lock:
        guard = scope.guard
        if guard is None or scope.pending:
            return
        scope.guard = None
        guard.dismissed = True
    with contextlib.suppress(Exception):
        await guard.generator.aclose()


async def _shutdown_guard(scope: _Scope, guard: _Guard) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        with _lock:
            if guard.dismissed:  # closed by _drop_guard, not by the loop's shutdown
                clients: list[object] = []
            else:
                clients = [client for _epoch, client in scope.pending]
                scope.pending = []
                if scope.guard is guard:
                    scope.guard = None
        for client in clients:
            await _close_client(client)


async def _close_client(client: object) -> None:
    """Close one client, within the shutdown bound; a failure is logged (not a cancellation)."""
    closer = getattr(client, "aclose", None) or getattr(client, "close", None)
    try:
        if callable(closer):
            result = closer()
            if inspect.isawaitable(result):
                await _bounded(result)
    except Exception:
        LOGGER.debug("fixedmodel: closing a litellm client failed", exc_info=True)


def release_sync_clients() -> None:
    """Evict and close the synchronous HTTP clients litellm cached.

    A client that a call in flight (in any thread) may still use is closed when the last
    such call ends, not here.
    """
    cache = _client_cache()
    keys = [
        key
        for key, client in _entries(cache).items()
        if callable(getattr(client, "close", None)) and not _is_async_client(client)
    ]
    for client in _evict_into(_sync_scope, keys, cache):
        _close_sync_client(_sync_scope, client)
