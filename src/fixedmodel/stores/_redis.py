"""What the Redis stores share: the optional import, short-timeout clients, Lua, health logs.

redis-py is the optional extra ``fixedmodel[redis]``; it is imported when a Redis store is
created, never by ``import fixedmodel``.

Clients built from a URL give up quickly, because a store must never hold a model call for
long: ``socket_timeout`` and ``socket_connect_timeout`` are the store's ``timeout``, and a
failed command is retried once, at once, only when the connection itself broke (after a
Redis restart every pooled connection is dead, and the retry reconnects); a timeout is never
retried. redis-py's own default (ten retries with backoff, 5 s timeouts) could hold a call
for many seconds.

Async methods of a store built from a URL run the sync client on a small thread pool owned by
the store. A ``redis.asyncio`` client is tied to the event loop that first used it, while a
store is shared by every loop of the process (``asyncio.run`` called again makes a new one);
the rate limiter asks the store from one caller at a time, and a cache lookup is one short
command, so the thread hop costs nothing the caller can notice. A ``redis.asyncio`` client
passed as ``async_client`` is used directly; its owner keeps it to one loop.

While Redis stalls (a frozen server still accepts connections but answers nothing), every
operation holds a thread for its whole socket timeout, and with more async callers than
threads the others would queue behind them: 200 calls at concurrency 64 once took 6 s with a
0.25 s timeout. So an async caller waits for its operation at most the store's ``timeout``
(for a caller's ``client=``, its ``socket_timeout``), counted from the call, queueing
included, or, while Redis keeps answering the callers ahead of it, until Redis has answered
nothing for ``timeout``; once started, it has ``timeout`` from its start (a dead connection
among live ones, tried again by redis-py, is a stall however Redis answers the others): past
it the operation fails like a socket timeout (``redis.exceptions.TimeoutError``, handled by
the store's ``on_error``), and if it has not started it never will. A stall thus delays a
call by at most ``timeout`` after Redis last answered (or after its operation started), at
any concurrency and for every store built on this module, while a burst of
callers on a healthy Redis (1,000 budget reservations at once once failed 974 of them, and
the first false timeout made the store rest) waits its turn instead of failing.

Callers that ask one after another would still add up their timeouts: the rate limiter's
line asks Redis for one caller at a time, and a load balancer asks about one deployment
after another (64 callers in line once waited 16 s behind a frozen server with a 0.25 s
timeout). So after an operation times out, the store does not ask Redis again for
``timeout`` seconds: the operations in that time fail at once as timed out, and follow
``on_error`` like it. A refused connection (Redis down, not frozen) fails at once anyway and
starts no such rest, so a restarted Redis is seen on the next operation; a stalled one that
answers again is seen at most ``timeout`` after the last timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fixedmodel._closing import Closing
from fixedmodel._pickling import url_from_environment
from fixedmodel.stores._cache_store import after_fork_in_child

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

__all__ = [
    "DEFAULT_TIMEOUT",
    "LOGGER",
    "Command",
    "Flow",
    "Health",
    "LuaScript",
    "RedisClients",
    "check_namespace",
    "redact_url",
    "redis_errors",
    "require_redis",
]

LOGGER = logging.getLogger("fixedmodel.redis")

DEFAULT_TIMEOUT = 0.25
"""Seconds a store waits for Redis (connect, then each reply) before it gives up."""

_WARN_EVERY = 30.0  # While Redis stays unreachable, repeat the warning at most this often.
_THREADS = 8  # Workers that run the sync client for the async methods.
_T = TypeVar("_T")


def require_redis() -> None:
    """Import redis-py, or say how to install it.

    Raises:
        ImportError: redis-py is missing; the message names the extra to install.
    """
    try:
        import redis  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError as exc:
        msg = (
            "the Redis stores need the optional 'redis' package; "
            "install it with: pip install 'fixedmodel[redis]'"
        )
        raise ImportError(msg, name="redis") from exc


def redis_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "Redis did not do it": down, slow, refusing or broken."""
    from redis.exceptions import RedisError

    # OSError: a socket failure redis-py did not wrap; asyncio's timeout differs before 3.11.
    return (RedisError, OSError, asyncio.TimeoutError)


