"""RedisCooldownStore and shared balancer state in the field, against a real redis-server."""

from __future__ import annotations

import time

import pytest

from fixedmodel import CooldownPolicy, RedisCooldownStore
from tests.integration import redis_server as servers
from tests.integration.redis_server import redis_server

__all__ = ["redis_server"]  # Fixtures, used by name.


def test_slower_failures_while_open_keep_the_deadline_in_redis(
    redis_server: servers.RedisServer,
) -> None:
    policy = CooldownPolicy(failures=3, cooldown=5.0)
    namespace = servers.unique_namespace("latest")
    with RedisCooldownStore(redis_server.url, namespace=namespace) as store:
        store.failed("d", policy, probe=False, cool_for=0.2)
        for _ in range(3):
            store.failed("d", policy, probe=False, cool_for=None)
        time.sleep(0.3)  # Past the Retry-After.
        entry = store.enter("d", policy)
        assert not entry.granted
        assert 4.0 < entry.retry_in <= 5.0


@pytest.mark.parametrize("probe", [False, True], ids=["a call", "the probe"])
def test_a_shorter_retry_after_never_shortens_a_cooldown_in_redis(
    redis_server: servers.RedisServer, probe: bool
) -> None:
    policy = CooldownPolicy(failures=1, cooldown=5.0)
    namespace = servers.unique_namespace("shorter")
    with RedisCooldownStore(redis_server.url, namespace=namespace) as store:
        store.failed("d", policy, probe=False, cool_for=None)
        store.failed("d", policy, probe=probe, cool_for=0.1)
        time.sleep(0.2)
        entry = store.enter("d", policy)
        assert not entry.granted
        assert 4.0 < entry.retry_in <= 5.0


@pytest.mark.parametrize(
    "step",
    [-1200.0, -5.0, 1200.0, 5.0],
    ids=["back 20 min", "back 5 s", "forward 20 min", "forward 5 s"],
)
def test_a_clock_step_neither_ends_nor_stretches_a_cooldown(
    redis_server: servers.RedisServer, step: float
) -> None:
    policy = CooldownPolicy(failures=1, cooldown=3.0)
    namespace = servers.unique_namespace("cdstep")
    with (
        RedisCooldownStore(redis_server.url, namespace=namespace) as first,
        RedisCooldownStore(redis_server.url, namespace=namespace) as second,
    ):
        first.failed("d", policy, probe=False, cool_for=None)
        assert not second.enter("d", policy).granted
        for store in (first, second):
            store._clock.skew = int(step * 1_000_000)  # The server's clock steps.
        for store in (first, second):
            entry = store.enter("d", policy)
            assert not entry.granted  # Stepped forward: the cooldown did not end.
            # Stepped back: not kept out for the step. Forward: the script allows one second
            # for a request to arrive, as the limiter's does.
            assert 1.5 < entry.retry_in <= 3.0
        first.failed("d", policy, probe=False, cool_for=1.0)  # Never shortens, after a step.
        entry = second.enter("d", policy)
        assert not entry.granted and entry.retry_in > 1.5
