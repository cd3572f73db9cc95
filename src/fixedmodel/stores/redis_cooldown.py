"""Cooldowns in Redis: every process that balances over the same deployments skips the ones
any of them saw failing.

:class:`RedisCooldownStore` applies the circuit rule of
:mod:`fixedmodel.stores._cooldown_store` in one Lua script per operation (atomic across
clients, O(1), timed by the Redis server's clock).

What is stored, per deployment: one hash ``<namespace><key>`` (default namespace
``fixedmodel:cd:``) with the fields ``f`` (consecutive failures), ``l`` (last failure),
``o`` (open until) and ``p`` (probe out until), times in server microseconds. Nothing else:
no request, no credential. A healthy deployment has no key at all, so the usual ``enter`` is
one script call that reads nothing; the key expires once nothing in it matters any more.

When Redis cannot be reached the store follows ``on_error``, as the limiter's store does:
``"open"`` (the default) lets the call go to the deployment and logs a WARNING; ``"closed"``
raises :class:`~fixedmodel.stores.redis_limiter.RedisUnavailableError`. Reports of how a
call went are best effort under both (logged, never raised).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fixedmodel.stores._cooldown_store import ADMITTED, Entry
from fixedmodel.stores._redis import (
    DEFAULT_TIMEOUT,
    LuaScript,
    OnError,
    PolicyStore,
)
from fixedmodel.stores.redis_limiter import (
    RedisUnavailableError,
)

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from fixedmodel.routing.load_balancing import CooldownPolicy

__all__ = ["RedisCooldownStore"]

_SCRIPT = LuaScript(
    """
local key, op = KEYS[1], ARGV[1]
local MARGIN = 1000000
if op == 'enter' and redis.call('EXISTS', key) == 0 then return {1, 0, 0, 0} end
if op == 'succeeded' then redis.call('DEL', key) return 0 end
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('HMGET', key, 'f', 'l', 'o', 'p')
local f, l = tonumber(s[1]) or 0, tonumber(s[2]) or 0
local o, p = tonumber(s[3]) or 0, tonumber(s[4]) or 0
local function fmt(n) return string.format('%.0f', n) end
local function save(keep)
  redis.call('HSET', key, 'f', fmt(f), 'l', fmt(l), 'o', fmt(o), 'p', fmt(p))
  redis.call('PEXPIRE', key, math.max(1, math.ceil(keep / 1000)))
end
if op == 'released' then
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'p', '0') end
  return 0
end
if op == 'enter' then
  local probe_timeout = tonumber(ARGV[2])
  if now < o then return {0, 0, 0, o - now} end
  if o > 0 then
    if now < p then return {0, 0, 0, p - now} end
    p = now + probe_timeout
    -- Half-open lasts until the probe reports; keep the state a long while.
    save(probe_timeout + tonumber(ARGV[3]) + MARGIN)
    return {1, 1, 0, 0}
  end
  return {1, 0, f, 0}
end
-- op == 'failed'
local threshold, cooldown, window = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local probe, cool_for = ARGV[5] == '1', tonumber(ARGV[6])
local probe_timeout = tonumber(ARGV[7])
local keep = cooldown + probe_timeout + MARGIN
if cool_for >= 0 then
  o, p, f = math.max(o, now + cool_for), 0, 0
  save(o - now + keep)
  return 0
end
if o > 0 then
  if probe and now >= o then
    o, p = now + cooldown, 0
    save(o - now + keep)
  end
  return 0
end
if now - l > window then f = 0 end
f, l = f + 1, now
if f >= threshold then
  o, f = now + cooldown, 0
  save(o - now + keep)
else
  save(window + MARGIN)
