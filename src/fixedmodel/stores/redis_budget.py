"""Budgets in Redis: one spending cap shared by every process and host that uses it.

:class:`RedisBudgetStore` applies the rule of :mod:`fixedmodel.stores._budget_store` in one
Lua script per operation (atomic across clients, O(1), windows timed by the Redis server's
clock).

What is stored, per budget and window: one hash ``<namespace><key>:<window>`` (default
namespace ``fixedmodel:budget:``) with the fields ``c`` (nano-USD), ``t`` (tokens) and
``r`` (requests). With a period the key expires one period after its window ends; without
one it stays until you delete it (that is the budget's memory).

When Redis cannot be reached the store follows ``on_error``: ``"closed"`` (the default for
budgets: a cap that cannot be checked is not spent) raises
:class:`~fixedmodel.stores.redis_limiter.RedisUnavailableError`; ``"open"`` lets the call
through uncounted and logs a WARNING. Settlements are best effort (logged, never raised).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fixedmodel.stores._budget_store import Caps, Committed, Reservation
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

__all__ = ["RedisBudgetStore"]

_SCRIPT = LuaScript(
    """
local base, op = KEYS[1], ARGV[1]
local period = tonumber(ARGV[2])
-- Scripts that read TIME must be replicated as their effects (the default from Redis 5).
if redis.replicate_commands then redis.replicate_commands() end
local window, resets = 0, -1
if op ~= 'settle' then
  if period > 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    window = math.floor(now / period)
    resets = (window + 1) * period - now
  end
else
  window = tonumber(ARGV[3])
end
local key = base .. ':' .. string.format('%.0f', window)
if op == 'settle' then
  if redis.call('EXISTS', key) == 0 then return 0 end
  local s = redis.call('HMGET', key, 'c', 't')
  local c = math.max((tonumber(s[1]) or 0) + tonumber(ARGV[4]), 0)
  local tk = math.max((tonumber(s[2]) or 0) + tonumber(ARGV[5]), 0)
  redis.call('HSET', key, 'c', string.format('%.0f', c), 't', string.format('%.0f', tk))
  return 0
end
local s = redis.call('HMGET', key, 'c', 't', 'r')
local c, tk, r = tonumber(s[1]) or 0, tonumber(s[2]) or 0, tonumber(s[3]) or 0
if op == 'committed' then return {0, window, c, tk, r, resets} end
local max_c, max_t, max_r = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cost, tokens = tonumber(ARGV[6]), tonumber(ARGV[7])
if (max_c >= 0 and c + cost > max_c) or (max_t >= 0 and tk + tokens > max_t)
    or (max_r >= 0 and r + 1 > max_r) then
  return {0, window, c, tk, r, resets}
