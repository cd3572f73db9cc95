"""Pricing a call for a budget: its worst case before, its real cost after.

The prices are litellm's (``litellm.get_model_info``, ``litellm.cost_per_token``); nothing
here keeps its own price list.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from fixedmodel._litellm import litellm_module
from fixedmodel._pydantic import read_attribute
from fixedmodel.middleware._call import request_kind
from fixedmodel.stores._budget_store import NANOS_PER_USD

__all__ = [
    "Prices",
    "highest_prices",
    "last_usage",
    "nanos",
    "prices_of",
    "prompt_bound",
    "real_cost",
    "reported_cost",
    "requested_output",
    "response_text",
    "served_model",
    "usage_tokens",
    "warn_unpriced",
]

LOGGER = logging.getLogger("fixedmodel.routing")


@dataclass(frozen=True)
class Prices:
    """Highest USD per input and output token litellm lists for a model (None: unknown)."""

    input: float
    output: float
    max_output_tokens: int | None


_prices: dict[str, Prices | None] = {}
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _highest(info: dict[str, Any], prefixes: tuple[str, ...]) -> float | None:
    found = [
        float(value)
        for name, value in info.items()
        if name.startswith(prefixes)
        and "batches" not in name
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ]
    return max(found) if found else None


def prices_of(model: str | None) -> Prices | None:
    """The prices of ``model`` from litellm's price list, looked up once per model."""
    if model is None:
        return None
    if model in _prices:
        return _prices[model]
    try:
        # litellm boundary: get_model_info returns a TypedDict litellm does not export typed.
        info: dict[str, Any] = dict(litellm_module().get_model_info(model))
    except Exception:  # litellm raises various errors for models it does not know
        info = {}
    given_input = info.get("input_cost_per_token")
    prices: Prices | None = None
    if isinstance(given_input, (int, float)):
        highest_input = _highest(info, ("input_cost_per_token", "cache_creation_input_token_cost"))
        highest_output = _highest(
            info, ("output_cost_per_token", "output_cost_per_reasoning_token")
        )
        limit = info.get("max_output_tokens") or info.get("max_tokens")
        prices = Prices(
            highest_input or 0.0,
            highest_output or 0.0,
            limit if isinstance(limit, int) and limit > 0 else None,
        )
    _prices[model] = prices
    return prices


def highest_prices(models: Sequence[str | None]) -> Prices | None:
    """The highest prices and output window over ``models`` (the models a stack may call:
    a chain's or a balancer's members), so that a worst case bounds whichever answers.

    None when litellm prices none of them.
    """
    known = [prices for prices in map(prices_of, models) if prices is not None]
    if len(known) < 2:
        return known[0] if known else None
    limits = [p.max_output_tokens for p in known if p.max_output_tokens is not None]
    return Prices(
        max(p.input for p in known),
        max(p.output for p in known),
        max(limits) if limits else None,
    )


def served_model(answer: object, default: str | None, members: Collection[str] = ()) -> str | None:
    """The model that produced ``answer`` (a response or a stream), as litellm prices it.

    Under a fallback chain or a balancer that is not the stack's first model. Read from
    litellm's ``_hidden_params["litellm_model_name"]``, else from its ``model`` (and a
    stream's ``custom_llm_provider``); else ``default``. A name that is one of ``members``
    (the models the stack may call) is that model, priced or not; any other name litellm
    has no price for counts as unknown (``default``).
    """
    if answer is None:
        return default
    names: list[object] = []
    hidden = read_attribute(answer, "_hidden_params")
    if isinstance(hidden, dict):
        names.append(cast("dict[str, object]", hidden).get("litellm_model_name"))
    model, provider = read_attribute(answer, "model"), None
    if isinstance(answer, litellm_module().CustomStreamWrapper):
        provider = read_attribute(answer, "custom_llm_provider")
    if isinstance(model, str) and isinstance(provider, str) and "/" not in model:
        model = f"{provider}/{model}"
    names.append(model)
    for name in names:
        if (
            isinstance(name, str)
            and name
            and (name == default or name in members or prices_of(name) is not None)
        ):
            return name
    return default


def warn_unpriced(model: str | None) -> None:
    name = model or "<a callable without a model>"
    with _warned_lock:
        if name in _warned:
            return
        _warned.add(name)
    LOGGER.warning(
        "with_budget: litellm has no price for %s; its calls count toward max_tokens and "
        "max_requests only, not max_cost (Budget(unknown_price='refuse') refuses them)",
        name,
    )


# Tokens a chat message costs beyond its text, and a conversation beyond its messages:
# above what litellm.token_counter adds (OpenAI's rule: 3 per message, 1 for a name, 3 to
# prime the answer).
_PER_MESSAGE = 8
_PER_CONVERSATION = 8


