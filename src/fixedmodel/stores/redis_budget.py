"""Budgets in Redis: one spending cap shared by every process and host that uses it.

:class:`RedisBudgetStore` applies the rule of :mod:`fixedmodel.stores._budget_store` in one
Lua script per operation (atomic across clients, O(1) but for the calls in flight when a
window ends, windows timed by the Redis server's clock).

What is stored, per budget: one hash ``<namespace><key>`` (default namespace
``fixedmodel:budget:``) with the fields ``w`` (the current window), ``c`` (nano-USD), ``t``
(tokens), ``r`` (requests), ``hc``/``ht`` (the part of ``c``/``t`` held by calls in flight),
``o``/``l`` (the clock correction and the last time the key saw, as the rate limiter keeps
them), and one field ``h:<id>`` per reservation not settled yet (``"<window> <nano-USD>
<tokens>"``). A settlement that finds no reservation (its reserve has not run, and may never)
leaves a key ``<namespace><key>:x:<id>`` for 24 hours, so that the reserve, if it arrives,
charges nothing. With a period the hash expires an hour after one period past its window;
without one it stays until you delete it (that is the budget's memory).

Clock steps: with a period, windows follow the server's ``TIME`` corrected the way
:mod:`fixedmodel.stores.redis_limiter` corrects it: a step back carries on from the last time
the key saw (a window never goes back), and a step forward is measured against the client's
own clock of elapsed time (counting a system suspend), so a budget is not reset early by a
clock that jumps, and catches up after a suspend.

Exactly once: every reservation has an id chosen before its script is sent. When the script
may or may not have run (Redis answered late, the caller was cancelled while waiting), the
store settles that id to nothing; a settlement Redis did not confirm is kept and retried (on
a background thread, and before the next reservation of this store) until it is.

When Redis cannot be reached the store follows ``on_error``: ``"closed"`` (the default for
budgets: a cap that cannot be checked is not spent) raises
:class:`~fixedmodel.stores.redis_limiter.RedisUnavailableError`; ``"open"`` lets the call
through uncounted and logs a WARNING. Settlements never raise.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fixedmodel.stores._budget_store import Caps, Committed, Reservation
from fixedmodel.stores._cache_store import after_fork_in_child
from fixedmodel.stores._redis import (
    DEFAULT_TIMEOUT,
    LOGGER,
    Flow,
    LuaScript,
    OnError,
    PolicyStore,
    check_on_error,
)
from fixedmodel.stores.redis_limiter import (
    RedisUnavailableError,
    _ClockHints,  # pyright: ignore[reportPrivateUsage]  # the same clock-step rule, not a copy
)

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

__all__ = ["RedisBudgetStore"]

# ARGV: op, skew, seen, elapsed (see redis_limiter's "Clock steps"), period (µs, 0: none), then
# reserve: max cost, max tokens, max requests (-1: no cap), cost, tokens; settle: cost, tokens,
# void (1: the call was never made).
# KEYS: the budget's hash, then (reserve, settle) the id's "settled before reserved" mark.
_SCRIPT = LuaScript(
    """
local base, op = KEYS[1], ARGV[1]
local period = tonumber(ARGV[5])
local TOLERANCE = 1000000
local MARGIN = 3600000000
local VOID_MS = 86400000
local function fmt(n) return string.format('%.0f', n) end

local s = redis.call('HMGET', base, 'w', 'c', 't', 'r', 'hc', 'ht', 'o', 'l')
local stored = tonumber(s[1])
local c, tk, r = tonumber(s[2]) or 0, tonumber(s[3]) or 0, tonumber(s[4]) or 0
local hc, ht = tonumber(s[5]) or 0, tonumber(s[6]) or 0
local offset, last = tonumber(s[7]) or 0, tonumber(s[8])
local id = string.sub(KEYS[2] or '', string.len(base) + 4)

if op == 'settle' then
  local entry = redis.call('HGET', base, 'h:' .. id)
  if not entry then
    redis.call('SET', KEYS[2], '1', 'PX', VOID_MS)
    return 0
  end
  redis.call('HDEL', base, 'h:' .. id)
  local w, held_c, held_t = string.match(entry, '^(%-?%d+) (%d+) (%d+)$')
  if tonumber(w) == stored then
    held_c, held_t = tonumber(held_c), tonumber(held_t)
    c = math.max(c - held_c + tonumber(ARGV[6]), 0)
    tk = math.max(tk - held_t + tonumber(ARGV[7]), 0)
    hc, ht = math.max(hc - held_c, 0), math.max(ht - held_t, 0)
    -- A reservation voided by its store: the call was never made, so it is no request.
    if ARGV[8] == '1' then r = math.max(r - 1, 0) end
    redis.call('HSET', base, 'c', fmt(c), 't', fmt(tk), 'r', fmt(r), 'hc', fmt(hc), 'ht', fmt(ht))
  end
  return 0
