"""Rate limiter state in Redis: one quota shared by every process and host that uses it.

:class:`RedisLimiterStore` applies the window rule of :mod:`fixedmodel.stores._limiter_store`
(a segmented sliding window) in one Lua script per operation, so each decision is atomic
across all clients, costs O(1) (a bounded number of hash fields), and is timed by the Redis
server's own clock (``TIME``): hosts whose clocks disagree still share one window.

What is stored, per quota: one hash ``<namespace><key>`` (default namespace
``fixedmodel:rl:``) with the fields ``head`` and ``next`` (ids of the oldest live segment and
of the next one), ``requests`` and ``tokens`` (totals of the live segments), ``paused``
(microseconds until which the quota is paused), ``offset`` and ``last`` (the correction of
the server clock and the last time the key saw, see below) and one field ``s<id>`` per live
segment (``"<start µs> <requests> <tokens>"``; at most ``SEGMENTS_PER_PERIOD + 2``). Nothing
else: no prompt, no parameter, no credential. The key expires an hour after its last segment
and its pause (a few hundred bytes), so an idle quota leaves nothing behind for long; the
hour lets the key outlive a forward step of the server clock, which Redis's own expiry
follows.

Clock steps. The window is timed by the server's ``TIME`` plus the key's ``offset``. When
``TIME`` steps back (NTP, VM resume, failover to a replica), the script sees a time before
``last`` and adds the difference to ``offset``: the key's time goes on from ``last`` and the
window stays exact (without this, a step back of 20 minutes refused every request for 20
minutes). A step forward cannot be told from idle time by the server alone, so each client
sends, with every request, the server time of its previous reply for that key and how much
time its own clock measured since it sent that request (one that counts a system
suspend, see ``_elapsed``): when the server's time
moved more than that (and one second for the request to arrive), the script takes the
client's measure and lowers ``offset``, so admissions of the last period stay counted. A
client's first request for a key carries no measure; a step forward before any client that
has used the key asks again can still free the budget once.

When Redis cannot be reached (down, too slow, refusing) the store follows ``on_error``:
``"open"`` (the default) admits the request and logs a WARNING; ``"closed"`` raises
:class:`RedisUnavailableError`. Either way no call waits longer than ``timeout`` for Redis,
and the store uses Redis again as soon as it answers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fixedmodel.stores import _elapsed
from fixedmodel.stores._limiter_store import SEGMENTS_PER_PERIOD, Acquisition
from fixedmodel.stores._redis import (
    DEFAULT_TIMEOUT,
    Flow,
    LuaScript,
    OnError,
    PolicyStore,
    check_on_error,
)

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from fixedmodel._limits import RateLimit

__all__ = ["OnError", "RedisLimiterStore", "RedisUnavailableError"]

# Times are integer microseconds of the server clock, plus the key's ``offset`` (see "Clock
# steps" in the class docstring); Lua numbers are doubles, exact up to 2**53 (about 285 years
# of microseconds). Segment ids of a new key start at the current time, so an id handed out
# before the key expired never names a segment of its successor.
#
# ARGV: op, then for the ops that read the clock (acquire, pause): skew (µs added to TIME;
# 0 except in tests), seen (this client's last reply time, -1 if none), elapsed (µs by this
# client's elapsed-time clock since it sent that request), then the op's own arguments.
_SCRIPT = LuaScript(
    """
local key = KEYS[1]
local op = ARGV[1]
local MARGIN = 3600000000
local TOLERANCE = 1000000
local MAX_LIVE = 4096

local function fmt(n) return string.format('%.0f', n) end
local function field(id) return 's' .. fmt(id) end

local state = redis.call('HMGET', key, 'head', 'next', 'requests', 'tokens', 'paused',
  'offset', 'last')
local head, nxt = tonumber(state[1]), tonumber(state[2])
local requests, tokens = tonumber(state[3]) or 0, tonumber(state[4]) or 0
local paused = tonumber(state[5]) or 0
local offset, last = tonumber(state[6]) or 0, tonumber(state[7])
local stored_offset = offset

