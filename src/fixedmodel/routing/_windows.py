"""Whether a request fits a model's context window, as litellm's model map knows it.

``with_fallbacks`` asks this before it sends a request to a fallback: a model whose window
cannot hold the prompt plus the answer it may write would only fail with a context-window
error. The request measured is the one litellm will receive (bound defaults merged), its
prompt estimated as the rate limiter does (``middleware._tokens``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fixedmodel._litellm import litellm_module
from fixedmodel.middleware._call import Wrapper, request_kind, request_reader
from fixedmodel.middleware._tokens import estimate_tokens
from fixedmodel.routing._pricing import prompt_bound, requested_output

__all__ = ["Fit"]


def _plain_model(function: object) -> str | None:
    """The model of a callable that is one model (no routing layer in its stack), or None."""
    while isinstance(function, Wrapper):
        if hasattr(function, "callables") or hasattr(function, "deployments"):
            return None  # A chain or a balancer: its own layer judges its callables.
        function = function._inner  # pyright: ignore[reportPrivateUsage]
    model: object = getattr(function, "model", None)
    return model if isinstance(model, str) else None


def _context_window(model: str) -> int | None:
    """The tokens ``model`` takes (prompt and answer), or None when litellm does not know."""
    litellm = litellm_module()
    known: dict[str, Any] = litellm.model_cost
    if model not in known and model.split("/", 1)[-1] not in known:
        return None  # Not asked: litellm prints a provider banner for unknown names.
    try:
        info: Any = litellm.get_model_info(model)
    except Exception:  # an unmapped model simply has no known window
        return None
    for field in ("max_input_tokens", "max_tokens"):
        value: object = info.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class Fit:
    """Whether requests fit one routed callable's model; its window is looked up once."""

    __slots__ = ("_looked_up", "_model", "_read", "_window")

    def __init__(self, function: object) -> None:
        self._model = _plain_model(function)
        self._read: Callable[[dict[str, Any]], dict[str, Any]] = request_reader(function)
        self._window: int | None = None
        self._looked_up = self._model is None

    def misfit(self, arguments: dict[str, Any]) -> str | None:
        """Why the call with keywords ``arguments`` cannot fit, or None when it may.

        It cannot when litellm knows the model's window (``max_input_tokens``, else
        ``max_tokens``) and the prompt's estimated tokens plus ``max_tokens`` (or
        ``max_completion_tokens``) exceed it; for an embedding, when one input exceeds it.
        Unknown models, callables that route themselves, and requests that cannot be counted
        may always be tried.
        """
        if not self._looked_up:
            self._window = _context_window(self._model) if self._model is not None else None
            self._looked_up = True
        window = self._window
        if window is None:
            return None
        request = self._read(arguments)
        if request_kind(request) == "embedding":
            return self._misfit_inputs(request, window)
        request.pop("n", None)  # Each choice has the whole window to itself.
        bound = prompt_bound(request)  # Never below the count, and far cheaper than counting.
        if bound is not None and bound + requested_output(request, 0) <= window:
            return None
        try:
            needed = estimate_tokens(request, self._model, 0)
        except Exception:  # a request it cannot count is the callable's to judge
            return None
        if needed <= window:
            return None
        return f"needs about {needed} tokens (prompt and max_tokens), its window is {window}"

    def _misfit_inputs(self, request: dict[str, Any], window: int) -> str | None:
        """Why an embedding request cannot fit: an input longer than the window.

        The window of an embedding model bounds each input, not their sum (OpenAI: 8,192
        tokens per input, many inputs per request), so the longest input is measured.
        """
        given: object = request.get("input")
        items: list[object] = [given]
        if isinstance(given, list) and not all(isinstance(i, int) for i in given):  # pyright: ignore[reportUnknownVariableType]
            items = list(given)  # pyright: ignore[reportUnknownArgumentType]  # one per input
        longest = 0
        for item in items:
            one = {"input": item}
            bound = prompt_bound(one)
            if bound is not None and bound <= window:
                continue
            try:
                longest = max(longest, estimate_tokens(one, self._model, 0))
            except Exception:  # an input it cannot count is the callable's to judge
                return None
        if longest <= window:
            return None
        return f"has an input of about {longest} tokens, its window is {window} per input"
