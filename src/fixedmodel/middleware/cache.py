"""Response caching: answer a request seen before from a store, without calling the model.

``with_cache(chat)`` returns a callable of the same kind as ``chat`` that looks every
non-streamed request up in a store (memory by default) under a key made of the model and
every parameter that can change the answer (see :mod:`fixedmodel.middleware._cache_key`).
A hit returns a new ``ModelResponse``/``EmbeddingResponse`` rebuilt from the stored JSON,
equal to the live answer field for field (``model_dump()``), marked
``response._hidden_params["cache_hit"] = True`` and in the call record
(:class:`~fixedmodel.middleware._call.CallInfo`), and makes no upstream request.

- Every decision is made on the request litellm will receive (the call's keywords, the bound
  defaults and ``extra_params`` merged), not on the call's keywords alone.
- Only complete answers are stored: never an error, never an answer the ``validator``
  rejects or raises on (it decides what is stored, not what the caller gets).
- Streamed calls bypass the cache: they are neither answered from it nor stored.
- Single flight: identical requests made while one is in progress wait for it and get
  copies of its answer (marked as cache hits), or its exception. Identical means the same
  request on the wire: callers whose credentials or transport settings (``api_key``,
  ``timeout``...) differ never wait for one another, though they share stored entries. If
  the leader is cancelled, the waiters start over. Async calls coalesce per event loop,
  sync calls across threads; separate processes do not coalesce. A caller that waited
  made no request: its call record says so (a cache hit, 0 attempts), whether it got the
  answer or the error.
- A request with a parameter that has no JSON form (a callable, an open file) is sent
  without the cache, with one warning per parameter name; credentials, callable ones such
  as ``azure_ad_token_provider`` included, are never keyed, so they never prevent caching.
- A corrupt entry is logged (``fixedmodel.cache``) and is a miss; the fresh answer
  overwrites it. A failing store is logged and bypassed: it never fails a call.
- Memory: besides its store, a cache keeps at most ``MEMO_ENTRIES`` decoded answers (no more
  than a ``MemoryCacheStore`` keeps entries) of at most ``MEMO_BYTES`` in all, and one
  record per call in flight.
- ``os.fork()``: a child inherits no call in flight and uses the stores on its own.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from fixedmodel._protocols import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    ClosableAFixedModelCompletion,
    ClosableAFixedModelEmbedding,
    ClosableFixedModelCompletion,
    ClosableFixedModelEmbedding,
    FixedModelCompletion,
    FixedModelEmbedding,
)
from fixedmodel.middleware._cache_codec import (
    MEMO_BYTES,
    MEMO_ENTRIES,
    DecodedAnswers,
    Template,
    encode_answer,
    is_answer,
    is_cache_hit,
)
from fixedmodel.middleware._cache_flight import AsyncFlight, Flight, SyncFlight
from fixedmodel.middleware._cache_key import KeyMaker, UncacheableRequestError, flight_key
from fixedmodel.middleware._call import (
    CallInfo,
    ModelCallable,
    Wrapper,
    check_callable,
    current_call,
    innermost,
    is_async_callable,
    is_stream_request,
    request_kind,
)
from fixedmodel.stores._cache_store import (
    CacheStore,
    CorruptEntryError,
    EntryKind,
    after_fork_in_child,
)
from fixedmodel.stores.memory import MemoryCacheStore

if TYPE_CHECKING:
    from litellm.types.utils import EmbeddingResponse, ModelResponse

__all__ = ["is_cache_hit", "with_cache"]

_log = logging.getLogger("fixedmodel.cache")
_FlightT = TypeVar("_FlightT", AsyncFlight, SyncFlight)
# The kinds by what they answer: the validator's argument depends on it.
_CompletionFn = TypeVar(
    "_CompletionFn",
    ClosableAFixedModelCompletion,
    ClosableFixedModelCompletion,
    AFixedModelCompletion,
    FixedModelCompletion,
)
_EmbeddingFn = TypeVar(
    "_EmbeddingFn",
    ClosableAFixedModelEmbedding,
    ClosableFixedModelEmbedding,
    AFixedModelEmbedding,
    FixedModelEmbedding,
)
_WARNED_MAX = 1024  # Parameter names warned about, per cache; a safeguard, names are few.


def _served(info: CallInfo | None) -> None:
    """Record that a pass through the cache was answered without a request.

    The caller got a stored answer, or shared another call's answer or error: its record is
    a cache hit, and the pass is counted as unsent, so that a ``with_retries`` outside the
    cache, which counts every pass as an attempt, does not count it as a request (see
    :func:`~fixedmodel.middleware._call.requests_made`).
    """
    if info is not None:
        info.cache_hit = True
        info.unsent += 1


class _Request:
    """A cacheable request: its cache key, its single-flight key and its kind."""

    __slots__ = ("flight", "key", "kind")

    def __init__(self, key: str, flight: str, kind: EntryKind) -> None:
        self.key = key
        self.flight = flight
        self.kind: EntryKind = kind


class _Cache(Wrapper, Generic[_FlightT]):
    """What the sync and async cache wrappers share: keys, lookups, encoding, logging."""

    __slots__ = (
        "__weakref__",
        "_answers",
        "_call",
        "_flights",
        "_keys",
        "_lock",
        "_store",
        "_ttl",
        "_validator",
        "_warned",
    )

    def __init__(
        self,
        inner: ModelCallable,
        store: CacheStore,
        ttl: float | None,
        validator: Callable[[Any], object] | None,
        namespace: str | None,
    ) -> None:
        super().__init__(inner)
        # The wrapped call takes and returns litellm's data (the litellm boundary).
        self._call: Callable[..., Any] = inner
        self._store = store
        self._ttl = ttl
        # Called with litellm's answer object; the overloads of with_cache tie its
        # parameter type to the kind of the wrapped callable.
        self._validator = validator
        self._keys = KeyMaker(innermost(inner), self.model, namespace)
        self._answers = DecodedAnswers(_memo_size(store), MEMO_BYTES)
        self._flights: dict[str, _FlightT] = {}  # In-progress misses, by flight key.
        self._lock = threading.Lock()  # Guards starting a flight across threads.
        self._warned: set[str | None] = set()  # Uncacheable parameters already logged.
        after_fork_in_child(self)

    def _after_fork(self) -> None:
        # The leaders of the parent's flights do not exist in the child: waiting for one
        # would never end. Another thread may have held the lock at the fork.
        self._flights = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> CacheStore:
        """The store holding this cache's entries."""
        return self._store

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt around the same store (a memory store refuses to travel).
        options = (self._ttl, self._validator, self._keys.namespace)
        return (_rebuild_cache, (self._inner, self._store, options))

    def _request(self, kwargs: dict[str, Any]) -> _Request | None:
        """Return the keys and kind of a cacheable request, or ``None`` to bypass the cache."""
        request = self._keys.read(kwargs)
        if is_stream_request(request):
            return None
        kind: EntryKind = request_kind(request)
        try:
            key = self._keys.request_key(kind, request)
        except UncacheableRequestError as exc:
            if exc.parameter not in self._warned and len(self._warned) < _WARNED_MAX:
                self._warned.add(exc.parameter)
                _log.warning(
                    "%s; calling %s without the cache (logged once per parameter)",
                    exc,
                    self._label(),
                )
            return None
        return _Request(key, flight_key(key, request), kind)

    @staticmethod
    def _hit(template: Template, info: CallInfo | None) -> Any:
        _served(info)
        return template.copy()

    def _followed(self, flight: Flight, kind: EntryKind, info: CallInfo | None) -> Template | None:
        """A waiter's share of a landed flight: the answer's template, or the leader's error.

        ``None``: the leader left nothing to share (cancelled, or an answer that cannot be
        cached), and the waiter starts over. A waiter made no request: its call record
        says it was served by the cache whether it gets the answer or the error, so the
        attempts of all the calls add up to the requests on the wire.
        """
        if flight.error is not None:
            _served(info)
            flight.reraise()
        return self._shared(flight.entry, kind)

    @staticmethod
    def _leading(info: CallInfo | None) -> None:
        # A retry of a call that waited before may now lead: its record must say so.
        if info is not None and info.cache_hit:
            info.cache_hit = False

    def _prepare(self, kind: EntryKind, response: object) -> tuple[bytes | None, bytes | None]:
        """Encode a fresh answer: the entry to store (if any) and the one for the waiters.

        The entry is not decoded here: most answers are never asked for again, and decoding
        costs more than the rest of a miss. A waiter or the first hit decodes it.
        """
        if not is_answer(response, kind):
            return None, None
        try:
            entry = encode_answer(kind, response)
        except (TypeError, ValueError) as exc:
            self._uncacheable(exc)
            return None, None
        validator = self._validator
        if validator is not None and not self._accepts(validator, response):
            return None, entry
        return entry, entry

    def _accepts(self, validator: Callable[[Any], object], response: object) -> bool:
        try:
            verdict = validator(response)
        except Exception as exc:  # The validator decides what is stored, not what is answered.
            _log.warning(
                "the validator raised %s on an answer of %s; the answer is returned but not stored",
                type(exc).__name__,
                self._label(),
            )
            return False
        if not verdict:
            _log.debug("the validator rejected an answer of %s; not stored", self._label())
        return bool(verdict)

    def _shared(self, entry: bytes | None, kind: EntryKind) -> Template | None:
        """The template of a leader's answer for its waiters; ``None``: they start over."""
        if entry is None:
            return None
        try:
            return self._answers.get(entry, kind)
        except CorruptEntryError as exc:  # It encoded, but does not rebuild into an answer.
            self._uncacheable(exc)
            return None

    def _uncacheable(self, exc: Exception) -> None:
        _log.warning("an answer of %s cannot be cached (%r)", self._label(), exc)

    def _corrupt(self, key: str, exc: Exception) -> None:
        _log.warning(
            "corrupt cache entry %s of %s treated as a miss (%s); the next answer replaces it",
            key,
            self._label(),
            exc,
        )

    def _store_failed(self, operation: str, exc: Exception) -> None:
        if operation.endswith("set"):
            consequence = f"the answer of {self._label()} is not stored"
        else:
            consequence = f"calling {self._label()} without the cache"
        _log.warning(
            "cache store %s failed on %s (%s: %s); %s",
            type(self._store).__name__,
            operation,
            type(exc).__name__,
            exc,
            consequence,
        )

    def _label(self) -> str:
        return repr(self.model) if self.model is not None else type(self._inner).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r}, store={self._store!r}, ttl={self._ttl!r})"