end

-- Scripts that read TIME must be replicated as their effects (the default from Redis 5).
if redis.replicate_commands then redis.replicate_commands() end
local window, now, resets = 0, -1, -1
local stored_offset = offset
if period > 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[2]) + offset
  if last and now < last then
    -- The server clock stepped back: carry on from the last time this key saw.
    offset = offset + last - now
    now = last
  end
  local seen, elapsed = tonumber(ARGV[3]), tonumber(ARGV[4])
  if last and seen >= 0 and now > seen + elapsed + TOLERANCE then
    -- More time passed on the server than on this client: the server clock stepped forward.
    local target = math.max(last, seen + elapsed + TOLERANCE)
    offset = offset - (now - target)
    now = target
  end
  window = math.floor(now / period)
  resets = (window + 1) * period - now
end
local fresh = stored ~= window
if fresh then c, tk, r, hc, ht = 0, 0, 0, 0, 0 end
local function reply(granted) return {granted, window, c, tk, r, resets, hc, ht, now} end
local function save_time()
  if period > 0 and (now ~= last or offset ~= stored_offset) then
    redis.call('HSET', base, 'o', fmt(offset), 'l', fmt(now))
    redis.call('PEXPIRE', base, math.ceil((resets + period + MARGIN) / 1000))
  end
end

if op == 'committed' then
  if redis.call('EXISTS', base) == 1 then save_time() end
  return reply(0)
end

-- op == 'reserve'
local max_c, max_t, max_r = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local cost, tokens = tonumber(ARGV[9]), tonumber(ARGV[10])
save_time()
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('HEXISTS', base, 'h:' .. id) == 1 then
  return reply(0)
end
if (max_c >= 0 and c + cost > max_c) or (max_t >= 0 and tk + tokens > max_t)
    or (max_r >= 0 and r + 1 > max_r) then
  return reply(0)
end
if fresh and stored then
  -- The reservations of the window that ended go with it (their settlements are dropped).
  for _, name in ipairs(redis.call('HKEYS', base)) do
    if string.sub(name, 1, 2) == 'h:' then redis.call('HDEL', base, name) end
  end
end
c, tk, r, hc, ht = c + cost, tk + tokens, r + 1, hc + cost, ht + tokens
redis.call('HSET', base, 'w', fmt(window), 'c', fmt(c), 't', fmt(tk), 'r', fmt(r),
  'hc', fmt(hc), 'ht', fmt(ht), 'h:' .. id, fmt(window) .. ' ' .. fmt(cost) .. ' ' .. fmt(tokens))
if period > 0 then
  redis.call('PEXPIRE', base, math.ceil((resets + period + MARGIN) / 1000))
end
return reply(1)
"""
)

_RETRY_FIRST = 0.05  # Seconds before the first retry of an unconfirmed settlement.
_RETRY_LONGEST = 2.0
_VOID_SECONDS = 86_400  # How long a "settled before reserved" mark lives (VOID_MS in the script).


def _period(caps: Caps) -> int:
    return 0 if caps.period is None else max(1, math.ceil(caps.period * 1_000_000))


def _cap(value: int | None) -> int:
    return -1 if value is None else value


@dataclass(frozen=True)
class _Reply:
    reservation: Reservation
    now: int


def _reply(reply: object) -> _Reply:
    if isinstance(reply, list):
        items: list[object] = reply  # pyright: ignore[reportUnknownVariableType]
        numbers = [item for item in items if isinstance(item, int)]
        if len(items) == 9 and len(numbers) == 9:
            granted, window, cost, tokens, requests, resets, held_cost, held_tokens, now = numbers
            resets_in = None if resets < 0 else resets / 1e6
            committed = Committed(cost, tokens, requests, resets_in, held_cost, held_tokens)
            return _Reply(Reservation(bool(granted), window, committed), now)
    kind: str = type(reply).__name__  # pyright: ignore[reportUnknownArgumentType]
    msg = f"unexpected reply from the budget script: {kind}"
    raise RuntimeError(msg)


@dataclass(frozen=True)
class _Settlement:
    key: str
    reservation_id: str
    cost: int
    tokens: int
    void: bool = False

    def keys(self, namespace: str) -> list[str]:
        base = namespace + self.key
        return [base, f"{base}:x:{self.reservation_id}"]

    def args(self) -> list[str | int]:
        return ["settle", 0, -1, 0, 0, self.cost, self.tokens, int(self.void)]


class _Unsettled:
    """Settlements Redis has not confirmed, retried until it does (each is idempotent)."""

    __slots__ = ("__weakref__", "_lock", "_settlements", "_thread")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settlements: dict[str, _Settlement] = {}
        self._thread: threading.Thread | None = None
        after_fork_in_child(self)

    def __bool__(self) -> bool:
        return bool(self._settlements)

    def add(self, settlement: _Settlement) -> None:
        with self._lock:
            self._settlements[settlement.reservation_id] = settlement

    def taken(self) -> list[_Settlement]:
        with self._lock:
            return list(self._settlements.values())

    def clear(self) -> None:
        with self._lock:
            self._settlements.clear()

    def confirmed(self, settlement: _Settlement) -> None:
        with self._lock:
            self._settlements.pop(settlement.reservation_id, None)

    def retry_in_background(self, store: RedisBudgetStore) -> None:
        """Start the thread that retries until every settlement is confirmed (once)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            # The thread holds the store weakly: a store dropped by its owner stops it.
            self._thread = threading.Thread(
                target=_retry_loop,
                args=(weakref.ref(store),),
                name="fixedmodel-budget-settle",
                daemon=True,
            )
            self._thread.start()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._thread = None


