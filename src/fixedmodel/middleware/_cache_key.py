"""The cache key of a request: a versioned hash of everything that can change the answer.

The key is ``"fixedmodel:cache:v1:" + sha256(canonical JSON)`` of the key format version,
the request kind, the model, the optional namespace and the request parameters as litellm
receives them (the bound defaults merged in, ``extra_params`` flattened). Canonical means
sorted keys, no whitespace, tuples as lists, mappings as objects, a pydantic class as its
JSON schema and a pydantic object as its JSON dump.

Left out, because they do not change the answer or must not be stored: credentials (any
name :func:`fixedmodel._secrets.is_secret` flags, also one level down in ``extra_body`` and
in headers), the transport settings in :data:`EXCLUDED_PARAMS` (timeouts, retry counts,
sessions), per-request tracing headers, bookkeeping (``metadata``) and the streaming
switches. Everything else is in,
provider-specific parameters included: an unknown parameter is assumed to matter.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

from fixedmodel._bind import BOUND_KINDS
from fixedmodel._pydantic import loaded_base_model
from fixedmodel._secrets import is_secret

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "EXCLUDED_PARAMS",
    "KEY_FORMAT_VERSION",
    "KeyMaker",
    "UncacheableRequestError",
]

KEY_FORMAT_VERSION = 1
"""Version of the key layout; raising it makes every older entry unreachable."""

_PREFIX = f"fixedmodel:cache:v{KEY_FORMAT_VERSION}:"
_EXTRA = "extra_params"

EXCLUDED_PARAMS: frozenset[str] = frozenset(
    {
        # How the request travels, not what it asks.
        "timeout",
        "stream_timeout",
        "max_retries",
        "num_retries",
        "shared_session",
        "client",
        # Bookkeeping and cost tracking the provider never sees or answers to.
        "metadata",
        "litellm_metadata",
        "litellm_call_id",
        "litellm_logging_obj",
        "logger_fn",
        "caching",
        "cache",
        "no-log",
        "input_cost_per_token",
        "output_cost_per_token",
        "input_cost_per_second",
        "output_cost_per_second",
        # Only non-streamed calls reach the key; the model is keyed on its own.
        "stream",
        "stream_options",
        "model",
    }
)
"""Request parameters that never enter the key (credentials are left out as well)."""

_kept_names: dict[str, bool] = {}
_schemas: weakref.WeakKeyDictionary[type[BaseModel], dict[str, Any]] = weakref.WeakKeyDictionary()


class UncacheableRequestError(ValueError):
    """A request parameter has no canonical JSON form, so the request cannot be keyed."""


def _kept(name: str) -> bool:
    kept = _kept_names.get(name)
    if kept is None:
        kept = name not in EXCLUDED_PARAMS and not is_secret(name)
        if len(_kept_names) < 4096:  # Parameter names are few; the bound is a safeguard.
            _kept_names[name] = kept
    return kept


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    # Building a JSON schema costs far more than the rest of the key: do it once per class.
    schema = _schemas.get(model)
    if schema is None:
        schema = _schemas[model] = model.model_json_schema()
    return schema


def _canonical(value: object) -> object:
    """Turn what JSON cannot encode directly into its canonical JSON-ready form."""
    if isinstance(value, type):
        return _class_form(value)
    base_model = loaded_base_model()
    if base_model is not None and isinstance(value, base_model):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return dict(cast("Mapping[object, object]", value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("binary data has no canonical JSON form")
    if isinstance(value, Sequence):
        return list(cast("Sequence[object]", value))
    if isinstance(value, Enum):
        return value.value
    msg = f"{_type_name(value)} has no canonical JSON form"
    raise TypeError(msg)


def _type_name(value: object) -> str:
    return type(value).__name__


def _class_form(value: type) -> object:
    base_model = loaded_base_model()
    if base_model is not None and issubclass(value, base_model):
        return {"pydantic_json_schema": _schema(value)}
    msg = f"the class {value.__name__} has no canonical JSON form (only pydantic models do)"
    raise TypeError(msg)


_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_canonical
).encode


_TRANSPORT_HEADERS = frozenset(
    {"user-agent", "traceparent", "tracestate", "baggage", "x-request-id", "x-correlation-id"}
)
_TRANSPORT_HEADER_PREFIXES = ("x-stainless-", "x-datadog-", "x-b3-", "x-amzn-trace", "idempotency")
_SCRUBBED = frozenset({"extra_body", "extra_headers", "headers"})


def _keyed_name(name: object, headers: bool) -> bool:
    if not isinstance(name, str) or is_secret(name):
        return False
    if not headers:
        return True
    lowered = name.lower()
    return lowered not in _TRANSPORT_HEADERS and not lowered.startswith(_TRANSPORT_HEADER_PREFIXES)


def _scrubbed(name: str, value: object) -> object:
    # Headers can change the answer (e.g. anthropic-beta), so they are keyed, but without
    # credentials and without per-request tracing headers that would make every key unique.
    if isinstance(value, Mapping):
        items: Mapping[object, object] = value  # pyright: ignore[reportUnknownVariableType]
        headers = name != "extra_body"
        return {k: v for k, v in items.items() if _keyed_name(k, headers)}
    return value


class KeyMaker:
    """Computes the cache keys of the requests made through one wrapped callable.

    Args:
        innermost: The callable at the bottom of the middleware stack. When it is a bound
            object, its defaults are merged into every request exactly as it merges them
            itself, so two bindings that differ in, say, ``api_base`` never share keys.
        model: The model the callable is bound to, or ``None`` for an unbound fake.
        namespace: A user-chosen label keyed with the model, or ``None``.
    """

    __slots__ = ("_bound", "_defaults", "_head")

    def __init__(self, innermost: object, model: str | None, namespace: str | None) -> None:
        self._bound = innermost if isinstance(innermost, BOUND_KINDS) else None
        self._head = (KEY_FORMAT_VERSION, model, namespace)
        # The keyed part of the bound defaults, for the usual call (no extra_params on either
        # side): whether a name is keyed depends on the name alone, so filtering the defaults
        # once and the call's keywords per call keys the same as filtering their merge.
        self._defaults: dict[str, Any] | None = None
        bound = self._bound
        if bound is not None and not bound._extra:  # pyright: ignore[reportPrivateUsage]
            defaults = bound._defaults  # pyright: ignore[reportPrivateUsage]
            self._defaults = {name: value for name, value in defaults.items() if _kept(name)}

    def key(self, kind: str, kwargs: dict[str, Any]) -> str:
        """Return the key of a request made with ``kwargs`` (the caller's keywords).

        ``kwargs`` is litellm-bound data, hence ``Any``; it is read, never changed.

        Raises:
            UncacheableRequestError: A parameter has no canonical JSON form (the caller
                should then call the model without the cache).
            TypeError: ``model=`` was passed to a bound callable (the same error the call
                itself would raise).
        """
        kept: dict[str, object]
        if self._defaults is not None and _EXTRA not in kwargs and "model" not in kwargs:
            kept = self._defaults.copy()
            for name, value in kwargs.items():
                if _kept(name):
                    kept[name] = value
        else:
            kept = {name: value for name, value in self._arguments(kwargs).items() if _kept(name)}
        for name in _SCRUBBED:
            if name in kept:
                kept[name] = _scrubbed(name, kept[name])
        try:
            text = _encode((*self._head, kind, kept))
        except (TypeError, ValueError) as exc:
            raise UncacheableRequestError(_culprit(kept, exc)) from None
        return _PREFIX + hashlib.sha256(text.encode()).hexdigest()

    def _arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self._bound is not None:
            # The bound object's own merge, so the key sees what litellm will receive.
            # Without the provider hint: it follows from the model, which is keyed anyway,
            # so keys stay those of the request as the caller wrote it.
            return self._bound._arguments(kwargs, hint=False)  # pyright: ignore[reportPrivateUsage]
        extra = kwargs.get(_EXTRA)
        if not isinstance(extra, Mapping):
            return kwargs
        # An unbound callable: flatten the escape hatch the way a bound object does
        # (an explicit keyword wins over the same name inside extra_params).
        merged = {name: value for name, value in kwargs.items() if name != _EXTRA}
        for name, value in extra.items():  # pyright: ignore[reportUnknownVariableType]
            merged.setdefault(str(name), value)  # pyright: ignore[reportUnknownArgumentType]
        return merged


def _culprit(params: Mapping[str, object], error: Exception) -> str:
    """Name the parameter that cannot be encoded, for a useful log message."""
    for name, value in params.items():
        try:
            _encode(value)
        except (TypeError, ValueError) as exc:
            return f"request parameter {name!r} cannot be part of a cache key: {exc}"
    return f"the request cannot be part of a cache key: {error}"
