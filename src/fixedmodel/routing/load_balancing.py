"""Load balancing: one model behind several deployments (regions, keys, replicas).

``with_load_balancing([east, west, backup_key])`` sends each call to one healthy deployment,
chosen by a strategy. A deployment that fails cools down and is skipped until it recovers: a
circuit breaker per deployment (closed, open, half-open with one probe at a time; the rule is
in :mod:`fixedmodel.stores._cooldown_store`). A call that fails on one deployment with an
error another may not have (429, 5xx, timeout, connection, 401/403) goes to the next
deployment at once, as does a call a deployment's own ``with_budget`` refused. Cooldown state
lives in a store: in process by default,
:class:`~fixedmodel.stores.redis_cooldown.RedisCooldownStore` to share it across processes;
that store (a ``SharedBalanceStore``) also holds every strategy's state below (the rotation,
calls in flight, usage), so that processes balance as one.

Strategies:

- ``"least_busy"`` (default): the deployment with the fewest calls in flight (a stream
  counts until it ends); ties go round-robin. Under even load it is round-robin; a slow or
  stuck deployment gets fewer calls on its own.
- ``"round_robin"``: each deployment in turn.
- ``"usage_based"``: the deployment with the most rate-limiter headroom: the smallest share
  of its :class:`~fixedmodel.RateLimit` (requests and tokens) used in the last period.
  Deployments wrapped in ``with_rate_limit`` are found under their middleware; one without
  a limiter counts as having all its headroom.

Deployments a strategy finds equal take turns among themselves; a call takes one turn
however many deployments it tries, and the calls a failing deployment hands on are spread
evenly over the others.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from itertools import count
from typing import Any, Literal, cast

from fixedmodel._cooldown import CooldownPolicy
from fixedmodel._protocols import ModelFn
from fixedmodel._streams import StreamEnd, watch_stream
from fixedmodel.middleware._attempts import attempt as observed_attempt
from fixedmodel.middleware._call import (
    CallInfo,
    ModelCallable,
    Wrapper,
    join_call,
    leave_call,
)
from fixedmodel.middleware._give_up import give_up
from fixedmodel.middleware._tokens import estimate_tokens, used_tokens
from fixedmodel.routing._chain import has_next_in_chain
from fixedmodel.routing._deployments import (
    Deployment,
    all_cooling,
    cool_for,
    counts_against,
    is_budget_refusal,
    sent_nothing,
)
from fixedmodel.routing._first_chunk import afirst_chunk, first_chunk, is_stream
from fixedmodel.routing._route import (
    LOGGER,
    add_note,
    check_once,
    check_one_kind,
    forward,
    name_of,
    note_failure,
    note_served,
)
from fixedmodel.stores._cooldown_store import (
    BalanceView,
    CooldownStore,
    Entry,
    SharedBalanceStore,
    SharedCall,
)
from fixedmodel.stores.cooldown_memory import MemoryCooldownStore

__all__ = ["CooldownPolicy", "Strategy", "with_load_balancing"]

Strategy = Literal["least_busy", "round_robin", "usage_based"]
"""How a deployment is chosen among the healthy ones."""

_STRATEGIES: frozenset[str] = frozenset({"least_busy", "round_robin", "usage_based"})

# How this layer sleeps while every deployment cools down; looked up on every call, so that
# tests can put a recording clock in their place.
_async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
_sync_sleep: Callable[[float], None] = time.sleep

# A refusal by the store is remembered for at most this long, so that a process does not ask
# the store about a cooling deployment on every call, and still sees a recovery soon.
_REMEMBER_REFUSAL = 1.0


def _cooling(deployment: Deployment, now: float, retry_in: float, *, later: bool = False) -> None:
    """Remember that ``deployment`` recovers in ``retry_in`` seconds.

    The store's answer replaces what this process knew; a failure seen here (``later``)
    only moves the deadline later.
    """
    recovers_at, skip_until = now + retry_in, now + min(retry_in, _REMEMBER_REFUSAL)
    if later:
        recovers_at = max(recovers_at, deployment.recovers_at)
        skip_until = max(skip_until, deployment.skip_until)
    deployment.recovers_at, deployment.skip_until = recovers_at, skip_until


class _Try:
    """One call's use of one deployment: the store's entry, and every failure seen there.

    While the deployment is called, :meth:`judge` is the ``give_up`` hook of the
    ``with_retries`` inside it: told of each failed attempt, it ends the retries as soon as
    the deployment cools down (its circuit opens, a Retry-After, or a failed probe), so no
    further request goes to it in this call and a probe is one request.
    """

    __slots__ = ("counted", "deployment", "entry", "policy", "seen", "shared", "unsent", "usage")

    def __init__(
        self,
        deployment: Deployment,
        entry: Entry,
        policy: CooldownPolicy,
        usage: list[float] | None,
        unsent: int,
    ) -> None:
        self.deployment = deployment
        self.entry = entry
        self.policy = policy
        self.usage = usage
        self.unsent = unsent  # The call record's unsent passes before: a cache hit shows.
        self.seen: list[BaseException] = []
        self.counted = 0
        self.shared: SharedCall | None = None  # Recorded in a shared store.

    @property
    def estimate(self) -> int:
        return 0 if self.usage is None else round(self.usage[1])

    def judge(self, error: BaseException) -> str | None:
        self.seen.append(error)
        if not counts_against(error):
            return None
        self.counted += 1
        name = self.deployment.name
        if self.entry.probe:
            return f"the probe of deployment {name!r} failed; with_load_balancing moves on"
        cooling = (
            cool_for(error, self.policy) is not None
            or self.entry.failures + self.counted >= self.policy.failures
            or self.deployment.recovers_at > time.monotonic()
        )
        if cooling:
            return f"deployment {name!r} cools down; with_load_balancing moves on"
        return None

    def failures(self, error: BaseException) -> list[BaseException]:
        """Every failure seen on this deployment in this call, in order, ending with ``error``."""
        if self.seen and self.seen[-1] is error:
            return self.seen
        return [*self.seen, error]


class _Balanced(Wrapper):
    """What the sync and async load balancers share: choosing and bookkeeping."""

    __slots__ = (
        "_deployments",
        "_ending",
        "_group",
        "_lock",
        "_policy",
        "_shared",
        "_store",
        "_strategy",
        "_turn",
    )

    def __init__(
        self,
        deployments: list[Deployment],
        strategy: Strategy,
        policy: CooldownPolicy,
        store: CooldownStore,
        group: str,
    ) -> None:
        super().__init__(deployments[0].call)
        self._deployments = deployments
        self._strategy: Strategy = strategy
        self._policy = policy
        self._store = store
        self._turn = count()
        self._group = group
        # A store shared by processes holds every strategy's state too (see the docs).
        self._shared = store if isinstance(store, SharedBalanceStore) else None
        self._ending: set[asyncio.Task[None]] = set()  # Shared ends of async streams.
        self._lock = threading.Lock()

    @property
    def strategy(self) -> Strategy:
        """How a deployment is chosen."""
        return self._strategy

    @property
    def cooldown(self) -> CooldownPolicy:
        """When deployments cool down."""
        return self._policy

    @property
    def deployments(self) -> Mapping[str, ModelCallable]:
        """The deployments by name, in order."""
        found: dict[str, Any] = {d.name: d.call for d in self._deployments}
        return found

    def _order(
        self,
        tried: set[int],
        now: float,
        turn: int,
        after: Deployment | None,
        view: BalanceView | None = None,
    ) -> list[Deployment]:
        """The untried deployments, best first, that this process does not know to be cooling.

        ``turn`` is the call's place in the rotation (one per call, however many deployments
        it tries); after a failure on ``after``, the rotation is that deployment's own, so
        the calls it fails over are spread evenly over the others.
        """
        # Known-cooling deployments are left out before the turn is taken, so that their
        # share is spread over the others instead of going to their neighbour.
        usable = [d for d in self._deployments if d.index not in tried and d.skip_until <= now]
        if not usable:
            return usable
        if after is not None:
            with self._lock:
                turn = after.failovers
                after.failovers += 1
        load: dict[int, float] = {}
        if self._strategy == "least_busy":
            for d in usable:  # Every process's calls with a shared store, else this one's.
                load[d.index] = view.busy[d.index] if view is not None else d.in_flight
        elif self._strategy == "usage_based":
            with self._lock:  # used_share drops old entries: one thread at a time.
                for d in usable:
                    load[d.index] = d.usage.used_share(now)
            if view is not None:
                load = {d.index: _shared_share(d, view) for d in usable}
        return _rotated(usable, load, turn)

    def _windows(self) -> list[float]:
        """Per deployment, the usage window a shared store counts (0: not counted)."""
        return [
            d.usage.period if self._strategy == "usage_based" and d.usage.limit else 0.0
            for d in self._deployments
        ]

    def _window(self, deployment: Deployment) -> float:
        return self._windows()[deployment.index]

    def _refused(self, deployment: Deployment, entry: Entry, now: float) -> None:
        _cooling(deployment, now, entry.retry_in)

    def _earliest(self, tried: set[int], now: float) -> float:
        waits = [max(d.recovers_at - now, 0.0) for d in self._deployments if d.index not in tried]
        return min(waits) if waits else 0.0

    def _start(self, deployment: Deployment, arguments: dict[str, Any]) -> list[float] | None:
        with self._lock:
            deployment.in_flight += 1
            if self._strategy != "usage_based" or deployment.usage.limit is None:
                return None
            limit = deployment.usage.limit
            tokens = 0
            if limit.tokens is not None:
                request = deployment.read(arguments)
                model = getattr(deployment.call, "model", None)
                tokens = estimate_tokens(
                    request,
                    model if isinstance(model, str) else None,
                    limit.assumed_completion_tokens,
                )
            return deployment.usage.add(time.monotonic(), tokens)

    def _done(
        self,
        attempt: _Try,
        result: object,
        stream: bool,
        info: CallInfo,
        shared_end: Callable[[_Try, int | None, bool], None] | None,
    ) -> tuple[int | None, bool] | None:
        """Settle a call that answered (``stream``: litellm's stream object); returns what
        to tell a shared store now (tokens, sent), or None when a stream will tell it when it
        ends (through ``shared_end``)."""
        deployment, usage = attempt.deployment, attempt.usage
        sent, used = info.unsent <= attempt.unsent, None  # More unsent: a cache answered.
        # The answer's usage is read only for a strategy or a shared store that counts it.
        if sent and not stream and (usage is not None or self._shared is not None):
            used = used_tokens({}, result)
        if usage is not None:
            with self._lock:
                if not sent:
                    deployment.usage.refund(usage)
                elif used is not None:
                    deployment.usage.correct(usage, float(used))
        if stream:
            # A stream keeps the deployment busy until it ends; its usage comes last.
            watched: Any = result  # litellm's stream class, checked just above
            watch_stream(
                watched,
                lambda end: self._stream_ended(attempt, sent, end, shared_end),
                awatcher=self._astream_ender(attempt, sent, shared_end),
            )
            return None
        with self._lock:  # self._finished(deployment), inlined: every call comes here.
            deployment.in_flight -= 1
        return used, sent

    def _stream_ended(
        self,
        attempt: _Try,
        sent: bool,
        end: StreamEnd,
        shared_end: Callable[[_Try, int | None, bool], None] | None,
    ) -> None:
        deployment, usage = attempt.deployment, attempt.usage
        tokens = None if end.usage is None else end.usage.total_tokens
        with self._lock:
            deployment.in_flight -= 1
            if usage is not None and sent and tokens is not None:
                deployment.usage.correct(usage, float(tokens))
        if shared_end is not None and attempt.shared is not None:
            shared_end(attempt, tokens, sent)

    def _astream_ender(
        self,
        attempt: _Try,
        sent: bool,
        shared_end: Callable[[_Try, int | None, bool], None] | None,
    ) -> Callable[[StreamEnd], Awaitable[None]] | None:
        """What an async stream's end awaits (None: the sync watcher is enough)."""
        return None

    def _stream_news(self, attempt: _Try, end: StreamEnd) -> tuple[bool, float | None] | bool:
        """What the store hears when a stream handed to the caller ends: ``(probe,
        cool_for)`` of a failure that counts (see :meth:`_stream_verdict`); True: a success
        to tell (failures counted before it, not reset at the return); False: nothing."""
        verdict = self._stream_verdict(attempt, end)
        if verdict is not None:
            return verdict
        entry = attempt.entry
        return bool(entry.failures) and not entry.probe and _answered(end)

    def _stream_verdict(self, attempt: _Try, end: StreamEnd) -> tuple[bool, float | None] | None:
        """What to tell the store, ``(probe, cool_for)``, of a stream handed to the caller
        that failed before any content in a way that counts against its deployment (the last
        deployment a call tries is not read ahead, so such a failure comes to light only
        here); None otherwise. A probe's success was told at the return: this is its failure.
        Failures counted before a stream are reset at its end, not at the return, when it
        gives no verdict: a reset at the return would undo the count of every stream failing
        before content, and a deployment whose streams all broke would never cool."""
        error = end.error
        if error is None or end.delivered or not counts_against(error):
            return None
        seconds = cool_for(error, self._policy)
        if seconds is not None:
            _cooling(attempt.deployment, time.monotonic(), seconds, later=True)
        return attempt.entry.probe, seconds

    def _finished(self, deployment: Deployment) -> None:
        with self._lock:
            deployment.in_flight -= 1

    def _failed(
        self,
        info: CallInfo,
        attempt: _Try,
        error: Exception,
        failures: list[tuple[str, BaseException]],
    ) -> None:
        deployment = attempt.deployment
        self._finished(deployment)
        if attempt.usage is not None and sent_nothing(error):
            with self._lock:
                deployment.usage.refund(attempt.usage)
        note_failure(info, deployment.name, error)
        failures.append((deployment.name, error))

    def _verdicts(self, attempt: _Try, error: Exception) -> list[tuple[bool, float | None]]:
        """What to tell the store: ``(probe, cool_for)`` per failure that counts, in order."""
        told: list[tuple[bool, float | None]] = []
        for failure in attempt.failures(error):
            if counts_against(failure):
                seconds = cool_for(failure, self._policy)
                told.append((attempt.entry.probe and not told, seconds))
                if seconds is not None:
                    _cooling(attempt.deployment, time.monotonic(), seconds, later=True)
        return told

    def _goes_on(self, error: Exception, tried: set[int]) -> bool:
        untried = len(tried) < len(self._deployments)
        return untried and (counts_against(error) or is_budget_refusal(error))

    def _wait_or_raise(
        self, tried: set[int], failures: list[tuple[str, BaseException]], waited: float
    ) -> float:
        """Seconds to wait before choosing again; raises when the policy says not to wait."""
        if failures:  # Every deployment this call could use failed: the last error is raised.
            _annotate(failures)
            raise failures[-1][1]
        now = time.monotonic()
        retry_in = self._earliest(tried, now)
        policy = self._policy
        # In a fallback chain with a callable still to try, that callable can answer now.
        hand_over = has_next_in_chain.get()
        if policy.when_all_cooling == "raise" or hand_over or waited + retry_in > policy.max_wait:
            raise all_cooling(self.model, retry_in, [d.name for d in self._deployments])
        LOGGER.debug("with_load_balancing: every deployment is cooling; waiting %.3f s", retry_in)
        # A probe out on another caller may end sooner than its lease: look again at least
        # every _REMEMBER_REFUSAL seconds.
        return min(retry_in, _REMEMBER_REFUSAL) if _REMEMBER_REFUSAL > 0 else retry_in

    def __repr__(self) -> str:
        inner = ", ".join(f"{d.name!r}: {d.call!r}" for d in self._deployments)
        return (
            f"with_load_balancing({{{inner}}}, strategy={self._strategy!r}, "
            f"cooldown={self._policy!r}, store={self._store!r})"
        )


def _rotated(usable: list[Deployment], load: dict[int, float], turn: int) -> list[Deployment]:
    """``usable`` least loaded first; deployments with equal load take turns among themselves.

    Rotating within each group of equals (not the whole list, then sorting) keeps the share
    of a loaded or failing deployment from going to its neighbour in the list alone.
    """
    levels = set(load.values())
    if len(levels) < 2:  # All equal (or no load kept): the plain rotation.
        start = turn % len(usable)
        return usable[start:] + usable[:start]
    ordered: list[Deployment] = []
    for level in sorted(levels):
        equal = [d for d in usable if load.get(d.index, 0.0) == level]
        start = turn % len(equal)
        ordered += equal[start:] + equal[:start]
    return ordered


def _shared_share(deployment: Deployment, view: BalanceView) -> float:
    """The used share of ``deployment``'s rate limit by every process sharing the store."""
    limit = deployment.usage.limit
    if limit is None:
        return 0.0
    share = 0.0
    if limit.requests is not None:
        share = view.requests[deployment.index] / limit.requests
    if limit.tokens is not None:
        share = max(share, view.tokens[deployment.index] / limit.tokens)
    return share


def _answered(end: StreamEnd) -> bool:
    """Whether a stream's end shows its deployment answered: read to its end, or failed as
    it was read. Not a stream closed or abandoned part way: its end may come from the
    garbage collector, where a store must not be called (a shared one does I/O)."""
    return end.completed or end.error is not None


def _annotate(failures: list[tuple[str, BaseException]]) -> None:
    if len(failures) < 2:
        return
    last = failures[-1][1]
    for name, error in failures[:-1]:
        add_note(last, f"fixedmodel.with_load_balancing: {name} failed with {type(error).__name__}")


class _AsyncBalanced(_Balanced):
    __slots__ = ()

    def _astream_ender(
        self,
        attempt: _Try,
        sent: bool,
        shared_end: Callable[[_Try, int | None, bool], None] | None,
    ) -> Callable[[StreamEnd], Awaitable[None]] | None:
        async def ended(end: StreamEnd) -> None:
            self._stream_ended(attempt, sent, end, shared_end)
            news, key = self._stream_news(attempt, end), attempt.deployment.key
            if isinstance(news, tuple):
                await self._store.afailed(key, self._policy, probe=news[0], cool_for=news[1])
            elif news:
                await self._store.asucceeded(key)

        return ended

    async def __call__(self, **kwargs: Any) -> Any:
        info, opened = join_call()
        arguments = forward(kwargs)
        tried: set[int] = set()
        failures: list[tuple[str, BaseException]] = []
        waited = 0.0
        after: Deployment | None = None
        try:
            view = None
            if self._shared is not None:
                names = [d.name for d in self._deployments]
                view = await self._shared.abalance_view(self._group, names, self._windows())
            turn = next(self._turn) if view is None else view.turn
            while True:
                chosen = await self._choose(tried, turn, after, view)
                if chosen is None:
                    pause = self._wait_or_raise(tried, failures, waited)
                    await _async_sleep(pause)
                    waited += pause
                    continue
                deployment, entry = chosen
                tried.add(deployment.index)
                info.deployments_tried += 1
                attempt = _Try(
                    deployment, entry, self._policy, self._start(deployment, arguments), info.unsent
                )
                try:
                    if self._shared is not None:
                        await self._ashare_start(attempt)
                    hook = give_up.set(attempt.judge)
                    with observed_attempt("deployment", deployment.call, deployment.name):
                        try:
                            result = await deployment.call(**arguments)
                        finally:
                            give_up.reset(hook)
                        stream = is_stream(result)
                        if stream and len(tried) < len(self._deployments):
                            await afirst_chunk(result)  # A failure before it may go elsewhere.
                except Exception as error:
                    self._failed(info, attempt, error, failures)
                    await self._ashare_end(attempt, None, not sent_nothing(error))
                    await self._report_failure(attempt, error)
                    if self._goes_on(error, tried):
                        after = deployment
                        continue
                    _annotate(failures)
                    raise
                except BaseException:
                    self._finished(deployment)
                    await self._ashare_end(attempt, None, True)
                    if entry.probe:
                        await self._store.areleased(deployment.key)
                    raise
                later = None if self._shared is None else self._stream_end_later()
                ended = self._done(attempt, result, stream, info, later)
                if ended is not None and self._shared is not None:
                    await self._ashare_end(attempt, *ended)
                # A stream's failures are reset when it ends, if it delivered: one failing
                # before content counts (see _stream_verdict), and would undo the reset.
                if entry.probe or (entry.failures and not stream):
                    await self._store.asucceeded(deployment.key)
                note_served(info, deployment.name)
                return result
        finally:
            leave_call(opened)

    async def _choose(
        self, tried: set[int], turn: int, after: Deployment | None, view: BalanceView | None
    ) -> tuple[Deployment, Entry] | None:
        now = time.monotonic()
        for deployment in self._order(tried, now, turn, after, view):
            entry = await self._store.aenter(deployment.key, self._policy)
            if entry.granted:
                return deployment, entry
            self._refused(deployment, entry, now)
        return None

    async def _ashare_start(self, attempt: _Try) -> None:
        if self._shared is not None:
            deployment = attempt.deployment
            attempt.shared = await self._shared.abalance_started(
                self._group,
                deployment.name,
                lease=self._policy.probe_timeout,
                window=self._window(deployment),
                tokens=attempt.estimate,
            )

    async def _ashare_end(self, attempt: _Try, tokens: int | None, sent: bool) -> None:
        call, attempt.shared = attempt.shared, None  # Ended once.
        if self._shared is not None and call is not None:
            deployment = attempt.deployment
            await self._shared.abalance_ended(
                self._group,
                deployment.name,
                call,
                window=self._window(deployment),
                tokens=tokens,
                sent=sent,
            )

    def _stream_end_later(self) -> Callable[[_Try, int | None, bool], None] | None:
        """How a stream's end reaches a shared store: a task on this loop (the stream may
        end in another thread, or in the garbage collector)."""
        if self._shared is None:
            return None
        loop = asyncio.get_running_loop()

        def later(attempt: _Try, tokens: int | None, sent: bool) -> None:
            def spawn() -> None:
                task = loop.create_task(self._ashare_end(attempt, tokens, sent))
                self._ending.add(task)
                task.add_done_callback(self._ending.discard)

            try:
                loop.call_soon_threadsafe(spawn)
            except RuntimeError:  # The loop is closed: the call's lease ends it.
                LOGGER.debug("with_load_balancing: a stream ended after its event loop closed")

        return later

    async def _report_failure(self, attempt: _Try, error: Exception) -> None:
        deployment, entry = attempt.deployment, attempt.entry
        verdicts = self._verdicts(attempt, error)
        for probe, seconds in verdicts:
            await self._store.afailed(deployment.key, self._policy, probe=probe, cool_for=seconds)
        if verdicts:
            return
        if sent_nothing(error):  # Nothing was sent: no verdict on the deployment.
            if entry.probe:
                await self._store.areleased(deployment.key)
        elif entry.probe or entry.failures:  # It answered: the deployment itself is fine.
            await self._store.asucceeded(deployment.key)


class _SyncBalanced(_Balanced):
    __slots__ = ()

    def _stream_ended(
        self,
        attempt: _Try,
        sent: bool,
        end: StreamEnd,
        shared_end: Callable[[_Try, int | None, bool], None] | None,
    ) -> None:
        super()._stream_ended(attempt, sent, end, shared_end)
        news, key = self._stream_news(attempt, end), attempt.deployment.key
        if isinstance(news, tuple):
            self._store.failed(key, self._policy, probe=news[0], cool_for=news[1])
        elif news:
            self._store.succeeded(key)

    def __call__(self, **kwargs: Any) -> Any:
        info, opened = join_call()
        arguments = forward(kwargs)
        tried: set[int] = set()
        failures: list[tuple[str, BaseException]] = []
        waited = 0.0
        after: Deployment | None = None
        try:
            view = None
            if self._shared is not None:
                names = [d.name for d in self._deployments]
                view = self._shared.balance_view(self._group, names, self._windows())
            turn = next(self._turn) if view is None else view.turn
            while True:
                chosen = self._choose(tried, turn, after, view)
                if chosen is None:
                    pause = self._wait_or_raise(tried, failures, waited)
                    _sync_sleep(pause)
                    waited += pause
                    continue
                deployment, entry = chosen
                tried.add(deployment.index)
                info.deployments_tried += 1
                attempt = _Try(
                    deployment, entry, self._policy, self._start(deployment, arguments), info.unsent
                )
                try:
                    self._share_start(attempt)
                    hook = give_up.set(attempt.judge)
                    with observed_attempt("deployment", deployment.call, deployment.name):
                        try:
                            result = deployment.call(**arguments)
                        finally:
                            give_up.reset(hook)
                        stream = is_stream(result)
                        if stream and len(tried) < len(self._deployments):
                            first_chunk(result)  # A failure before it may go elsewhere.
                except Exception as error:
                    self._failed(info, attempt, error, failures)
                    self._share_end(attempt, None, not sent_nothing(error))
                    self._report_failure(attempt, error)
                    if self._goes_on(error, tried):
                        after = deployment
                        continue
                    _annotate(failures)
                    raise
                except BaseException:
                    self._finished(deployment)
                    self._share_end(attempt, None, True)
                    if entry.probe:
                        self._store.released(deployment.key)
                    raise
                ended = self._done(attempt, result, stream, info, self._share_end)
                if ended is not None:
                    self._share_end(attempt, *ended)
                # A stream's failures are reset when it ends (see the async __call__).
                if entry.probe or (entry.failures and not stream):
                    self._store.succeeded(deployment.key)
                note_served(info, deployment.name)
                return result
        finally:
            leave_call(opened)

    def _choose(
        self, tried: set[int], turn: int, after: Deployment | None, view: BalanceView | None
    ) -> tuple[Deployment, Entry] | None:
        now = time.monotonic()
        for deployment in self._order(tried, now, turn, after, view):
            entry = self._store.enter(deployment.key, self._policy)
            if entry.granted:
                return deployment, entry
            self._refused(deployment, entry, now)
        return None

    def _share_start(self, attempt: _Try) -> None:
        if self._shared is not None:
            deployment = attempt.deployment
            attempt.shared = self._shared.balance_started(
                self._group,
                deployment.name,
                lease=self._policy.probe_timeout,
                window=self._window(deployment),
                tokens=attempt.estimate,
            )

    def _share_end(self, attempt: _Try, tokens: int | None, sent: bool) -> None:
        call, attempt.shared = attempt.shared, None  # Ended once.
        if self._shared is not None and call is not None:
            deployment = attempt.deployment
            self._shared.balance_ended(
                self._group,
                deployment.name,
                call,
                window=self._window(deployment),
                tokens=tokens,
                sent=sent,
            )

    def _report_failure(self, attempt: _Try, error: Exception) -> None:
        deployment, entry = attempt.deployment, attempt.entry
        verdicts = self._verdicts(attempt, error)
        for probe, seconds in verdicts:
            self._store.failed(deployment.key, self._policy, probe=probe, cool_for=seconds)
        if verdicts:
            return
        if sent_nothing(error):
            if entry.probe:
                self._store.released(deployment.key)
        elif entry.probe or entry.failures:
            self._store.succeeded(deployment.key)


def _named(
    deployments: object,
) -> list[tuple[str, ModelCallable]]:
    if isinstance(deployments, Mapping):
        items: list[tuple[object, object]] = list(deployments.items())  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
        for name, _ in items:
            if not isinstance(name, str) or not name:
                msg = f"with_load_balancing() deployment names must be non-empty str, got {name!r}"
                raise TypeError(msg)
        named: list[tuple[str, Any]] = [(str(n), f) for n, f in items]
        return named
    if isinstance(deployments, (str, bytes)) or not isinstance(deployments, Sequence):
        msg = (
            "with_load_balancing() takes its deployments as a list of callables or a mapping "
            f"of names to callables, got {type(deployments).__name__}"
        )
        raise TypeError(msg)
    listed: list[Any] = list(deployments)  # pyright: ignore[reportUnknownArgumentType]
    return [(name_of(f, i), f) for i, f in enumerate(listed)]


def _check_args(strategy: object, cooldown: object, store: object, key: object) -> CooldownStore:
    if strategy not in _STRATEGIES:
        msg = f"strategy must be one of {sorted(_STRATEGIES)}, got {strategy!r}"
        raise ValueError(msg)
    if not isinstance(cooldown, CooldownPolicy):
        msg = f"cooldown must be a CooldownPolicy, got {type(cooldown).__name__}"
        raise TypeError(msg)
    if not isinstance(key, str) or not key:
        msg = f"key must be a non-empty str naming the deployment group, got {key!r}"
        raise TypeError(msg)
    if store is None:
        return MemoryCooldownStore()
    if not isinstance(store, CooldownStore):
        msg = (
            "store must implement CooldownStore (enter, succeeded, failed, released and "
            f"their async forms), got {type(store).__name__}"
        )
        raise TypeError(msg)
    return store


_DEFAULT_POLICY = CooldownPolicy()


def with_load_balancing(
    deployments: Sequence[ModelFn] | Mapping[str, ModelFn],
    strategy: Strategy = "least_busy",
    cooldown: CooldownPolicy = _DEFAULT_POLICY,
    *,
    store: CooldownStore | None = None,
    key: str = "default",
) -> ModelFn:
    """Spread calls over deployments of one model, skipping those that cool down.

    Args:
        deployments: Callables of one kind serving the same model, as a list (named by model
            and position, e.g. ``azure/gpt-4o#1``) or a mapping of names to callables. Names
            identify deployments in the cooldown store and in call records; processes
            sharing a Redis store must use the same names.
        strategy: ``"least_busy"`` (default), ``"round_robin"`` or ``"usage_based"``; see
            the module documentation.
        cooldown: When a deployment cools down, and what happens when all do.
        store: Where cooldown state lives: a private in-process store by default; a
            :class:`~fixedmodel.stores.redis_cooldown.RedisCooldownStore` shares it, and
            every strategy's state (rotation, calls in flight, usage) with it.
        key: Name of this group of deployments in the store.

    Returns:
        A callable of the same kind as the deployments. The call's record
        (``with_logging``, ``with_metrics``) names the deployment that answered
        (``served_by``), counts the deployments tried, and lists the error class of each
        failure. When every deployment it tried failed, the last failure is raised (a
        litellm exception, with a note per earlier one); when every deployment is cooling
        down, see :attr:`CooldownPolicy.when_all_cooling`.

    Raises:
        TypeError: A deployment is not callable, the deployments are not all of one kind,
            names are not str, or an argument has the wrong type.
        ValueError: No deployments, ``strategy`` is unknown, or a callable appears twice,
            directly or inside a deployment (the same object; two callables bound to one
            model name are distinct deployments).
    """
    named = _named(deployments)
    if not named:
        msg = "with_load_balancing() needs at least one deployment"
        raise ValueError(msg)
    asynchronous = check_one_kind([f for _, f in named], "with_load_balancing")
    why = "a call tries each deployment once"
    check_once([f for _, f in named], "with_load_balancing", "deployment", why)
    checked = _check_args(strategy, cooldown, store, key)
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        msg = f"with_load_balancing() deployment names must be unique, got {names}"
        raise ValueError(msg)
    built = [Deployment(i, n, f, key) for i, (n, f) in enumerate(named)]
    kind = _AsyncBalanced if asynchronous else _SyncBalanced
    wrapped = kind(built, strategy, cooldown, checked, key).made_by(
        with_load_balancing, dict(named), strategy, cooldown, store=checked, key=key
    )
    return cast("ModelFn", wrapped)