end
return 0
"""
)


def _micros(seconds: float) -> int:
    return math.ceil(seconds * 1_000_000)


def _enter_args(policy: CooldownPolicy) -> list[str | int]:
    return ["enter", _micros(policy.probe_timeout), _micros(policy.cooldown)]


def _failed_args(policy: CooldownPolicy, probe: bool, cool_for: float | None) -> list[str | int]:
    return [
        "failed",
        policy.failures,
        _micros(policy.cooldown),
        _micros(policy.failure_window),
        "1" if probe else "0",
        -1 if cool_for is None else _micros(cool_for),
        _micros(policy.probe_timeout),
    ]


def _entry(reply: object) -> Entry:
    if isinstance(reply, list):
        items: list[object] = reply  # pyright: ignore[reportUnknownVariableType]
        numbers = [item for item in items if isinstance(item, int)]
        if len(items) == 4 and len(numbers) == 4:
            granted, probe, failures, retry_in = numbers
            if granted and not probe and not failures:
                return ADMITTED
            return Entry(bool(granted), bool(probe), failures, retry_in / 1e6)
    kind: str = type(reply).__name__  # pyright: ignore[reportUnknownArgumentType]
    msg = f"unexpected reply from the cooldown script: {kind}"
    raise RuntimeError(msg)


class RedisCooldownStore(PolicyStore):
    """Circuit breakers of deployments in Redis, shared by processes and hosts.

    Conforms to ``CooldownStore``. Give every process the same URL and namespace, and
    deployments with the same names (``with_load_balancing`` takes them as a mapping, or
    names them by model and position).

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://...`` or
            ``unix://path``; the store builds its own client with ``timeout``. Shown with
            its password replaced by ``***``.
        client: Instead of ``url``, a ``redis.Redis`` client of yours.
        async_client: A ``redis.asyncio.Redis`` client for the async methods.
        namespace: Prefix of every key.
        on_error: When Redis cannot answer ``enter``: ``"open"`` uses the deployment and
            logs a WARNING; ``"closed"`` raises ``RedisUnavailableError``.
        timeout: Seconds to wait for Redis with a client built from ``url``.

    Raises:
        ImportError: redis-py is missing (``pip install 'fixedmodel[redis]'``).
        TypeError: Neither a URL nor a client was given, or both were.
        ValueError: ``namespace`` is empty, ``on_error`` is unknown or ``timeout`` is out of
            range.
    """

    __slots__ = ()

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        async_client: AsyncRedis | None = None,
        namespace: str = "fixedmodel:cd:",
        on_error: OnError = "open",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._connect(
            url,
            client,
            async_client,
            namespace=namespace,
            example="myapp:cd:",
            on_error=on_error,
            timeout=timeout,
        )

    def enter(self, key: str, policy: CooldownPolicy) -> Entry:
        """Decide whether a call may go to the deployment ``key`` now.

        Raises:
            RedisUnavailableError: Redis did not answer and ``on_error`` is ``"closed"``.
        """
        try:
            reply = _SCRIPT.run(self._clients.sync(), [self._namespace + key], _enter_args(policy))
            entry = _entry(reply)
        except self._errors as exc:
            return self._unavailable(exc)
        self._health.succeeded()
        return entry

    async def aenter(self, key: str, policy: CooldownPolicy) -> Entry:
        """Async :meth:`enter`."""
        keys, args = [self._namespace + key], _enter_args(policy)
        try:
            reply = await self._clients.run(
                lambda client: _SCRIPT.run(client, keys, args),
                lambda client: _SCRIPT.arun(client, keys, args),
            )
            entry = _entry(reply)
        except self._errors as exc:
            return self._unavailable(exc)
        self._health.succeeded()
        return entry

    def _unavailable(self, exc: Exception) -> Entry:
        if self._on_error == "open":
            self._health.failed("enter", exc, "the deployment is used (on_error='open')")
            return ADMITTED
        self._health.failed("enter", exc, "the call is refused (on_error='closed')")
        msg = (
            f"the load balancer could not reach Redis at {self._clients.endpoint} "
            f"({type(exc).__name__}), so the call was not made (on_error='closed'); "
            "use on_error='open' to use deployments while Redis is unreachable"
        )
        raise RedisUnavailableError(msg) from exc

    def _report(self, key: str, args: list[str | int], operation: str) -> None:
        try:
            _SCRIPT.run(self._clients.sync(), [self._namespace + key], args)
        except self._errors as exc:
            self._health.failed(operation, exc, "the cooldown state is not updated")
            return
        self._health.succeeded()

    async def _areport(self, key: str, args: list[str | int], operation: str) -> None:
        keys = [self._namespace + key]
        try:
            await self._clients.run(
                lambda client: _SCRIPT.run(client, keys, args),
                lambda client: _SCRIPT.arun(client, keys, args),
            )
        except self._errors as exc:
            self._health.failed(operation, exc, "the cooldown state is not updated")
            return
        self._health.succeeded()

    def succeeded(self, key: str) -> None:
        """Record that a call to ``key`` succeeded: the circuit closes, failures reset."""
        self._report(key, ["succeeded"], "succeeded")

    async def asucceeded(self, key: str) -> None:
        """Async :meth:`succeeded`."""
        await self._areport(key, ["succeeded"], "succeeded")

    def failed(
        self, key: str, policy: CooldownPolicy, *, probe: bool, cool_for: float | None
    ) -> None:
        """Record a failure of ``key``; ``cool_for`` seconds (a Retry-After) open it at once."""
        self._report(key, _failed_args(policy, probe, cool_for), "failed")

    async def afailed(
        self, key: str, policy: CooldownPolicy, *, probe: bool, cool_for: float | None
    ) -> None:
        """Async :meth:`failed`."""
        await self._areport(key, _failed_args(policy, probe, cool_for), "failed")

    def released(self, key: str) -> None:
        """Give back the probe of ``key`` without a verdict (the call was cancelled)."""
        self._report(key, ["released"], "released")

    async def areleased(self, key: str) -> None:
        """Async :meth:`released`."""
        await self._areport(key, ["released"], "released")