def prompt_bound(request: dict[str, Any]) -> int | None:
    """An upper bound of a text-only prompt's tokens, from its UTF-8 bytes; None otherwise.

    Every token of a byte-level BPE tokenizer (OpenAI's, Anthropic's, Llama 3's) or of a
    SentencePiece one with byte fallback covers at least one byte, so the bytes of a text
    bound its tokens. This costs a microsecond where counting costs tens; the layer counts
    exactly when the bound would be refused. Images, audio, files, tool definitions and
    tool calls are priced by their own rules: for them there is no bound here (``None``).
    """
    if request_kind(request) == "embedding":
        given = request.get("input")
        if isinstance(given, str):
            return _utf8_length(given) + 1
        if isinstance(given, list) and all(isinstance(item, str) for item in given):  # pyright: ignore[reportUnknownVariableType]
            texts: list[str] = given  # pyright: ignore[reportUnknownVariableType]
            return sum(_utf8_length(text) + 1 for text in texts)
        return None
    messages = request.get("messages")
    if request.get("tools") or request.get("functions") or not isinstance(messages, list):
        return None
    total = _PER_CONVERSATION
    for message in messages:  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(message, dict):
            return None
        for name, value in message.items():  # pyright: ignore[reportUnknownVariableType]
            if name not in ("role", "content", "name"):
                return None
            if value is None:
                continue
            if not isinstance(value, str):
                return None
            total += len(value.encode("utf-8", "surrogatepass"))  # _utf8_length, inlined
        total += _PER_MESSAGE
    return total


def _utf8_length(text: str) -> int:
    # A lone surrogate (half of an emoji cut off) has no UTF-8 form; counted as the 3 bytes
    # "surrogatepass" gives it, the bound holds and the layer does not raise.
    return len(text.encode("utf-8", "surrogatepass"))


def requested_output(request: dict[str, Any], default: int) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return default


def nanos(usd: float) -> int:
    return math.ceil(usd * NANOS_PER_USD)


def _count(usage: object, name: str) -> int:
    value: object = (
        cast("Mapping[str, object]", usage).get(name)
        if isinstance(usage, Mapping)
        else getattr(usage, name, None)
    )
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _litellm_usage(usage: object, prompt: int, completion: int) -> object:
    """``usage`` as litellm's ``Usage``, which ``cost_per_token`` reads fields of.

    litellm's pricing reads ``prompt_tokens_details`` and others from ``usage_object``
    (1.110: an AttributeError on fixedmodel's ``StreamUsage`` or a plain dict), so any
    other usage is rebuilt from its counts; a litellm ``Usage`` keeps its details (cached
    and reasoning tokens, priced apart).
    """
    usage_class: object = getattr(litellm_module(), "Usage", None)
    if isinstance(usage_class, type) and isinstance(usage, usage_class):
        return usage
    if not callable(usage_class):
        return None
    return usage_class(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def reported_cost(result: object) -> float | None:
    """The cost (USD) litellm priced ``result`` at, in its ``_hidden_params["response_cost"]``
    (for the model that answered), or None when it carries none."""
    hidden = read_attribute(result, "_hidden_params") if result is not None else None
    if isinstance(hidden, dict):
        cost: object = hidden.get("response_cost")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            return float(cost)
    return None


def real_cost(model: str | None, result: object, usage: object) -> float | None:
    """What litellm prices a finished call at (USD), or None when it cannot.

    Args:
        model: The bound model, as litellm names it.
        result: The response (its ``_hidden_params["response_cost"]`` wins), or None.
        usage: The usage to price: litellm's ``Usage``, fixedmodel's ``StreamUsage`` or
            anything with ``prompt_tokens``/``completion_tokens`` (attributes or keys).

    Returns:
        The cost in USD, or None when litellm has no price or cannot compute it.
    """
    reported = reported_cost(result)
    if reported is not None:
        return reported
    if model is None or usage is None or prices_of(model) is None:
        return None
    prompt = _count(usage, "prompt_tokens")
    completion = _count(usage, "completion_tokens")
    try:
        usage_object = _litellm_usage(usage, prompt, completion)
    except Exception:  # litellm's Usage refused the counts: price the counts alone
        usage_object = None
    try:
        # litellm boundary: cost_per_token returns (prompt USD, completion USD), untyped.
        priced: Any = litellm_module().cost_per_token(
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            usage_object=usage_object,
        )
        return float(priced[0]) + float(priced[1])
    except Exception:  # litellm raises various errors on prices it cannot compute
        return None


def usage_tokens(usage: object) -> int | None:
    total = getattr(usage, "total_tokens", None)
    if isinstance(total, int) and total > 0:
        return total
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    parts = [p for p in (prompt, completion) if isinstance(p, int)]
    if isinstance(total, int) and total > 0:
        return total
    return sum(parts) if parts else None


def last_usage(stream: object) -> object:
    chunks: object = getattr(stream, "chunks", None)
    if isinstance(chunks, list):
        listed: list[object] = chunks  # pyright: ignore[reportUnknownVariableType]
        for chunk in reversed(listed):
            usage: object = getattr(chunk, "usage", None)
            if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
                return usage
    return None


def response_text(result: object) -> str:
    """The text of an answer's choices (content, reasoning, tool calls), for an estimate."""
    pieces: list[str] = []
    choices = read_attribute(result, "choices")
    if not isinstance(choices, list):
        return ""
    for choice in cast("list[object]", choices):
        message = read_attribute(choice, "message")
        pieces += _texts(message, "reasoning_content", "content")
        calls = read_attribute(message, "tool_calls")
        if isinstance(calls, list):
            for call in cast("list[object]", calls):
                pieces += _texts(read_attribute(call, "function"), "name", "arguments")
    return "".join(pieces)


def _texts(item: object, *names: str) -> list[str]:
    """The attributes ``names`` of ``item`` that are text, in order."""
    values = [read_attribute(item, name) for name in names]
    return [value for value in values if isinstance(value, str)]