def _retry_loop(reference: weakref.ReferenceType[RedisBudgetStore]) -> None:
    delay, give_up = _RETRY_FIRST, time.monotonic() + _VOID_SECONDS
    while True:
        time.sleep(delay)
        store = reference()
        if store is None or store.flush_unsettled():
            return
        if time.monotonic() > give_up:
            # Past this, a reservation it voids could already have run unmarked: stop.
            LOGGER.error(
                "RedisBudgetStore: settlements unconfirmed for %d s are dropped; "
                "the budget keeps their reservations",
                _VOID_SECONDS,
            )
            store.drop_unsettled()
            return
        del store
        delay = min(delay * 2, _RETRY_LONGEST)


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

    __slots__ = ("_clock", "_unsettled")

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
        self._on_error = check_on_error(on_error)
        self._open(url, client, async_client, namespace, timeout, example="myapp:budget:")
        self._clock = _ClockHints()
        self._unsettled = _Unsettled()

    # Settlements --------------------------------------------------------------------------

    def _send(self, settlement: _Settlement) -> Flow[object]:
        return (yield _SCRIPT.call(settlement.keys(self._namespace), settlement.args()))

    def _later(self, settlement: _Settlement, exc: BaseException) -> None:
        """Keep a settlement Redis did not confirm, and retry it."""
        self._unsettled.add(settlement)
        if isinstance(exc, self._errors):
            self._health.failed("settle", exc, "it is retried until Redis confirms it")
        if self._clients.has_sync:
            self._unsettled.retry_in_background(self)

    def flush_unsettled(self) -> bool:
        """Send the settlements Redis has not confirmed; True when none is left.

        Raises nothing: a settlement that fails again stays for the next attempt.
        """
        for settlement in self._unsettled.taken():
            try:
                self._do(self._send(settlement))
            except self._errors:
                return False
            except Exception as exc:  # A client closed under it, say: it must not end the
                # retrying thread, which alone would send the settlement later.
                LOGGER.warning("RedisBudgetStore: a settlement is kept for later: %r", exc)
                return False
            self._unsettled.confirmed(settlement)
            self._health.succeeded()
        return not self._unsettled

    def drop_unsettled(self) -> None:
        """Forget the settlements Redis has not confirmed (after a day of trying)."""
        self._unsettled.clear()

    async def _aflush_unsettled(self) -> bool:
        """Async :meth:`flush_unsettled`."""
        for settlement in self._unsettled.taken():
            try:
                await self._ado(self._send(settlement))
            except self._errors:
                return False
            except Exception as exc:  # As in flush_unsettled.
                LOGGER.warning("RedisBudgetStore: a settlement is kept for later: %r", exc)
                return False
            self._unsettled.confirmed(settlement)
            self._health.succeeded()
        return not self._unsettled

    def settle(self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int) -> None:
        """Replace what ``reservation_id`` holds by ``cost`` and ``tokens`` (0, 0: refund).

        Never raises (but for an interruption or a cancellation): a settlement Redis does not
        confirm, or that its client fails to send, is retried until Redis confirms it.
        """
        # Not skipped while the store rests: kept and retried until Redis confirms it.
        self._do(self._settle(_Settlement(key, reservation_id, cost, tokens)), rest=False)

    async def asettle(
        self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int
    ) -> None:
        """Async :meth:`settle`."""
        await self._ado(self._settle(_Settlement(key, reservation_id, cost, tokens)), rest=False)

    def _settle(self, settlement: _Settlement) -> Flow[None]:
        try:
            yield from self._send(settlement)
        except Exception as exc:  # Redis's errors, or the client's own (a socket closed under
            # it): the call that settles has its answer already; the settlement is retried.
            self._later(settlement, exc)
            return
        except BaseException as exc:  # Interrupted or cancelled: did it run? It is idempotent.
            self._later(settlement, exc)
            raise
        self._health.succeeded()

    # Reservations -------------------------------------------------------------------------

    def _reserve_args(
        self, key: str, caps: Caps, cost: int, tokens: int
    ) -> tuple[list[str | int], float]:
        head, sent = self._clock.args(key, "reserve")
        limits = [_cap(caps.cost), _cap(caps.tokens), _cap(caps.requests)]
        return [*head, _period(caps), *limits, cost, tokens], sent

    def _keys(self, key: str, reservation_id: str) -> list[str]:
        base = self._namespace + key
        return [base, f"{base}:x:{reservation_id}"]

    def _decided(self, key: str, reply: _Reply, sent: float) -> Reservation:
        if reply.now >= 0:
            self._clock.saw(key, reply.now, sent)
        self._health.succeeded()
        return reply.reservation

    def reserve(
        self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int
    ) -> Reservation:
        """Hold one request of ``cost`` nano-USD and ``tokens`` tokens under
        ``reservation_id``, if every cap allows and the id was not settled already.

        Settlements Redis has not confirmed yet are sent first. When Redis does not answer
        (or the caller is interrupted) the id is settled to nothing.

        Raises:
            RedisUnavailableError: Redis did not answer and ``on_error`` is ``"closed"``.
        """
        if self._unsettled and not self.flush_unsettled():
            return self._unavailable(TimeoutError("earlier settlements are still unconfirmed"))
        return self._do(self._reserve(key, caps, reservation_id, cost, tokens))

    async def areserve(
        self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int
    ) -> Reservation:
        """Async :meth:`reserve`."""
        if self._unsettled and not await self._aflush_unsettled():
            return self._unavailable(TimeoutError("earlier settlements are still unconfirmed"))
        return await self._ado(self._reserve(key, caps, reservation_id, cost, tokens))

    def _reserve(
        self, key: str, caps: Caps, reservation_id: str, cost: int, tokens: int
    ) -> Flow[Reservation]:
        args, sent = self._reserve_args(key, caps, cost, tokens)
        try:
            reply = _reply((yield _SCRIPT.call(self._keys(key, reservation_id), args)))
        except Exception as exc:
            self._void(key, reservation_id, exc)
            if isinstance(exc, self._errors):
                return self._unavailable(exc)
            raise
        except BaseException as exc:  # Interrupted or cancelled while the script may run: undo it.
            self._void(key, reservation_id, exc)
            raise
        return self._decided(key, reply, sent)

    def _void(self, key: str, reservation_id: str, exc: BaseException) -> None:
        """Settle to nothing a reservation that may or may not have been applied."""
        self._later(_Settlement(key, reservation_id, 0, 0, void=True), exc)

    def _unavailable(self, exc: BaseException) -> Reservation:
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

    # Reading ------------------------------------------------------------------------------

    def committed(self, key: str, caps: Caps) -> Committed:
        """The totals of the current window.

        Settlements this process has not had confirmed yet are sent first, so the totals
        include every call it knows has ended.

        Raises:
            RedisUnavailableError: Redis did not answer.
        """
        self.flush_unsettled()
        return self._do(self._committed(key, caps))

    async def acommitted(self, key: str, caps: Caps) -> Committed:
        """Async :meth:`committed`."""
        await self._aflush_unsettled()  # Still unconfirmed: kept for next time.
        return await self._ado(self._committed(key, caps))

    def _committed(self, key: str, caps: Caps) -> Flow[Committed]:
        head, sent = self._clock.args(key, "committed")
        try:
            reply = _reply((yield _SCRIPT.call([self._namespace + key], [*head, _period(caps)])))
        except self._errors as exc:
            msg = f"could not read the budget from Redis at {self._clients.endpoint}"
            raise RedisUnavailableError(msg) from exc
        return self._decided(key, reply, sent).committed
