"""Ray as an engine of batch_on: plain tasks and async actors, on a local Ray on loopback.

The executors are the ones docs/workers.md shows (its "On Ray" code block, run here as
written). The local Ray listens on 127.0.0.1 only: checked from the sockets its processes
hold while it runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import litellm
import pytest

from fixedmodel import (
    RetryPolicy,
    batch_on,
    bind_acompletion,
    fallback_causes,
    with_fallbacks,
    with_retries,
)
from fixedmodel.middleware._errors import retry_after
from fixedmodel.testing.server import Fault, OpenAIServer
from tests.unit.test_exception_pickling import raise_rate_limit

# Starts other interpreters or engines; run at the newest litellm only (see scripts/test.sh).
pytestmark = pytest.mark.heavy

ROOT = Path(__file__).parents[2]

# Read by Ray when it is imported: without it, Ray resolves 127.0.0.1 to the host's address
# and its servers listen on every interface.
_LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _docs_code() -> dict[str, Any]:
    text = (ROOT / "docs" / "workers.md").read_text()
    start = text.index("## On Ray")
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, "no python block in the Ray section of docs/workers.md"
    namespace: dict[str, Any] = {"__name__": "ray_docs"}
    exec(compile(match.group(1), "docs/workers.md", "exec"), namespace)  # the docs' own code
    return namespace


@pytest.fixture(scope="module")
def ray_module() -> Iterator[Any]:
    if "ray" not in sys.modules:
        os.environ.update(_LOOPBACK_ONLY)
    ray = pytest.importorskip("ray")  # a dev dependency: always there in CI
    path = os.pathsep.join([str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    ray.init(
        address="local",
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        num_cpus=1,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, **_LOOPBACK_ONLY}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def _listening_sockets() -> set[tuple[str, str]]:
    """(process name, address) of each socket listening in this process or its descendants."""
    import psutil

    names = {os.getpid(): psutil.Process().name()}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            names[child.pid] = child.name()
    return {
        (names[connection.pid], connection.laddr.ip)
        for connection in psutil.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN and connection.pid in names
    }


def _check_loopback_only() -> None:
    sockets = _listening_sockets()
    assert {"gcs_server", "raylet"} <= {name for name, _ in sockets}  # Ray's servers are seen
    addresses = {address for _, address in sockets}
    assert addresses <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, sockets


def _once(bound: Any) -> Any:
    """One request per call: no retries (the openai SDK would honour Retry-After twice)."""
    return with_retries(bound, RetryPolicy(max_attempts=1))


def _check_batch(executor: Executor, server: OpenAIServer) -> None:
    first = _once(bind_acompletion("openai/first", api_base=server.base_url, api_key="k"))
    second = _once(bind_acompletion("openai/second", api_base=server.base_url, api_key="k"))
    # Only the last model gives retry advice: advice makes with_fallbacks skip a model for
    # that long, which would fail the worker's later items if both gave it.
    server.fault_rule = lambda body: (
        Fault.status(429, retry_after=4 if body["model"] == "second" else None)
        if body["messages"][0]["content"] == "item 3"
        else None
    )
    requests: list[Any] = [
        {"messages": [{"role": "user", "content": f"item {i}"}]} for i in range(8)
    ]
    results = list(batch_on(executor, with_fallbacks(first, second), requests, chunk_size=3))
    assert [result.index for result in results] == list(range(8))
    assert [result.ok for result in results] == [i != 3 for i in range(8)]
    error = results[3].error
    assert isinstance(error, litellm.RateLimitError)
    assert retry_after(error, now=0.0) == 4.0
    assert len(fallback_causes(error)) == 2


def test_ray_tasks_and_async_actors_run_a_batch_on_loopback_only(
    ray_module: Any, server: OpenAIServer
) -> None:
    docs = _docs_code()
    _check_batch(docs["RayTasks"](), server)
    actors = [docs["ChunkRunner"].remote()]  # one more process to import litellm: enough
    _check_batch(docs["RayActors"](actors), server)  # chunks run inside a running loop
    _check_loopback_only()


def test_a_ray_task_raising_a_429_gives_the_429(ray_module: Any) -> None:
    with pytest.raises(litellm.RateLimitError) as caught:
        ray_module.get(ray_module.remote(raise_rate_limit).remote())
    assert caught.value.status_code == 429
    assert (caught.value.model, caught.value.llm_provider) == ("openai/gpt-x", "openai")
    assert retry_after(caught.value, now=0.0) == 7.0