local function segment(id)
  local value = redis.call('HGET', key, field(id))
  if not value then return nil end
  local start, count, charged = string.match(value, '^(%d+) (%d+) (%d+)$')
  return tonumber(start), tonumber(count), tonumber(charged)
end

local function save(now, ttl)
  redis.call('HSET', key, 'head', fmt(head), 'next', fmt(nxt),
    'requests', fmt(requests), 'tokens', fmt(tokens), 'paused', fmt(paused),
    'offset', fmt(offset), 'last', fmt(now))
  redis.call('PEXPIRE', key, math.ceil(ttl / 1000))
end

if op == 'adjust' then
  local id, change = tonumber(ARGV[2]), tonumber(ARGV[3])
  if not head or id < head or id >= nxt then return 0 end
  local start, count, charged = segment(id)
  if not start then return 0 end
  change = math.max(change, -charged)
  redis.call('HSET', key, 'tokens', fmt(math.max(tokens + change, 0)),
    field(id), fmt(start) .. ' ' .. fmt(count) .. ' ' .. fmt(charged + change))
  return 0
end

-- Scripts that read TIME must be replicated as their effects (the default from Redis 5).
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2]) + tonumber(ARGV[2]) + offset
if last and now < last then
  -- The server clock stepped back: carry on from the last time this key saw.
  offset = offset + last - now
  now = last
end
local seen, elapsed = tonumber(ARGV[3]), tonumber(ARGV[4])
if last and seen >= 0 and now > seen + elapsed + TOLERANCE then
  -- More time passed on the server than on this client since its last request: the server
  -- clock stepped forward. Take the client's measure (never going back before last).
  local target = math.max(last, seen + elapsed + TOLERANCE)
  offset = offset - (now - target)
  now = target
end
if not head or not nxt or nxt - head > MAX_LIVE then
  -- A new key; or a state no rule can produce, dropped rather than scanned.
  if head then
    redis.call('DEL', key)
  end
  head, nxt, requests, tokens = now, now, 0, 0
end

if op == 'pause' then
  paused = math.max(paused, now + tonumber(ARGV[5]))
  local left = redis.call('PTTL', key) * 1000
  save(now, math.max(left, paused - now + MARGIN))
  return {0, 0, now}
end

-- op == 'acquire'
local length, life = tonumber(ARGV[5]), tonumber(ARGV[6])
local max_requests, max_tokens, cost = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])

local function fits(count, charged)
  if max_requests >= 0 and count + 1 > max_requests then return false end
  if max_tokens < 0 then return true end
  return charged + cost <= max_tokens or (cost > max_tokens and charged <= 0)
end

local dirty = false
while head < nxt do
  local start, count, charged = segment(head)
  if start and start + life > now then break end
  if start then
    requests, tokens = requests - count, tokens - charged
    redis.call('HDEL', key, field(head))
  end
  head, dirty = head + 1, true
end
if head >= nxt then requests, tokens = 0, 0 end
local ttl = math.max(life, paused - now) + MARGIN
dirty = dirty or now ~= last or offset ~= stored_offset

if now < paused then
  if dirty then save(now, ttl) end
  return {0, paused - now, now}
end

if fits(requests, tokens) then
  local id, start, count, charged = nxt - 1, nil, 0, 0
  if id >= head then start, count, charged = segment(id) end
  if not start or now >= start + length then
    id, start, count, charged = nxt, now, 0, 0
    nxt = nxt + 1
  end
  redis.call('HSET', key, field(id),
    fmt(start) .. ' ' .. fmt(count + 1) .. ' ' .. fmt(charged + cost))
  requests, tokens = requests + 1, tokens + cost
  save(now, ttl)
  return {1, id, now}
end

if dirty then save(now, ttl) end
local left_requests, left_tokens = requests, tokens
for id = head, nxt - 1 do
  local start, count, charged = segment(id)
  if start then
    left_requests, left_tokens = left_requests - count, left_tokens - charged
    if fits(left_requests, left_tokens) then return {0, start + life - now, now} end
  end
