"""litellm's global retry settings do not add requests under fixedmodel's layers.

An application may set ``litellm.num_retries``; litellm's sync completion then retries every
failed request that many times itself (it reads ``kwargs.get("num_retries") or
litellm.num_retries``, so the ``0`` a layer passes is replaced). Each layer here owns its
attempts: N attempts are N requests at the server, sync and async, completion and embedding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import litellm
import pytest

from fixedmodel import (
    RateLimit,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    bind_embedding,
    with_fallbacks,
    with_load_balancing,
    with_rate_limit,
)
from fixedmodel.middleware import rate_limit
from fixedmodel.middleware.retries import RetryPolicy, with_retries
from tests.support.openai_server import Fault, OpenAIServer

FAST = RetryPolicy(initial_wait=0.01, max_wait=0.02, max_attempts=2)
MODELS = {"completion": "openai/test-model", "embedding": "openai/text-embedding-3-small"}
PATHS = {"completion": "/chat/completions", "embedding": "/embeddings"}
BINDERS: dict[tuple[str, bool], Callable[..., Any]] = {
    ("completion", False): bind_completion,
    ("completion", True): bind_acompletion,
    ("embedding", False): bind_embedding,
    ("embedding", True): bind_aembedding,
}
CASES = [(kind, asynchronous) for kind in MODELS for asynchronous in (False, True)]
IDS = [f"{kind}-{'async' if asynchronous else 'sync'}" for kind, asynchronous in CASES]


@pytest.fixture(autouse=True)
def global_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Retry globals as an application sets them; restored after the test.

    ``num_retries`` drives litellm's own completion retries; ``DEFAULT_MAX_RETRIES`` is what
    the OpenAI embedding path puts in place of a false ``max_retries``.
    """
    monkeypatch.setattr(litellm, "num_retries", 3)
    monkeypatch.setattr(litellm, "DEFAULT_MAX_RETRIES", 4)
    yield


def _bind(server: OpenAIServer, kind: str, asynchronous: bool, model: str | None = None) -> Any:
    binder = BINDERS[kind, asynchronous]
    return binder(model or MODELS[kind], api_base=server.base_url, api_key="sk-x")


def _call(function: Any, kind: str, asynchronous: bool, **extra: Any) -> Any:
    arguments: dict[str, Any] = (
        {"messages": [{"role": "user", "content": "Hello?"}]}
        if kind == "completion"
        else {"input": ["Hello?"]}
    )
    arguments.update(extra)
    if asynchronous:
        return asyncio.run(function(**arguments))
    return function(**arguments)


def _requests_for(server: OpenAIServer, kind: str, model: str) -> int:
    name = model.removeprefix("openai/")
    return sum(
        1
        for request in server.requests
        if request.path.endswith(PATHS[kind]) and request.body.get("model") == name
    )


@pytest.mark.parametrize(("kind", "asynchronous"), CASES, ids=IDS)
@pytest.mark.parametrize("status", [500, 429])
def test_with_retries_sends_one_request_per_attempt(
    server: OpenAIServer, kind: str, asynchronous: bool, status: int
) -> None:
    server.enqueue(*[Fault.status(status) for _ in range(6)])
    with pytest.raises(litellm.InternalServerError if status == 500 else litellm.RateLimitError):
        _call(with_retries(_bind(server, kind, asynchronous), FAST), kind, asynchronous)
    assert server.request_count(PATHS[kind]) == FAST.max_attempts


@pytest.mark.parametrize(("kind", "asynchronous"), CASES, ids=IDS)
def test_with_fallbacks_asks_the_primary_once(
    server: OpenAIServer, kind: str, asynchronous: bool
) -> None:
    server.enqueue(Fault.status(500))
    backup_model = "openai/backup-model"
    chain = with_fallbacks(
        _bind(server, kind, asynchronous), _bind(server, kind, asynchronous, backup_model)
    )
    _call(chain, kind, asynchronous)
    assert _requests_for(server, kind, MODELS[kind]) == 1
    assert _requests_for(server, kind, backup_model) == 1


@pytest.mark.parametrize(("kind", "asynchronous"), CASES, ids=IDS)
def test_one_deployment_balancer_sends_one_request(
    server: OpenAIServer, kind: str, asynchronous: bool
) -> None:
    server.enqueue(*[Fault.status(500) for _ in range(6)])
    with pytest.raises(litellm.InternalServerError):
        _call(with_load_balancing([_bind(server, kind, asynchronous)]), kind, asynchronous)
    assert server.request_count(PATHS[kind]) == 1


@pytest.mark.parametrize(("kind", "asynchronous"), CASES, ids=IDS)
def test_rate_limit_sends_one_request_per_attempt(
    server: OpenAIServer, kind: str, asynchronous: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_async_wait(_seconds: float) -> None:
        return None

    monkeypatch.setattr(rate_limit, "_sync_sleep", lambda _seconds: None)
    monkeypatch.setattr(rate_limit, "_async_sleep", no_async_wait)
    server.enqueue(*[Fault.status(500) for _ in range(6)])
    limited = with_rate_limit(_bind(server, kind, asynchronous), RateLimit(requests=1000))
    with pytest.raises(litellm.InternalServerError):
        # The layer makes the one retry the call asks for, each attempt one request.
        _call(limited, kind, asynchronous, max_retries=1)
    assert server.request_count(PATHS[kind]) == 2


@pytest.mark.parametrize(("kind", "asynchronous"), CASES, ids=IDS)
def test_the_retry_switch_is_not_sent_to_the_provider(
    server: OpenAIServer, kind: str, asynchronous: bool
) -> None:
    _call(with_retries(_bind(server, kind, asynchronous), FAST), kind, asynchronous)
    (request,) = server.requests
    assert not {"retry_policy", "num_retries", "max_retries"} & set(request.body)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_global_fallbacks_are_refused_before_any_request(
    server: OpenAIServer, asynchronous: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # litellm reads ``kwargs.get("fallbacks") or litellm.model_fallbacks``: no keyword turns
    # the global off, and its runner sent a failing call to other models unseen (recursing).
    monkeypatch.setattr(litellm, "model_fallbacks", ["openai/other-model"])
    server.enqueue(Fault.status(500))
    backup_model = "openai/backup-model"
    chain = with_fallbacks(
        _bind(server, "completion", asynchronous),
        _bind(server, "completion", asynchronous, backup_model),
    )
    with pytest.raises(RuntimeError, match=r"litellm\.model_fallbacks is set"):
        _call(chain, "completion", asynchronous)
    assert server.requests == []
    monkeypatch.setattr(litellm, "model_fallbacks", None)
    _call(chain, "completion", asynchronous)  # Unset: the chain works as usual.
    assert _requests_for(server, "completion", MODELS["completion"]) == 1
    assert _requests_for(server, "completion", backup_model) == 1
    # Embeddings never read the global: they are not refused.
    monkeypatch.setattr(litellm, "model_fallbacks", ["openai/other-model"])
    _call(_bind(server, "embedding", asynchronous), "embedding", asynchronous)
    assert server.request_count(PATHS["embedding"]) == 1
