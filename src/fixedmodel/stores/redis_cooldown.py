"""Cooldowns in Redis: every process that balances over the same deployments skips the ones
any of them saw failing.

:class:`RedisCooldownStore` applies the circuit rule of
:mod:`fixedmodel.stores._cooldown_store` in one Lua script per operation (atomic across
clients, O(1), timed by the Redis server's clock).

What is stored, per deployment: one hash ``<namespace><key>`` (default namespace
``fixedmodel:cd:``) with the fields ``f`` (consecutive failures), ``l`` (last failure),
``o`` (open until), ``p`` (probe out until), ``z`` and ``t`` (the correction of the server
clock and the last time the key saw, see below) and ``c`` (when the key was made), times in
server microseconds. Nothing else: no request, no credential. A healthy deployment has no
key at all, so the usual ``enter`` is one script call that reads nothing; a key expires an
hour after nothing in it matters any more (the hour lets it outlive a forward step of the
server clock, which Redis's own expiry follows).

Clock steps, as in :mod:`fixedmodel.stores.redis_limiter`: the state is timed by the
server's ``TIME`` plus the key's correction. When ``TIME`` steps back, the script carries on
from the last time the key saw (a step back of 20 minutes does not keep a deployment out for
20 more minutes). A step forward is detected by the clients: each sends the key's time of
its previous reply and how long its own clock (counting a suspend) measured since, and the
script takes that measure when the server's time moved further (so a step forward does not
end a cooldown early). A client's first request about a key carries no measure.

When Redis cannot be reached the store follows ``on_error``, as the limiter's store does:
``"open"`` (the default) lets the call go to the deployment and logs a WARNING; ``"closed"``
raises :class:`~fixedmodel.stores.redis_limiter.RedisUnavailableError`. Reports of how a
call went are best effort under both (logged, never raised).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fixedmodel._ids import unique_id
from fixedmodel.stores._cooldown_store import ADMITTED, PROBE_POLL, BalanceView, Entry, SharedCall
from fixedmodel.stores._redis import (
    DEFAULT_TIMEOUT,
    Flow,
    LuaScript,
    OnError,
    PolicyStore,
    check_on_error,
)
from fixedmodel.stores.redis_limiter import (
    RedisUnavailableError,
    _ClockHints,  # pyright: ignore[reportPrivateUsage]  # one clock-step rule for both stores
)

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from fixedmodel._cooldown import CooldownPolicy

__all__ = ["RedisCooldownStore"]

# Times are integer microseconds of the server clock plus the key's offset ``z`` (see "Clock
# steps" in the module docstring). ARGV for the ops that read the clock (enter, failed): op,
# skew (µs added to TIME; 0 except in tests), seen (this client's last reply time for the
# key, -1 if none), elapsed (µs by this client's elapsed-time clock since it sent that request),
# keep (µs the state matters after its deadlines: cooldown + probe timeout + failure
# window), then the op's own arguments. Those ops return the key's time last, for the hints.
_SCRIPT = LuaScript(
    """
local key, op = KEYS[1], ARGV[1]
local MARGIN = 3600000000
local TOLERANCE = 1000000
if op == 'succeeded' and redis.call('EXISTS', key) == 0 then return {-1} end
if op == 'released' then
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'p', '0') end
  return 0