end
return {0, life, now}
"""
)


class RedisUnavailableError(RuntimeError):
    """Redis could not decide on a request, and the store's policy is ``on_error="closed"``.

    The call was not made. The original redis-py error is the ``__cause__``.
    """


def _acquire_args(limit: RateLimit, tokens: int) -> list[str | int]:
    period = math.ceil(limit.period * 1_000_000)
    length = max(1, math.ceil(period / SEGMENTS_PER_PERIOD))
    requests = -1 if limit.requests is None else limit.requests
    budget = -1 if limit.tokens is None else limit.tokens
    return [length, length + period, requests, budget, tokens]


def _adjust_args(segment: int, tokens: int) -> list[str | int]:
    return ["adjust", segment, tokens]


def _pause_args(seconds: float) -> list[str | int]:
    return [math.ceil(seconds * 1_000_000)]


def _reply(reply: object) -> tuple[int, int, int]:
    if isinstance(reply, list):
        items: list[object] = reply  # pyright: ignore[reportUnknownVariableType]
        if len(items) == 3:
            granted, value, now = items
            if isinstance(granted, int) and isinstance(value, int) and isinstance(now, int):
                return granted, value, now
    # Narrowed by the isinstance above to list[Unknown] | object, which pyright reports.
    kind: str = type(reply).__name__  # pyright: ignore[reportUnknownArgumentType]
    msg = f"unexpected reply from the rate limit script: {kind}"
    raise RuntimeError(msg)


class _ClockHints:
    """What this client saw of each key's clock, so that the script can detect a step forward.

    For each key: the server time of this client's last reply, and the elapsed-time clock's
    reading when that request was sent. The server cannot have advanced more since then than
    this client's clock did (plus the time a request takes to arrive). That clock goes on
    during a system suspend (see ``_elapsed``): ``time.monotonic()`` stops, and after a sleep
    every key would have lagged the server's time by the sleep's length.
    """

    __slots__ = ("_seen", "skew")

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, float]] = {}
        self.skew = 0  # Microseconds added to the server's TIME: tests only.

    def args(self, key: str, op: str) -> tuple[list[str | int], float]:
        sent = _elapsed.elapsed()
        seen = self._seen.get(key)
        if seen is None:
            return [op, self.skew, -1, 0], sent
        return [op, self.skew, seen[0], math.ceil((sent - seen[1]) * 1_000_000)], sent

    def saw(self, key: str, now: int, sent: float) -> None:
        self._seen[key] = (now, sent)


def _decision(granted: int, value: int) -> Acquisition:
    return Acquisition.admit(value) if granted else Acquisition.refuse(value / 1e6)


class RedisLimiterStore(PolicyStore):
    """Rate limiter state in Redis, shared by processes and hosts; conforms to LimiterStore.

    Give every process the same URL (and namespace) and a :class:`RateLimiter` with the same
    :class:`RateLimit` and key: together they stay within the limit.

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://...`` or
            ``unix://path``. The store builds its own client, with ``timeout``. The URL is
            shown in ``repr`` and logs with its password replaced by ``***``.
        client: Instead of ``url``, a ``redis.Redis`` client of yours (its timeouts and
            retries apply: keep them short). Async methods then run it on threads.
        async_client: A ``redis.asyncio.Redis`` client for the async methods (with or
            without ``client``); keep it to one event loop.
        namespace: Prefix of every key; limiters with different namespaces never share a
            quota, even under the same key.
        on_error: When Redis cannot decide: ``"open"`` admits the request and logs a
            WARNING; ``"closed"`` raises :class:`RedisUnavailableError`. Corrections of
            token counts and pauses are best effort under both (logged, never raised): the
            call they concern has already happened.
        timeout: Seconds to wait for Redis (connect, then reply) with a client built from
            ``url``.

    Raises:
        ImportError: redis-py is missing (``pip install 'fixedmodel[redis]'``).
        TypeError: Neither a URL nor a client was given, or both were, or an argument has
            the wrong type.
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
        namespace: str = "fixedmodel:rl:",
        on_error: OnError = "open",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._on_error = check_on_error(on_error)
        self._open(url, client, async_client, namespace, timeout, example="myapp:rl:")
        self._clock = _ClockHints()

    def require_sync_client(self, user: str) -> None:
        """Check that the sync methods have a client (a URL, or ``client=``).

        Args:
            user: Who needs them, for the message (e.g. "with_rate_limit() was given a sync
                callable").

        Raises:
            TypeError: The store was built with only ``async_client=``; the message names the
                missing ``client=``.
        """
        if not self._clients.has_sync:
            msg = (
                f"{user}, but its RedisLimiterStore was built with only async_client=, so it "
                "has no client for sync calls: pass client= (a redis.Redis) as well, or a URL"
            )
            raise TypeError(msg)

    def acquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        """Admit one request of ``tokens`` tokens under ``limit`` now, or say when to retry.

        Raises:
            RedisUnavailableError: Redis did not answer and ``on_error`` is ``"closed"``.
        """
        return self._do(self._acquire(key, limit, tokens))

    async def aacquire(self, key: str, limit: RateLimit, tokens: int) -> Acquisition:
        """Async :meth:`acquire`."""
        return await self._ado(self._acquire(key, limit, tokens))

    def _acquire(self, key: str, limit: RateLimit, tokens: int) -> Flow[Acquisition]:
        head, sent = self._clock.args(key, "acquire")
        args = [*head, *_acquire_args(limit, tokens)]
        try:
            granted, value, now = _reply((yield _SCRIPT.call([self._namespace + key], args)))
        except self._errors as exc:
            return self._unavailable(exc)
        self._clock.saw(key, now, sent)
        self._health.succeeded()
        return _decision(granted, value)

    def _unavailable(self, exc: Exception) -> Acquisition:
        if self._on_error == "open":
            self._health.failed("acquire", exc, "the call goes ahead unlimited (on_error='open')")
            return Acquisition.admit(-1)
        self._health.failed("acquire", exc, "the request is refused (on_error='closed')")
        msg = (
            f"the rate limiter could not reach Redis at {self._clients.endpoint} "
            f"({type(exc).__name__}), so the call was not made (on_error='closed'); "
            "use on_error='open' to let calls through while Redis is unreachable"
        )
        raise RedisUnavailableError(msg) from exc

    def adjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        """Add ``tokens`` (negative: refund) to a segment, if it is still live."""
        if segment >= 0 and tokens:  # Else admitted while Redis was unreachable, or no change.
            self._do(self._adjust(key, segment, tokens))

    async def aadjust(self, key: str, limit: RateLimit, segment: int, tokens: int) -> None:
        """Async :meth:`adjust`."""
        if segment >= 0 and tokens:
            await self._ado(self._adjust(key, segment, tokens))

    def _adjust(self, key: str, segment: int, tokens: int) -> Flow[None]:
        try:
            yield _SCRIPT.call([self._namespace + key], _adjust_args(segment, tokens))
        except self._errors as exc:
            self._health.failed("adjust", exc, "the token count stays uncorrected")
            return
        self._health.succeeded()

    def pause(self, key: str, seconds: float) -> None:
        """Refuse every request for ``key`` during the next ``seconds`` (never shortens).

        The pause is kept in Redis, so it holds for every process sharing the quota.
        """
        if seconds > 0:
            self._do(self._pause(key, seconds))

    async def apause(self, key: str, seconds: float) -> None:
        """Async :meth:`pause`."""
        if seconds > 0:
            await self._ado(self._pause(key, seconds))

    def _pause(self, key: str, seconds: float) -> Flow[None]:
        head, sent = self._clock.args(key, "pause")
        args = [*head, *_pause_args(seconds)]
        try:
            _, _, now = _reply((yield _SCRIPT.call([self._namespace + key], args)))
        except self._errors as exc:
            self._health.failed("pause", exc, "the pause is not shared")
            return
        self._clock.saw(key, now, sent)
        self._health.succeeded()