class AsyncCache(_Cache[AsyncFlight]):
    """An async callable answered from a cache; made by :func:`with_cache`."""

    __slots__ = ()

    async def __call__(self, **kwargs: Any) -> Any:
        """Answer from the cache, join an identical call in progress, or call the model."""
        info = current_call()
        request = self._request(kwargs)
        if request is None:
            return await self._call(**kwargs)
        key, flights, kind = request.key, request.flight, request.kind
        while True:
            flight = self._flights.get(flights)
            if flight is None:
                template = await self._lookup(key, kind)
                if template is not None:
                    return self._hit(template, info)
                flight = self._flights.get(flights)  # One may have started during the lookup.
                if flight is None:
                    return await self._lead(request, kwargs, info, register=True)
            if flight.loop is not asyncio.get_running_loop():
                # Another event loop's call cannot be awaited from here: go alone.
                return await self._lead(request, kwargs, info, register=False)
            await flight.wait()
            template = self._followed(flight, kind, info)
            if template is not None:
                return self._hit(template, info)
            # The leader was cancelled or its answer is not cacheable: try again.

    async def _lookup(self, key: str, kind: EntryKind) -> Template | None:
        try:
            data = await self._store.aget(key)
            return None if data is None else self._answers.get(data, kind)
        except CorruptEntryError as exc:
            self._corrupt(key, exc)
        except Exception as exc:  # A store failure must never fail the call.
            self._store_failed("aget", exc)
        return None

    async def _lead(
        self,
        request: _Request,
        kwargs: dict[str, Any],
        info: CallInfo | None,
        *,
        register: bool,
    ) -> Any:
        key, kind = request.key, request.kind
        flight = AsyncFlight(asyncio.get_running_loop())
        flights = self._flights  # The table of this process (a fork makes a new one).
        if register:
            flights[request.flight] = flight
        self._leading(info)
        try:
            try:
                response = await self._call(**kwargs)
                entry, flight.entry = self._prepare(kind, response)
            except Exception as exc:
                flight.fail(exc)
                raise
            flight.land()  # Waiters take their copies now, while the entry is written.
            if entry is not None:
                try:
                    await self._store.aset(key, entry, self._ttl)
                except Exception as exc:  # A store failure must never fail the call.
                    self._store_failed("aset", exc)
            return response
        finally:
            if register and flights.get(request.flight) is flight:
                del flights[request.flight]
            flight.land()


