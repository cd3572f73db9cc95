"""How many tokens a call costs: estimated before it is made, read from ``usage`` after.

The estimate uses ``litellm.token_counter`` with the bound model's tokenizer (litellm's
default tokenizer for models it does not know). When litellm cannot count some content, it
falls back to about one token per four characters rather than failing the call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fixedmodel._litellm import litellm_module
from fixedmodel._pydantic import read_attribute
from fixedmodel.middleware._call import request_kind

__all__ = ["estimate_tokens", "used_tokens", "warm_tokenizer"]


def _rough_tokens(value: object) -> int:
    return len(repr(value)) // 4 + 1


def _count(model: str, **arguments: object) -> int:
    try:
        # litellm boundary: token_counter is untyped (Any) through the lazily imported module.
        counted: Any = litellm_module().token_counter(model=model, **arguments)
        return int(counted)
    except Exception:  # litellm raises various errors on content it cannot tokenize
        return _rough_tokens(arguments)


def warm_tokenizer(model: str | None) -> None:
    """Load the tokenizer of ``model`` now, so that the first estimate does not stall a loop.

    The first load takes a noticeable fraction of a second.
    """
    _count(model or "", text="warm-up")


def _sequence(value: object) -> Sequence[object] | None:
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items: Sequence[object] = value  # pyright: ignore[reportUnknownVariableType]
        return items
    return None


def _input_tokens(value: object, model: str) -> int:
    if isinstance(value, str):
        return _count(model, text=value)
    items = _sequence(value)
    if not items:
        return _rough_tokens(value)
    if all(isinstance(item, str) for item in items):
        return _count(model, text=list(items))
    # Pre-tokenised input: one int per token, or one sequence of ints per text.
    return sum(len(part) if (part := _sequence(item)) is not None else 1 for item in items)


def _count_limit(*values: object, default: int) -> int:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return default


def estimate_tokens(
    kwargs: Mapping[str, object], model: str | None, assumed_completion_tokens: int
) -> int:
    """Estimate the tokens a call will use, before it is made.

    Args:
        kwargs: The call's keyword arguments.
        model: The bound model, for its tokenizer; litellm's default tokenizer when ``None``.
        assumed_completion_tokens: Completion tokens per choice when the call sets neither
            ``max_completion_tokens`` nor ``max_tokens``.

    Returns:
        For an embedding, the tokens of the input. For a completion, the tokens of the
        messages (and tools) plus ``n`` times the completion tokens the call allows.
    """
    name = model or ""
    if request_kind(dict(kwargs)) == "embedding":
        return _input_tokens(kwargs.get("input"), name)
    messages, tools = _sequence(kwargs.get("messages")), _sequence(kwargs.get("tools"))
    prompt = _count(
        name,
        messages=list(messages) if messages is not None else kwargs.get("messages"),
        tools=list(tools) if tools else None,
    )
    completion = _count_limit(
        kwargs.get("max_completion_tokens"),
        kwargs.get("max_tokens"),
        default=assumed_completion_tokens,
    )
    return prompt + _count_limit(kwargs.get("n"), default=1) * completion


def used_tokens(kwargs: Mapping[str, object], result: object) -> int | None:
    """Return the tokens a finished call used, from its ``usage``; ``None`` if unknown.

    Streams are not read (their usage arrives with the last chunk), so they keep the estimate.
    A ``total_tokens`` of 0 next to a positive prompt count (litellm's mocked embeddings)
    counts as the sum of the parts.
    """
    if kwargs.get("stream"):
        return None
    # litellm boundary: ``usage`` is not declared on the response types.
    usage = read_attribute(result, "usage")
    if usage is None:
        return None
    total = read_attribute(usage, "total_tokens")
    if isinstance(total, int) and total > 0:
        return total
    parts = [getattr(usage, name, None) for name in ("prompt_tokens", "completion_tokens")]
    counted = [part for part in parts if isinstance(part, int)]
    if counted:
        return sum(counted)
    return total if isinstance(total, int) else None