end
if op == 'enter' and redis.call('EXISTS', key) == 0 then return {1, 0, 0, 0, -1} end
if redis.replicate_commands then redis.replicate_commands() end
local s = redis.call('HMGET', key, 'f', 'l', 'o', 'p', 'z', 't', 'c')
local f, l = tonumber(s[1]) or 0, tonumber(s[2]) or 0
local o, p = tonumber(s[3]) or 0, tonumber(s[4]) or 0
local offset, last, created = tonumber(s[5]) or 0, tonumber(s[6]), tonumber(s[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[2]) + offset
if last and now < last then
  -- The server clock stepped back: carry on from the last time this key saw.
  offset = offset + last - now
  now = last
end
local seen, elapsed = tonumber(ARGV[3]), tonumber(ARGV[4])
if last and created and seen >= created and now > seen + elapsed + TOLERANCE then
  -- More time passed on the server than on this client since its last request about this
  -- key: the server clock stepped forward. Take the client's measure.
  local target = math.max(last, seen + elapsed + TOLERANCE)
  offset = offset - (now - target)
  now = target
end
if not created then created = now end
local keep = tonumber(ARGV[5])
local function fmt(n) return string.format('%.0f', n) end
local function save()
  redis.call('HSET', key, 'f', fmt(f), 'l', fmt(l), 'o', fmt(o), 'p', fmt(p),
    'z', fmt(offset), 't', fmt(now), 'c', fmt(created))
  -- The hour lets the state outlive a forward step of the server clock, which Redis's own
  -- expiry follows.
  local ttl = math.max(o - now, p - now, 0) + keep + MARGIN
  redis.call('PEXPIRE', key, math.ceil(ttl / 1000))
end
local function open_until(deadline)
  if deadline > o then o, p = deadline, 0 end
end
if op == 'succeeded' then
  -- A deadline still ahead was set by a failure after this call went out: it stays.
  if now < o then
    f = 0
    save()
  else
    redis.call('DEL', key)
  end
  return {now}
end
if op == 'enter' then
  local probe_timeout, window = tonumber(ARGV[6]), tonumber(ARGV[7])
  local reply
  if now < o then
    reply = {0, 0, 0, o - now, now}
  elseif o > 0 then
    if now < p then
      -- A probe is out: look again soon (PROBE_POLL), it usually reports before its lease.
      reply = {0, 0, 0, math.min(p - now, tonumber(ARGV[8])), now}
    else
      p = now + probe_timeout
      reply = {1, 1, 0, 0, now}
    end
  else
    if now - l > window then f = 0 end
    reply = {1, 0, f, 0, now}
  end
  save()
  return reply
end
-- op == 'failed'
local threshold, cooldown, window = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local probe, cool_for = ARGV[9] == '1', tonumber(ARGV[10])
if probe then
  f, p = 0, 0
  if cool_for >= 0 then open_until(now + cool_for) else open_until(now + cooldown) end
elseif cool_for >= 0 then
  open_until(now + cool_for)
else
  if now - l > window then f = 0 end
  f, l = f + 1, now
  if f >= threshold then
    f = 0
    open_until(now + cooldown)
  end
end
save()
return {now}
"""
)


def _micros(seconds: float) -> int:
    return math.ceil(seconds * 1_000_000)


def _keep(policy: CooldownPolicy) -> int:
    return _micros(policy.cooldown + policy.probe_timeout + policy.failure_window)


def _enter_args(policy: CooldownPolicy) -> list[str | int]:
    return [
        _keep(policy),
        _micros(policy.probe_timeout),
        _micros(policy.failure_window),
        _micros(PROBE_POLL),
    ]


def _failed_args(policy: CooldownPolicy, probe: bool, cool_for: float | None) -> list[str | int]:
    return [
        _keep(policy),
        policy.failures,
        _micros(policy.cooldown),
        _micros(policy.failure_window),
        "1" if probe else "0",
        -1 if cool_for is None else _micros(cool_for),
    ]


def _entry(reply: object) -> tuple[Entry, int]:
    """The entry, and the key's time (-1: the key did not exist)."""
    if isinstance(reply, list):
        items: list[object] = reply  # pyright: ignore[reportUnknownVariableType]
        numbers = [item for item in items if isinstance(item, int)]
        if len(items) == 5 and len(numbers) == 5:
            granted, probe, failures, retry_in, now = numbers
            if granted and not probe and not failures:
                return ADMITTED, now
            return Entry(bool(granted), bool(probe), failures, retry_in / 1e6), now
    kind: str = type(reply).__name__  # pyright: ignore[reportUnknownArgumentType]
    msg = f"unexpected reply from the cooldown script: {kind}"
    raise RuntimeError(msg)


def _time_of(reply: object) -> int:
    if isinstance(reply, list):
        items: list[object] = reply  # pyright: ignore[reportUnknownVariableType]
        if len(items) == 1 and isinstance(items[0], int):
            return items[0]
    return -1


# The balancer's shared state, per group: ``<ns>bal:<group>:clock`` (``n`` the round-robin
# counter; ``z``, ``t``, ``c`` the group's clock correction, as in the cooldown hash),
# and per deployment ``<ns>bal:<group>:busy:<name>`` (a sorted set of calls in flight, scored
# by the end of their lease) and ``<ns>bal:<group>:use:<name>`` (a hash of usage buckets
# ``r<n>`` requests and ``t<n>`` tokens, bucket n covering [n, n + 1) * length µs). Timed by
# the server's TIME plus the group's correction. A usage window is the last USAGE_BUCKETS
# buckets. ARGV: op, skew, seen, elapsed (as for the cooldown script), then the op's own.
USAGE_BUCKETS = 11
_BALANCE_SCRIPT = LuaScript(
    """
local op = ARGV[1]
local BUCKETS = 11
local MARGIN = 3600000000
local TOLERANCE = 1000000
if redis.replicate_commands then redis.replicate_commands() end
local function fmt(n) return string.format('%.0f', n) end
-- The group's clock, corrected for steps as the cooldown script does (see "Clock steps").
local clock = KEYS[1]
local s = redis.call('HMGET', clock, 'z', 't', 'c')
local offset, last, created = tonumber(s[1]) or 0, tonumber(s[2]), tonumber(s[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[2]) + offset
if last and now < last then
  offset = offset + last - now
  now = last
end
local seen, elapsed = tonumber(ARGV[3]), tonumber(ARGV[4])
if last and created and seen >= created and now > seen + elapsed + TOLERANCE then
  local target = math.max(last, seen + elapsed + TOLERANCE)
  offset = offset - (now - target)
  now = target
end
if not created then created = now end
redis.call('HSET', clock, 'z', fmt(offset), 't', fmt(now), 'c', fmt(created))
redis.call('PEXPIRE', clock, math.ceil(2 * MARGIN / 1000))
local function bucket(length) return math.floor(now / length) end
if op == 'view' then
  local turn = redis.call('HINCRBY', clock, 'n', 1)
  local out = {turn, now}
  local n = (#KEYS - 1) / 2
  for i = 1, n do
    local busy, use = KEYS[2 * i], KEYS[2 * i + 1]
    redis.call('ZREMRANGEBYSCORE', busy, '-inf', fmt(now))
    local count, requests, tokens = redis.call('ZCARD', busy), 0, 0
    local length = tonumber(ARGV[4 + i])
    if length > 0 then
      local oldest = bucket(length) - BUCKETS + 1
      local fields = redis.call('HGETALL', use)
      local stale = {}
      for j = 1, #fields, 2 do
        local kind, id = string.sub(fields[j], 1, 1), tonumber(string.sub(fields[j], 2))
        if id and id >= oldest and id <= oldest + BUCKETS - 1 then
          if kind == 'r' then requests = requests + tonumber(fields[j + 1])
          else tokens = tokens + tonumber(fields[j + 1]) end
        elseif not id or id < oldest then
          stale[#stale + 1] = fields[j]
        end
      end
      if #stale > 0 then redis.call('HDEL', use, unpack(stale)) end
    end
    out[#out + 1] = count
    out[#out + 1] = requests
    out[#out + 1] = tokens
  end
  return out
end
local busy, use = KEYS[2], KEYS[3]
local member, length = ARGV[5], tonumber(ARGV[6])
if op == 'started' then
  local lease, tokens = tonumber(ARGV[7]), tonumber(ARGV[8])
  redis.call('ZADD', busy, fmt(now + lease), member)
  redis.call('PEXPIRE', busy, math.ceil((lease + MARGIN) / 1000))
  if length <= 0 then return {-1, now} end
  local id = bucket(length)
  redis.call('HINCRBY', use, 'r' .. fmt(id), 1)
  redis.call('HINCRBY', use, 't' .. fmt(id), tokens)
  redis.call('PEXPIRE', use, math.ceil((length * BUCKETS + MARGIN) / 1000))
  return {id, now}
end
-- op == 'ended'
redis.call('ZREM', busy, member)
local id, requests, tokens = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
if length > 0 and id >= 0 and id > bucket(length) - BUCKETS
    and redis.call('HEXISTS', use, 'r' .. fmt(id)) == 1 then
  if requests ~= 0 then redis.call('HINCRBY', use, 'r' .. fmt(id), requests) end
  if tokens ~= 0 then redis.call('HINCRBY', use, 't' .. fmt(id), tokens) end
end
return {now}
"""
)


def _bucket_length(window: float) -> int:
    return 0 if window <= 0 else max(1, _micros(window / (USAGE_BUCKETS - 1)))


def _view(reply: object, count: int) -> BalanceView:
    if isinstance(reply, list):
        items: list[object] = reply  # pyright: ignore[reportUnknownVariableType]
        numbers = [item for item in items if isinstance(item, int)]
        if len(items) == 2 + 3 * count and len(numbers) == len(items):
            return BalanceView(
                turn=numbers[0] - 1,  # Counted from 1; a rotation starts at 0.
                busy=tuple(numbers[2::3]),
                requests=tuple(numbers[3::3]),
                tokens=tuple(numbers[4::3]),
            )
    kind: str = type(reply).__name__  # pyright: ignore[reportUnknownArgumentType]
    msg = f"unexpected reply from the balance script: {kind}"
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

    __slots__ = ("_clock",)

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
        self._on_error = check_on_error(on_error)
        self._open(url, client, async_client, namespace, timeout, example="myapp:cd:")
        self._clock = _ClockHints()

    def enter(self, key: str, policy: CooldownPolicy) -> Entry:
        """Decide whether a call may go to the deployment ``key`` now.

        Raises:
            RedisUnavailableError: Redis did not answer and ``on_error`` is ``"closed"``.
        """
        return self._do(self._enter(key, policy))

    async def aenter(self, key: str, policy: CooldownPolicy) -> Entry:
        """Async :meth:`enter`."""
        return await self._ado(self._enter(key, policy))

    def _enter(self, key: str, policy: CooldownPolicy) -> Flow[Entry]:
        head, sent = self._clock.args(key, "enter")
        args = [*head, *_enter_args(policy)]
        try:
            entry, now = _entry((yield _SCRIPT.call([self._namespace + key], args)))
        except self._errors as exc:
            return self._unavailable(exc)
        if now >= 0:
            self._clock.saw(key, now, sent)
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

    def _report(self, key: str, args: list[str | int], operation: str) -> Flow[object]:
        try:
            reply = yield _SCRIPT.call([self._namespace + key], args)
        except self._errors as exc:
            self._health.failed(operation, exc, "the cooldown state is not updated")
            return None
        self._health.succeeded()
        return reply

    def succeeded(self, key: str) -> None:
        """Record that a call to ``key`` succeeded: the circuit closes, failures reset.

        A circuit open until a deadline still ahead stays open until then (a failure after
        this call went out set it; a deadline only ever moves later).
        """
        self._do(self._succeeded(key))

    async def asucceeded(self, key: str) -> None:
        """Async :meth:`succeeded`."""
        await self._ado(self._succeeded(key))

    def _succeeded(self, key: str) -> Flow[None]:
        head, sent = self._clock.args(key, "succeeded")
        # keep 0: an open circuit's state lasts past its deadlines by the hour's margin.
        now = _time_of((yield from self._report(key, [*head, 0], "succeeded")))
        if now >= 0:
            self._clock.saw(key, now, sent)

    def failed(
        self, key: str, policy: CooldownPolicy, *, probe: bool, cool_for: float | None
    ) -> None:
        """Record a failure of ``key``; ``cool_for`` seconds (a Retry-After) open it at once."""
        self._do(self._failed(key, policy, probe, cool_for))

    async def afailed(
        self, key: str, policy: CooldownPolicy, *, probe: bool, cool_for: float | None
    ) -> None:
        """Async :meth:`failed`."""
        await self._ado(self._failed(key, policy, probe, cool_for))

    def _failed(
        self, key: str, policy: CooldownPolicy, probe: bool, cool_for: float | None
    ) -> Flow[None]:
        head, sent = self._clock.args(key, "failed")
        args = [*head, *_failed_args(policy, probe, cool_for)]
        now = _time_of((yield from self._report(key, args, "failed")))
        if now >= 0:
            self._clock.saw(key, now, sent)

    def released(self, key: str) -> None:
        """Give back the probe of ``key`` without a verdict (the call was cancelled)."""
        self._do(self._report(key, ["released"], "released"))

    async def areleased(self, key: str) -> None:
        """Async :meth:`released`."""
        await self._ado(self._report(key, ["released"], "released"))

    # --- the balancer's shared state (SharedBalanceStore) ---------------------------------

    def _balance_keys(self, group: str, name: str | None = None) -> list[str]:
        prefix = f"{self._namespace}bal:{group}:"
        if name is None:
            return [f"{prefix}clock"]
        return [f"{prefix}clock", f"{prefix}busy:{name}", f"{prefix}use:{name}"]

    def _balance(self, keys: list[str], args: list[str | int]) -> Flow[object]:
        """Run the balance script; its reply, or None if Redis failed."""
        head, sent = self._clock.args(keys[0], str(args[0]))
        try:
            reply = yield _BALANCE_SCRIPT.call(keys, [*head, *args[1:]])
        except self._errors as exc:
            self._health.failed("balance", exc, "this process balances on its own counts")
            return None
        self._balanced(keys[0], str(args[0]), reply, sent)
        return reply

    def _balanced(self, clock: str, op: str, reply: object, sent: float) -> None:
        """Note the group's time the script replied (second item; the only one for "ended")."""
        self._health.succeeded()
        if isinstance(reply, list):
            items: list[object] = reply  # pyright: ignore[reportUnknownVariableType]
            at = 0 if op == "ended" else 1
            now = items[at] if len(items) > at else None
            if isinstance(now, int):
                self._clock.saw(clock, now, sent)

    def balance_view(
        self, group: str, names: Sequence[str], windows: Sequence[float]
    ) -> BalanceView | None:
        """Take the next turn and read in-flight counts and usage of ``names`` (one script)."""
        return self._do(self._balance_view(group, names, windows))

    async def abalance_view(
        self, group: str, names: Sequence[str], windows: Sequence[float]
    ) -> BalanceView | None:
        """Async :meth:`balance_view`."""
        return await self._ado(self._balance_view(group, names, windows))

    def _balance_view(
        self, group: str, names: Sequence[str], windows: Sequence[float]
    ) -> Flow[BalanceView | None]:
        keys = self._balance_keys(group)
        for name in names:
            keys += self._balance_keys(group, name)[1:]
        reply = yield from self._balance(keys, ["view", *(_bucket_length(w) for w in windows)])
        return None if reply is None else _view(reply, len(names))

    def balance_started(
        self, group: str, name: str, *, lease: float, window: float, tokens: int
    ) -> SharedCall | None:
        """Record a call to ``name``: in flight, and (``window`` > 0) its usage."""
        return self._do(self._balance_started(group, name, lease, window, tokens))

    async def abalance_started(
        self, group: str, name: str, *, lease: float, window: float, tokens: int
    ) -> SharedCall | None:
        """Async :meth:`balance_started`."""
        return await self._ado(self._balance_started(group, name, lease, window, tokens))

    def _balance_started(
        self, group: str, name: str, lease: float, window: float, tokens: int
    ) -> Flow[SharedCall | None]:
        member = unique_id()
        args: list[str | int] = ["started", member, _bucket_length(window), _micros(lease), tokens]
        reply = yield from self._balance(self._balance_keys(group, name), args)
        return None if reply is None else SharedCall(member, _first(reply), tokens)

    def balance_ended(
        self,
        group: str,
        name: str,
        call: SharedCall,
        *,
        window: float,
        tokens: int | None,
        sent: bool,
    ) -> None:
        """End ``call``: no longer in flight; its usage corrected (see the protocol)."""
        args = _ended_args(call, window, tokens, sent)
        self._do(self._balance(self._balance_keys(group, name), args))

    async def abalance_ended(
        self,
        group: str,
        name: str,
        call: SharedCall,
        *,
        window: float,
        tokens: int | None,
        sent: bool,
    ) -> None:
        """Async :meth:`balance_ended`."""
        args = _ended_args(call, window, tokens, sent)
        await self._ado(self._balance(self._balance_keys(group, name), args))


def _first(reply: object) -> int:
    if isinstance(reply, list):
        items: list[object] = reply  # pyright: ignore[reportUnknownVariableType]
        if items and isinstance(items[0], int):
            return items[0]
    return -1


def _ended_args(call: SharedCall, window: float, tokens: int | None, sent: bool) -> list[str | int]:
    if not sent:
        requests, change = -1, -call.tokens
    else:
        requests, change = 0, (0 if tokens is None else tokens - call.tokens)
    return ["ended", call.member, _bucket_length(window), call.bucket, requests, change]