class SyncCache(_Cache[SyncFlight]):
    """A synchronous callable answered from a cache; made by :func:`with_cache`."""

    __slots__ = ()

    def __call__(self, **kwargs: Any) -> Any:
        """Answer from the cache, join an identical call in progress, or call the model."""
        info = current_call()
        request = self._request(kwargs)
        if request is None:
            return self._call(**kwargs)
        key, flights, kind = request.key, request.flight, request.kind
        while True:
            flight = self._flights.get(flights)
            if flight is None:
                template = self._lookup(key, kind)
                if template is not None:
                    return self._hit(template, info)
                with self._lock:
                    flight = self._flights.get(flights)
                    if flight is None:
                        flight = self._flights[flights] = SyncFlight()
                        leading = True
                    else:
                        leading = False
                if leading:
                    return self._lead(request, kwargs, flight, info)
            flight.wait()
            template = self._followed(flight, kind, info)
            if template is not None:
                return self._hit(template, info)
            # The leader was interrupted or its answer is not cacheable: try again.

    def _lookup(self, key: str, kind: EntryKind) -> Template | None:
        try:
            data = self._store.get(key)
            return None if data is None else self._answers.get(data, kind)
        except CorruptEntryError as exc:
            self._corrupt(key, exc)
        except Exception as exc:  # A store failure must never fail the call.
            self._store_failed("get", exc)
        return None

    def _lead(
        self,
        request: _Request,
        kwargs: dict[str, Any],
        flight: SyncFlight,
        info: CallInfo | None,
    ) -> Any:
        key, kind = request.key, request.kind
        flights = self._flights  # The table of this process (a fork makes a new one).
        self._leading(info)
        try:
            try:
                response = self._call(**kwargs)
                entry, flight.entry = self._prepare(kind, response)
            except Exception as exc:
                flight.fail(exc)
                raise
            flight.land()  # Waiters take their copies now, while the entry is written.
            if entry is not None:
                try:
                    self._store.set(key, entry, self._ttl)
                except Exception as exc:  # A store failure must never fail the call.
                    self._store_failed("set", exc)
            return response
        finally:
            with self._lock:
                if flights.get(request.flight) is flight:
                    del flights[request.flight]
            flight.land()


