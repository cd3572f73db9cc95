"""Guard against litellm growing parameters that the Protocols do not know about.

When this fails after a litellm upgrade, add the named parameter to ``CompletionParams`` or
``EmbeddingParams`` (typed), or to the exclusions below with the reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from fixedmodel import CompletionParams, EmbeddingParams
from fixedmodel._litellm import litellm_module

COMPLETION_EXCLUDED = {
    "model": "bound once by the factory",
    "model_list": "a Router-style list of deployments contradicts one bound model",
}
EMBEDDING_EXCLUDED = {
    "model": "bound once by the factory",
    "litellm_call_id": "litellm-internal call bookkeeping",
    "logger_fn": "litellm-internal logging hook",
}


def _litellm_parameters(function: Callable[..., Any]) -> set[str]:
    return {
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
    }


def _completion_declared() -> set[str]:
    return {"messages", "stream", *CompletionParams.__annotations__}


def _embedding_declared() -> set[str]:
    return {"input", *EmbeddingParams.__annotations__}


@pytest.mark.parametrize("name", ["acompletion", "completion"])
def test_completion_protocols_cover_every_litellm_parameter(name: str) -> None:
    accepted = _litellm_parameters(getattr(litellm_module(), name))
    undeclared = sorted(accepted - _completion_declared() - set(COMPLETION_EXCLUDED))
    assert not undeclared, f"litellm.{name} accepts parameters the Protocol lacks: {undeclared}"


def test_embedding_protocols_cover_every_litellm_parameter() -> None:
    # litellm.aembedding is declared as (*args, **kwargs) and forwards to embedding.
    accepted = _litellm_parameters(litellm_module().embedding)
    undeclared = sorted(accepted - _embedding_declared() - set(EMBEDDING_EXCLUDED))
    assert not undeclared, f"litellm.embedding accepts parameters the Protocol lacks: {undeclared}"


def test_exclusions_are_still_litellm_parameters() -> None:
    # A stale exclusion would hide nothing and mislead the reader.
    litellm = litellm_module()
    assert set(COMPLETION_EXCLUDED) <= _litellm_parameters(litellm.acompletion)
    assert set(EMBEDDING_EXCLUDED) <= _litellm_parameters(litellm.embedding)


def test_the_guard_notices_a_missing_parameter() -> None:
    def future_acompletion(model: str, messages: list[object], new_knob: int = 0) -> None: ...

    accepted = _litellm_parameters(future_acompletion)
    assert accepted - _completion_declared() - set(COMPLETION_EXCLUDED) == {"new_knob"}