def redact_url(url: str) -> str:
    """Return ``url`` with any password, in the user info or the query, replaced by ``***``.

    Query keys that name a password (``password``, redis-py's ``ssl_password`` for the TLS
    key, any other ``*password*``) are hidden, whatever their case.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user = parts.username or ""
            host = netloc.rpartition("@")[2]
            netloc = f"{user}:***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            hidden = [(k, "***" if "password" in k.lower() else v) for k, v in pairs]
            query = urlencode(hidden, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable Redis URL>"


def _describe_client(client: object) -> str:
    # Only the address: a client's connection settings may hold a password.
    pool = getattr(client, "connection_pool", None)
    settings: object = getattr(pool, "connection_kwargs", None)
    if isinstance(settings, dict):
        known: dict[str, object] = settings  # pyright: ignore[reportUnknownVariableType]
        if "path" in known:
            return f"unix://{known['path']}"
        return f"{known.get('host', '?')}:{known.get('port', '?')}/{known.get('db', 0)}"
    return type(client).__name__


def check_namespace(namespace: object, *, example: str, empty: bool = False) -> str:
    """Return a valid key prefix, or raise the error that says what a prefix must be."""
    if not isinstance(namespace, str):
        kind = type(namespace).__name__
        msg = f"namespace must be a str key prefix such as {example!r}, got {kind}"
        raise TypeError(msg)
    if not (namespace or empty):
        msg = f"namespace must be a non-empty key prefix such as {example!r}"
        raise ValueError(msg)
    return namespace


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        msg = f"timeout must be a number of seconds, got {type(timeout).__name__}"
        raise TypeError(msg)
    if not (math.isfinite(timeout) and timeout > 0):
        msg = f"timeout must be a positive, finite number of seconds, got {timeout!r}"
        raise ValueError(msg)
    return float(timeout)


def _check_url(owner: str, url: object) -> None:
    if not isinstance(url, str):
        kind = type(url).__name__
        msg = f"{owner} url must be a str such as 'redis://localhost:6379/0', got {kind}"
        raise TypeError(msg)


def _client_from_url(url: str, timeout: float) -> Redis:
    url = url_from_environment(url)  # "env:NAME": read here, pickled as the name
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.retry import Retry

    # One immediate retry, on a broken connection only (see the module docstring).
    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    # redis-py leaves the keywords of from_url untyped; these are Connection's parameters.
    return Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry
    )


def _socket_timeout(client: Redis | None) -> float | None:
    """The reply timeout a caller's client was built with, or ``None`` (it waits forever)."""
    pool: object = getattr(client, "connection_pool", None)
    settings: object = getattr(pool, "connection_kwargs", None)
    value: object = None
    if isinstance(settings, dict):
        options = cast("dict[str, object]", settings)
        value = options.get("socket_timeout")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