@overload
def with_cache(
    fn: _CompletionFn,
    store: CacheStore | None = None,
    *,
    ttl: float | None = None,
    validator: Callable[[ModelResponse], bool] | None = None,
    namespace: str | None = None,
) -> _CompletionFn: ...
@overload
def with_cache(
    fn: _EmbeddingFn,
    store: CacheStore | None = None,
    *,
    ttl: float | None = None,
    validator: Callable[[EmbeddingResponse], bool] | None = None,
    namespace: str | None = None,
) -> _EmbeddingFn: ...
def with_cache(
    fn: ModelCallable,
    store: CacheStore | None = None,
    *,
    ttl: float | None = None,
    validator: Callable[[ModelResponse], bool] | Callable[[EmbeddingResponse], bool] | None = None,
    namespace: str | None = None,
) -> ModelCallable:
    """Answer repeated requests of ``fn`` from a cache instead of calling the model again.

    Args:
        fn: Any of the four callable kinds; the result is of the same kind.
        store: Where entries live; a new :class:`~fixedmodel.stores.MemoryCacheStore`
            (1024 entries, LRU) when omitted. Share one store between callables to share
            entries (keys include the model, so different models never collide).
        ttl: Seconds an entry stays valid; ``None`` keeps it until the store evicts it.
        validator: Called with each fresh answer; a falsy result, or an exception, keeps
            that answer out of the store (the caller, and every identical call waiting for
            it, still gets it; an exception is logged). E.g. reject
            ``finish_reason="length"``.
        namespace: A label keyed with the model: different namespaces never share entries.
            Required when ``fn`` has no ``model`` attribute (a hand-written fake), since the
            key must name what answers.

    Returns:
        A callable of the same kind as ``fn`` that consults the cache first.

    Raises:
        TypeError: ``fn`` is not callable, ``store`` is not a store instance or cannot
            serve ``fn``'s kind (e.g. a ``RedisCacheStore`` given only ``async_client=``
            for a sync ``fn``; the message names the missing client), ``ttl`` is not a
            number, ``validator`` is not callable, or neither ``fn.model`` nor
            ``namespace`` names the model.
        ValueError: ``ttl`` is not a positive finite number, or ``namespace`` is empty.
    """
    check_callable(fn, "with_cache")
    asynchronous = is_async_callable(fn)
    chosen = _check_store(store, asynchronous=asynchronous)
    _check_ttl(ttl)
    if validator is not None and not callable(validator):
        msg = f"with_cache() validator must be callable or None, got {type(validator).__name__}"
        raise TypeError(msg)
    _check_namespace(fn, namespace)
    kind = AsyncCache if asynchronous else SyncCache
    return kind(fn, chosen, ttl, validator, namespace)


