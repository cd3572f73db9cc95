"""Release the HTTP clients litellm caches, so that closing a bound object leaves nothing open.

litellm keeps the HTTP clients it builds in ``litellm.in_memory_llm_clients_cache`` (async
ones keyed per event loop) and never closes them while the process runs; they surface as
"unclosed transport" / "Unclosed client session" warnings once their loop is gone. Closing a
bound object closes and evicts those clients: the async ones of the running loop, or the
sync ones. Other bound objects using the same provider just get fresh clients on their next
call. A client that is serving a request right now (another bound object's call in
flight, or a stream being read) is left alone, so closing one object never breaks another's
call; litellm keeps using it. These are litellm internals, so every step is defensive: a
litellm release that changes them makes closing a no-op, never an error.
"""

from __future__ import annotations

import inspect
import logging

from fixedmodel._litellm import litellm_module

LOGGER = logging.getLogger("fixedmodel")


def _client_cache() -> object:
    return getattr(litellm_module(), "in_memory_llm_clients_cache", None)


def _entries(cache: object) -> dict[str, object]:
    entries = getattr(cache, "cache_dict", None)
    return dict(entries) if isinstance(entries, dict) else {}  # pyright: ignore[reportUnknownArgumentType]


def _loop_suffix() -> str | None:
    try:
        from litellm.caching.evicted_client_closer import running_loop_token
    except ImportError:
        return None
    token = running_loop_token()
    return None if token is None else f"-{token}"


def _busy(client: object) -> bool:
    # litellm's own check for "a connection of this client is leased right now"; when it
    # cannot be asked, assume busy: leaving a client open is better than breaking a call.
    try:
        from litellm.caching.evicted_client_closer import (  # litellm's own lease check
            _has_connection_in_flight,  # pyright: ignore[reportPrivateUsage]
        )
    except ImportError:
        return True
    return bool(_has_connection_in_flight(client))


def _evict(cache: object, key: str) -> None:
    delete = getattr(cache, "delete_cache", None)
    if callable(delete):
        delete(key)


async def release_async_clients() -> None:
    """Flush litellm's logging worker, then close and evict this loop's cached clients."""
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

        await GLOBAL_LOGGING_WORKER.flush()
    except Exception:  # internals moved: nothing to flush
        LOGGER.debug("fixedmodel: could not flush litellm's logging worker", exc_info=True)
    suffix = _loop_suffix()
    if suffix is None:
        return
    cache = _client_cache()
    for key, client in _entries(cache).items():
        if not key.endswith(suffix) or _busy(client):
            continue
        closer = getattr(client, "aclose", None) or getattr(client, "close", None)
        try:
            if callable(closer):
                result = closer()
                if inspect.isawaitable(result):
                    await result
            _evict(cache, key)
        except Exception:
            LOGGER.debug("fixedmodel: closing a litellm client failed", exc_info=True)


def release_sync_clients() -> None:
    """Close and evict the synchronous HTTP clients litellm cached."""
    cache = _client_cache()
    for key, client in _entries(cache).items():
        closer = getattr(client, "close", None)
        if not callable(closer) or inspect.iscoroutinefunction(closer):
            continue
        if "Async" in type(client).__name__ or _busy(client):
            continue
        try:
            closer()
            _evict(cache, key)
        except Exception:
            LOGGER.debug("fixedmodel: closing a litellm client failed", exc_info=True)