class RedisClients:
    """The clients of one store: built from a URL, or the caller's own.

    Args:
        owner: Name of the store class, for error messages.
        url: ``redis://``, ``rediss://`` or ``unix://`` URL; the store builds and owns a
            client with ``timeout``.
        client: A ``redis.Redis`` client of the caller's (its timeouts apply).
        async_client: A ``redis.asyncio.Redis`` client of the caller's, for async methods.
        timeout: Seconds for connect and for each reply, for a client built from ``url``.

    Raises:
        TypeError: Neither ``url`` nor a client was given, or both were.
        ValueError: ``url`` is not a Redis URL, or ``timeout`` is out of range.
    """

    __slots__ = (
        "__weakref__",
        "_answered_at",
        "_async",
        "_async_pid",
        "_executor",
        "_executor_pid",
        "_lock",
        "_owned",
        "_sync",
        "_url",
        "deadline",
        "endpoint",
        "timeout",
    )

    def __init__(
        self,
        owner: str,
        url: str | None,
        client: Redis | None,
        async_client: AsyncRedis | None,
        timeout: float,
    ) -> None:
        seconds = _check_timeout(timeout)
        if url is None and client is None and async_client is None:
            msg = f"{owner} needs a Redis URL, e.g. {owner}('redis://localhost:6379/0')"
            raise TypeError(msg)
        if url is not None and (client is not None or async_client is not None):
            msg = f"{owner} takes a URL or clients (client=, async_client=), not both"
            raise TypeError(msg)
        self._lock = threading.Lock()
        after_fork_in_child(self)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0
        self._answered_at = 0.0  # When a pool thread last got an answer from Redis.
        self._async = async_client
        self._async_pid = os.getpid()  # Its connections belong to this process.
        # Kept to rebuild the store in another process (never shown: it may hold a password).
        self._url = url
        self.timeout = seconds
        if url is not None:
            _check_url(owner, url)
            self.endpoint = redact_url(url)
            self._sync: Redis | None = _client_from_url(url, seconds)
            self._owned = True
            self.deadline: float | None = seconds
        else:
            self._sync = client
            self._owned = False
            self.endpoint = _describe_client(client if client is not None else async_client)
            self.deadline = _socket_timeout(client)

    def _after_fork(self) -> None:
        # A lock another thread held at the fork would never be released in the child.
        self._lock = threading.Lock()

    def url_for_pickling(self, owner: str) -> str:
        """The URL the store was built from, to build it again in another process.

        Raises:
            TypeError: The store was given client objects, which cannot leave the process.
        """
        if self._url is None:
            msg = (
                f"this {owner} was given client objects, which cannot be sent to another "
                f"process (pickled); build it from a URL, {owner}('redis://host:6379/0'), "
                "to share it with worker processes"
            )
            raise TypeError(msg)
        return self._url

    @property
    def has_sync(self) -> bool:
        """Whether the store has a client for sync methods (a URL, or ``client=``)."""
        return self._sync is not None

    def sync(self) -> Redis:
        """The client for sync methods.

        Raises:
            TypeError: The store was given only an async client.
        """
        if self._sync is None:
            msg = (
                "this Redis store was given only async_client=, so it has no sync methods; "
                "pass client= as well, or a URL"
            )
            raise TypeError(msg)
        return self._sync

    async def run(
        self,
        with_sync: Callable[[Redis], _T],
        with_async: Callable[[AsyncRedis], Awaitable[_T]],
    ) -> _T:
        """Run one operation for an async method, natively or on the store's threads.

        Raises:
            RuntimeError: This process is a fork of the one that made the store, and the
                store has only an async client (whose connections are the parent's).
        """
        if self._async is not None:
            if self._async_pid == os.getpid():
                return await with_async(self._async)
            if self._sync is None:
                msg = (
                    "this Redis store's async_client= was made in process "
                    f"{self._async_pid}, and this process ({os.getpid()}) is a fork of it: the "
                    "client's connections belong to the parent. Make the store in the child, "
                    "or give it client= too (a sync client reconnects after a fork)"
                )
                raise RuntimeError(msg)
        client = self.sync()
        loop = asyncio.get_running_loop()
        started: list[float] = []  # When a pool thread took the operation up.
        pending = loop.run_in_executor(self._pool(), self._answered, with_sync, client, started)
        deadline = self.deadline
        if deadline is None:
            return await pending
        wait = deadline
        try:
            while True:
                try:
                    return await asyncio.wait_for(asyncio.shield(pending), wait)
                except asyncio.TimeoutError:  # TimeoutError from 3.11; its own class before
                    # Queued behind callers that Redis is answering (a burst, not a stall):
                    # wait on until Redis has answered nothing for ``deadline`` seconds.
                    # Running: ``deadline`` from its start, however Redis answers others (a
                    # dead connection among live ones, retried by redis-py, is still a stall).
                    since = started[0] if started else self._answered_at
                    wait = since + deadline - time.monotonic()
                    if wait <= 0:
                        break
        finally:
            pending.cancel()  # Not started: never run. Done or running: no effect.
        from redis.exceptions import TimeoutError as RedisTimeoutError

        msg = f"no answer from Redis within {deadline:g} s (queued or running)"
        raise RedisTimeoutError(msg)

    def _answered(
        self, with_sync: Callable[[Redis], _T], client: Redis, started: list[float]
    ) -> _T:
        """Run ``with_sync`` on a pool thread, noting in ``started`` when it starts; note
        when Redis last answered one."""
        started.append(time.monotonic())
        reply = with_sync(client)
        self._answered_at = time.monotonic()
        return reply

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            # A forked worker inherits the pool object but not its threads: start afresh.
            if self._executor is None or self._executor_pid != os.getpid():
                self._executor = ThreadPoolExecutor(
                    max_workers=_THREADS, thread_name_prefix="fixedmodel-redis"
                )
                self._executor_pid = os.getpid()
            return self._executor

    def close(self) -> None:
        """Stop the worker threads and close a client built from the URL."""
        with self._lock:
            executor, self._executor = self._executor, None
            inherited = self._executor_pid != os.getpid()
        # A forked child holds the parent's pool without its threads, and perhaps with its
        # shutdown lock held by a parent thread at the fork: shutting it down could hang.
        if executor is not None and not inherited:
            executor.shutdown(wait=True)
        if self._owned and self._sync is not None:
            self._sync.close()


@dataclass(frozen=True)
class Command:
    """One Redis operation, with either kind of client: what a store's flow asks to run."""

    with_sync: Callable[[Redis], object]
    with_async: Callable[[AsyncRedis], Awaitable[object]]


Flow: TypeAlias = Generator[Command, object, _T]
"""A store operation: it yields the one command it needs and gets the reply (or the error
raised in its place), then returns its result. :meth:`RedisStore._do` and
:meth:`RedisStore._ado` run it for the sync and the async methods: all else is said once."""


