"""Every layer travels to another process as the call that made it, or refuses clearly."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fixedmodel import (
    Budget,
    CooldownPolicy,
    DiskCacheStore,
    InMemoryMetrics,
    RetryPolicy,
    bind_acompletion,
    bind_completion,
    responses,
    with_budget,
    with_cache,
    with_fallbacks,
    with_load_balancing,
    with_logging,
    with_metrics,
    with_retries,
    with_tracing,
)

MESSAGES = [{"role": "user", "content": "Hi"}]


def _sdk_tracer() -> object:
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider()


def _round_trip(obj: object) -> object:
    return pickle.loads(pickle.dumps(obj))


def test_every_stateless_layer_round_trips_with_its_configuration(tmp_path: Path) -> None:
    primary = bind_completion("openai/gpt-4o-mini", mock_response="one", temperature=0.1)
    backup = bind_completion("openai/gpt-4o", mock_response="two")
    policy = RetryPolicy(max_attempts=7, initial_wait=0.01)
    stack = with_logging(
        with_metrics(
            with_cache(
                with_retries(with_fallbacks(primary, backup), policy),
                DiskCacheStore(tmp_path),
                ttl=60.0,
                namespace="ns",
            )
        ),
        logger=logging.getLogger("pickled"),
        level=logging.DEBUG,
    )
    copy = _round_trip(stack)
    assert repr(copy) == repr(stack)
    assert copy.model == "openai/gpt-4o-mini"
    assert responses.text(copy(messages=MESSAGES)) == "one"


def test_a_traced_stack_without_providers_is_traced_again_where_it_lands() -> None:
    traced = with_tracing(bind_acompletion("openai/gpt-4o-mini", mock_response="x"))
    assert repr(_round_trip(traced)) == repr(traced)


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda b: with_cache(b), r"DiskCacheStore\(path\) or RedisCacheStore\(url\)"),
        (lambda b: with_metrics(b, InMemoryMetrics()), r"default_metrics"),
        (lambda b: with_budget(b, Budget(max_requests=3)), r"RedisBudgetStore\(url\)"),
        (lambda b: with_load_balancing([b]), r"RedisCooldownStore\(url\)"),
        (lambda b: with_tracing(b, tracer_provider=_sdk_tracer()), r"global\s+providers"),
    ],
    ids=["memory cache", "in-memory metrics", "memory budget", "memory cooldowns", "providers"],
)
def test_in_process_state_refuses_naming_the_shared_alternative(build: object, named: str) -> None:
    bound = bind_completion("openai/gpt-4o-mini", mock_response="x")
    with pytest.raises(TypeError, match=named):
        pickle.dumps(build(bound))  # type: ignore[operator]


@pytest.mark.heavy  # Starts another interpreter; run at the newest litellm only.
def test_a_pickled_stack_works_in_a_fresh_interpreter(tmp_path: Path) -> None:
    stack = with_retries(
        with_cache(
            bind_completion("openai/gpt-4o-mini", mock_response="from the pickle"),
            DiskCacheStore(tmp_path / "cache"),
        )
    )
    payload = tmp_path / "stack.pickle"
    payload.write_bytes(pickle.dumps(stack))
    script = textwrap.dedent(
        f"""
        import pickle
        from fixedmodel import responses
        stack = pickle.loads(open({str(payload)!r}, "rb").read())
        print(responses.text(stack(messages=[{{"role": "user", "content": "Hi"}}])))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from the pickle"
    assert CooldownPolicy() == _round_trip(CooldownPolicy())