end
c, tk, r = c + cost, tk + tokens, r + 1
redis.call('HSET', key, 'c', string.format('%.0f', c), 't', string.format('%.0f', tk), 'r', r)
if period > 0 then redis.call('PEXPIRE', key, math.ceil((resets + period) / 1000)) end
return {1, window, c, tk, r, resets}
"""
)


def _period(caps: Caps) -> int:
    return 0 if caps.period is None else max(1, math.ceil(caps.period * 1_000_000))


def _cap(value: int | None) -> int:
    return -1 if value is None else value


def _reply(reply: object) -> Reservation:
    if isinstance(reply, list):
        items: list[object] = reply  # pyright: ignore[reportUnknownVariableType]
        numbers = [item for item in items if isinstance(item, int)]
        if len(items) == 6 and len(numbers) == 6:
            granted, window, cost, tokens, requests, resets = numbers
            resets_in = None if resets < 0 else resets / 1e6
            return Reservation(bool(granted), window, Committed(cost, tokens, requests, resets_in))
    kind: str = type(reply).__name__  # pyright: ignore[reportUnknownArgumentType]
    msg = f"unexpected reply from the budget script: {kind}"
    raise RuntimeError(msg)


class RedisBudgetStore(PolicyStore):
    """Budget state in Redis, shared by processes and hosts; conforms to ``BudgetStore``.

    Give every process the same URL and namespace, and a :class:`~fixedmodel.Budget` with
    the same caps and key.

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://...`` or
            ``unix://path``; the store builds its own client with ``timeout``. Shown with
            its password replaced by ``***``.
        client: Instead of ``url``, a ``redis.Redis`` client of yours.
        async_client: A ``redis.asyncio.Redis`` client for the async methods.
        namespace: Prefix of every key.
        on_error: When Redis cannot reserve: ``"closed"`` (default) raises
            ``RedisUnavailableError`` and the call is not made; ``"open"`` lets it through
            uncounted and logs a WARNING.
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
        namespace: str = "fixedmodel:budget:",
        on_error: OnError = "closed",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._connect(
            url,
            client,
            async_client,
            namespace=namespace,
            example="myapp:budget:",
            on_error=on_error,
            timeout=timeout,
        )

    def _run(self, key: str, args: list[str | int]) -> object:
        return _SCRIPT.run(self._clients.sync(), [self._namespace + key], args)

    async def _arun(self, key: str, args: list[str | int]) -> object:
        keys = [self._namespace + key]
        return await self._clients.run(
            lambda client: _SCRIPT.run(client, keys, args),
            lambda client: _SCRIPT.arun(client, keys, args),
        )

    @staticmethod
    def _reserve_args(caps: Caps, cost: int, tokens: int) -> list[str | int]:
        return [
            "reserve",
            _period(caps),
            _cap(caps.cost),
            _cap(caps.tokens),
            _cap(caps.requests),
            cost,
            tokens,
        ]

    def reserve(self, key: str, caps: Caps, cost: int, tokens: int) -> Reservation:
        """Add one request of ``cost`` nano-USD and ``tokens`` tokens, if every cap allows.

        Raises:
            RedisUnavailableError: Redis did not answer and ``on_error`` is ``"closed"``.
        """
        try:
            reservation = _reply(self._run(key, self._reserve_args(caps, cost, tokens)))
        except self._errors as exc:
            return self._unavailable(exc)
        self._health.succeeded()
        return reservation

    async def areserve(self, key: str, caps: Caps, cost: int, tokens: int) -> Reservation:
        """Async :meth:`reserve`."""
        try:
            reply = await self._arun(key, self._reserve_args(caps, cost, tokens))
            reservation = _reply(reply)
        except self._errors as exc:
            return self._unavailable(exc)
        self._health.succeeded()
        return reservation

    def _unavailable(self, exc: Exception) -> Reservation:
        if self._on_error == "open":
            self._health.failed("reserve", exc, "the call goes ahead uncounted (on_error='open')")
            return Reservation(True, -1, Committed(0, 0, 0, None))
        self._health.failed("reserve", exc, "the call is refused (on_error='closed')")
        msg = (
            f"the budget could not reach Redis at {self._clients.endpoint} "
            f"({type(exc).__name__}), so the call was not made (on_error='closed'); "
            "use on_error='open' to let calls through uncounted while Redis is unreachable"
        )
        raise RedisUnavailableError(msg) from exc

    def settle(self, key: str, caps: Caps, window: int, cost: int, tokens: int) -> None:
        """Add ``cost`` and ``tokens`` (negative: refund) to ``window``, never below zero."""
        if window < 0 or not (cost or tokens):
            return
        try:
            self._run(key, ["settle", _period(caps), window, cost, tokens])
        except self._errors as exc:
            self._health.failed("settle", exc, "the spending stays at its reservation")
            return
        self._health.succeeded()

    async def asettle(self, key: str, caps: Caps, window: int, cost: int, tokens: int) -> None:
        """Async :meth:`settle`."""
        if window < 0 or not (cost or tokens):
            return
        try:
            await self._arun(key, ["settle", _period(caps), window, cost, tokens])
        except self._errors as exc:
            self._health.failed("settle", exc, "the spending stays at its reservation")
            return
        self._health.succeeded()

    def committed(self, key: str, caps: Caps) -> Committed:
        """The totals of the current window.

        Raises:
            RedisUnavailableError: Redis did not answer.
        """
        try:
            reply = self._run(key, ["committed", _period(caps)])
        except self._errors as exc:
            msg = f"could not read the budget from Redis at {self._clients.endpoint}"
            raise RedisUnavailableError(msg) from exc
        return _reply(reply).committed

    async def acommitted(self, key: str, caps: Caps) -> Committed:
        """Async :meth:`committed`."""
        try:
            reply = await self._arun(key, ["committed", _period(caps)])
        except self._errors as exc:
            msg = f"could not read the budget from Redis at {self._clients.endpoint}"
            raise RedisUnavailableError(msg) from exc
        return _reply(reply).committed