def _finish(flow: Flow[_T], reply: object, error: BaseException | None) -> _T:
    """Give ``flow`` its command's reply, or raise ``error`` in it; return what it returns."""
    try:
        if error is None:
            flow.send(reply)
        else:
            flow.throw(error)
    except StopIteration as stop:
        return cast("_T", stop.value)
    msg = "a store's flow asked Redis for a second command"
    raise RuntimeError(msg)


class LuaScript:
    """A Lua script run by its SHA1, loaded again when Redis answers NOSCRIPT.

    Redis forgets loaded scripts when it restarts (or on ``SCRIPT FLUSH``); the first call
    afterwards loads the script again and retries, so workers need no restart.
    """

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def call(self, keys: Sequence[str], args: Sequence[str | int]) -> Command:
        """The command that runs the script with either kind of client."""
        return Command(
            lambda client: self.run(client, keys, args),
            lambda client: self.arun(client, keys, args),
        )

    def run(self, client: Redis, keys: Sequence[str], args: Sequence[str | int]) -> object:
        """Run the script with the sync client; returns its reply."""
        from redis.exceptions import NoScriptError

        try:
            reply: object = client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            reply = client.evalsha(self.sha, len(keys), *keys, *args)
        return reply

    async def arun(
        self, client: AsyncRedis, keys: Sequence[str], args: Sequence[str | int]
    ) -> object:
        """Run the script with an async client; returns its reply."""
        from redis.exceptions import NoScriptError

        try:
            reply: object = await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            reply = await client.evalsha(self.sha, len(keys), *keys, *args)
        return reply


class Health:
    """Whether a store's Redis answers, logged on each change and not once per call.

    The first failure logs a WARNING; while Redis stays unreachable, one more WARNING (with
    the count of failed operations) at most every 30 s, DEBUG otherwise; the first success
    afterwards logs INFO. Messages name the redacted endpoint and the error class, never
    keys, values or credentials.
    """

    __slots__ = (
        "__weakref__",
        "_down_since",
        "_endpoint",
        "_failures",
        "_lock",
        "_next_warning",
        "_rest",
        "_resting_until",
        "_store",
    )

    def __init__(self, store: str, endpoint: str, rest: float = 0.0) -> None:
        self._store = store
        self._endpoint = endpoint
        self._rest = rest  # Seconds not to ask Redis after a timeout (see the module doc).
        self._resting_until = 0.0
        self._lock = threading.Lock()
        after_fork_in_child(self)
        self._down_since: float | None = None
        self._next_warning = 0.0
        self._failures = 0

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # See RedisClients._after_fork.
        self._resting_until = 0.0  # The child asks Redis on connections of its own.

    def failed(self, operation: str, exc: BaseException, consequence: str) -> None:
        """Record that ``operation`` failed with ``exc`` and what the store did instead."""
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            if self._down_since is None:
                self._down_since = now
            warn = now >= self._next_warning
            if warn:
                self._next_warning = now + _WARN_EVERY
            failures = self._failures
        LOGGER.log(
            logging.WARNING if warn else logging.DEBUG,
            "%s: Redis at %s failed on %s (%s: %s); %s [%d failed operations so far]",
            self._store,
            self._endpoint,
            operation,
            type(exc).__name__,
            exc,
            consequence,
            failures,
        )

    def timed_out(self, exc: BaseException) -> None:
        """Start a rest if ``exc`` is a timeout: Redis is not asked for ``rest`` seconds."""
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if isinstance(exc, (RedisTimeoutError, asyncio.TimeoutError)):
            self._resting_until = time.monotonic() + self._rest

    def resting(self) -> BaseException | None:
        """The failure to answer with instead of asking Redis, while resting; else None."""
        if not self._resting_until:  # The usual case, read without the lock.
            return None
        left = self._resting_until - time.monotonic()
        if left <= 0:
            return None
        from redis.exceptions import TimeoutError as RedisTimeoutError

        msg = (
            f"Redis timed out moments ago; not asked again for {left:.3f} s "
            f"(a rest as long as the store's timeout, {self._rest:g} s)"
        )
        return RedisTimeoutError(msg)

    def succeeded(self) -> None:
        """Record a success; logs the recovery if Redis was failing."""
        if not self._failures:  # The usual case, read without the lock.
            return
        with self._lock:
            since, self._down_since = self._down_since, None
            failures, self._failures = self._failures, 0
            self._next_warning = 0.0
        if since is not None:
            LOGGER.info(
                "%s: Redis at %s answers again after %.1f s (%d failed operations)",
                self._store,
                self._endpoint,
                time.monotonic() - since,
                failures,
            )