def _memo_size(store: CacheStore) -> int:
    # Never keep more decoded answers than the store keeps entries.
    bound: object = getattr(store, "max_entries", None)
    if isinstance(bound, int) and not isinstance(bound, bool) and bound > 0:
        return min(MEMO_ENTRIES, bound)
    return MEMO_ENTRIES


def _check_store(store: object, *, asynchronous: bool) -> CacheStore:
    if store is None:
        return MemoryCacheStore()
    if isinstance(store, type):
        msg = f"with_cache() needs a store instance, got the class {store.__name__}; call it"
        raise TypeError(msg)
    if not isinstance(store, CacheStore):
        msg = (
            f"with_cache() store must implement CacheStore (get, set, aget, aset), got "
            f"{type(store).__name__}; use e.g. MemoryCacheStore() or DiskCacheStore(path)"
        )
        raise TypeError(msg)
    _check_store_kind(store, asynchronous=asynchronous)
    return store


def _check_store_kind(store: CacheStore, *, asynchronous: bool) -> None:
    """Refuse at wrap time a store whose methods for ``fn``'s kind cannot work."""
    name = type(store).__name__
    methods = ("aget", "aset") if asynchronous else ("get", "set")
    for method in methods:
        coroutine = inspect.iscoroutinefunction(getattr(store, method))
        if coroutine != asynchronous:
            want = "a coroutine function (async def)" if asynchronous else "a plain function"
            kind = "an async" if asynchronous else "a sync"
            msg = f"with_cache() store {name}.{method} must be {want} to serve {kind} callable"
            raise TypeError(msg)
    check = getattr(store, "check_for", None)
    if callable(check):
        check(asynchronous=asynchronous)


def _check_ttl(ttl: object) -> None:
    if ttl is None:
        return
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        msg = f"with_cache() ttl must be seconds as a number or None, got {type(ttl).__name__}"
        raise TypeError(msg)
    if not (ttl > 0 and math.isfinite(ttl)):
        msg = f"with_cache() ttl must be a positive, finite number of seconds, got {ttl!r}"
        raise ValueError(msg)


def _check_namespace(fn: object, namespace: object) -> None:
    if namespace is not None:
        if not isinstance(namespace, str):
            msg = f"with_cache() namespace must be a str, got {type(namespace).__name__}"
            raise TypeError(msg)
        if not namespace.strip():
            raise ValueError("with_cache() namespace must not be empty")
        return
    if not isinstance(getattr(fn, "model", None), str):
        msg = (
            f"with_cache() cannot tell which model {type(fn).__name__} calls (it has no "
            "'model' attribute): pass namespace='...' to name it in the cache keys"
        )
        raise TypeError(msg)


def _rebuild_cache(
    inner: ModelCallable,
    store: CacheStore,
    options: tuple[float | None, Callable[[Any], bool] | None, str | None],
) -> ModelCallable:
    """Unpickle a cached callable: wrap the same callable and store again."""
    ttl, validator, namespace = options
    return with_cache(inner, store, ttl=ttl, validator=validator, namespace=namespace)