def rebuild_store(kind: Callable[..., _T], url: str, options: dict[str, Any]) -> _T:
    """Unpickle a Redis store: build it again from its URL and options."""
    return kind(url, **options)


OnError = Literal["open", "closed"]
"""What a store does when Redis cannot decide: let the call through, or fail it."""


def check_on_error(on_error: object) -> OnError:
    """Return ``on_error`` as an :data:`OnError`.

    Raises:
        ValueError: It is neither ``"open"`` nor ``"closed"``.
    """
    if on_error == "open":
        return "open"
    if on_error == "closed":
        return "closed"
    msg = f"on_error must be 'open' (let calls through) or 'closed' (fail them), got {on_error!r}"
    raise ValueError(msg)


class RedisStore(Closing):
    """What every Redis store shares (cache, limiter, cooldowns, budget).

    The clients, the health reporting and the namespace (both renew their locks in a forked
    child themselves, see ``_after_fork``); rebuilding in another process from the
    URL (pickling); closing, ``with``, and a ``repr`` without the password; running each
    operation, written once as a :data:`Flow`, for the sync and the async methods. Each
    store's own ``__init__`` gives its defaults and calls :meth:`_open`.
    """

    __slots__ = ("__weakref__", "_clients", "_errors", "_health", "_namespace")

    def _open(
        self,
        url: str | None,
        client: Redis | None,
        async_client: AsyncRedis | None,
        namespace: str,
        timeout: float,
        *,
        example: str,
        empty: bool = False,
    ) -> None:
        """Check the namespace (``example`` shows a good one), then connect."""
        owner = type(self).__name__
        self._namespace = check_namespace(namespace, example=example, empty=empty)
        require_redis()
        self._clients = RedisClients(owner, url, client, async_client, timeout)
        self._errors = redis_errors()
        # The rest is as long as a call's wait for Redis (for a caller's client, its own
        # socket_timeout; none without one).
        self._health = Health(owner, self._clients.endpoint, self._clients.deadline or 0.0)

    def _do(self, flow: Flow[_T], *, rest: bool = True) -> _T:
        """Run ``flow`` for a sync method: its command on the sync client.

        ``rest=False``: ask Redis even while the store rests (a write that must not be
        skipped, such as a budget's settlement).
        """
        command = next(flow)
        resting = self._health.resting() if rest else None
        if resting is not None:  # Redis just timed out: not asked (see the module doc).
            return _finish(flow, None, resting)
        try:
            reply = command.with_sync(self._clients.sync())
        except BaseException as exc:  # The flow decides what a failure means.
            self._health.timed_out(exc)
            return _finish(flow, None, exc)
        return _finish(flow, reply, None)

    async def _ado(self, flow: Flow[_T], *, rest: bool = True) -> _T:
        """Run ``flow`` for an async method (see :meth:`RedisClients.run`, and :meth:`_do`
        for ``rest``)."""
        command = next(flow)
        resting = self._health.resting() if rest else None
        if resting is not None:
            return _finish(flow, None, resting)
        try:
            reply = await self._clients.run(command.with_sync, command.with_async)
        except BaseException as exc:
            self._health.timed_out(exc)
            return _finish(flow, None, exc)
        return _finish(flow, reply, None)

    @property
    def namespace(self) -> str:
        """Prefix of this store's keys."""
        return self._namespace

    def _options(self) -> dict[str, Any]:
        """The keywords that build this store again from its URL."""
        return {"namespace": self._namespace, "timeout": self._clients.timeout}

    def __reduce__(self) -> tuple[Any, ...]:
        # Another process gets its own connections to the same Redis (only from a URL).
        url = self._clients.url_for_pickling(type(self).__name__)
        return (rebuild_store, (type(self), url, self._options()))

    def close(self) -> None:
        """Release the worker threads and the client built from the URL (not yours)."""
        self._clients.close()

    def __repr__(self) -> str:
        options = self._options()
        del options["timeout"]  # Not what tells two stores apart.
        shown = "".join(f", {name}={value!r}" for name, value in options.items())
        return f"{type(self).__name__}({self._clients.endpoint!r}{shown})"


class PolicyStore(RedisStore):
    """A Redis store with a failure policy (limiter, cooldowns, budget): ``on_error``.

    Its ``__init__`` sets ``_on_error`` with :func:`check_on_error` before :meth:`_open`.
    """

    __slots__ = ("_on_error",)
    _on_error: OnError

    @property
    def on_error(self) -> OnError:
        """What happens to a call when Redis cannot decide on it."""
        return self._on_error

    def _options(self) -> dict[str, Any]:
        return {**super()._options(), "on_error": self._on_error}
