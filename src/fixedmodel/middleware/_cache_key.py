"""The cache key of a request: a versioned hash of everything that can change the answer.

The key is ``"fixedmodel:cache:v1:" + sha256(canonical JSON)`` of the key format version,
the request kind, the model, the optional namespace and the request parameters as litellm
receives them (the bound defaults merged in, ``extra_params`` flattened). Canonical means
sorted keys, no whitespace, tuples as lists, mappings as objects, a pydantic class as its
JSON schema and a pydantic object as its JSON dump.

Left out, because they do not change the answer or must not be stored: credentials (any
name :func:`fixedmodel._secrets.is_secret` flags, also one level down in ``extra_body`` and
in headers; a callable credential such as ``azure_ad_token_provider`` included), the
transport settings in :data:`EXCLUDED_PARAMS` (timeouts, retry counts, sessions), per-request
tracing headers, bookkeeping (``metadata``) and the streaming switches. Everything else is
in, provider-specific parameters included: an unknown parameter is assumed to matter.

Single flight needs more than the cache key: callers may wait for one another's call only
when they would send the same request, credentials and transport included (a bad key or a
short timeout must not fail the caller that had a good one). :func:`flight_key` adds a hash
of those left-out values, kept in memory only.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import weakref
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

from fixedmodel._pydantic import loaded_base_model
from fixedmodel._secrets import is_secret
from fixedmodel.middleware._call import request_reader

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "EXCLUDED_PARAMS",
    "KEY_FORMAT_VERSION",
    "KeyMaker",
    "UncacheableRequestError",
    "flight_key",
]

KEY_FORMAT_VERSION = 1
"""Version of the key layout; raising it makes every older entry unreachable."""

_PREFIX = f"fixedmodel:cache:v{KEY_FORMAT_VERSION}:"

# How the request travels, not what it asks.
_TRANSPORT_PARAMS = frozenset(
    {
        "timeout",
        "stream_timeout",
        "max_retries",
        "num_retries",
        "retry_policy",
        "shared_session",
        "client",
    }
)

EXCLUDED_PARAMS: frozenset[str] = _TRANSPORT_PARAMS | frozenset(
    {
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

# Parameter name -> (in the cache key, in the flight key only).
_names: dict[str, tuple[bool, bool]] = {}
_schemas: weakref.WeakKeyDictionary[type[BaseModel], dict[str, Any]] = weakref.WeakKeyDictionary()


class UncacheableRequestError(ValueError):
    """A request parameter has no canonical JSON form, so the request cannot be keyed.

    Attributes:
        parameter: The name of that parameter, when one could be singled out.
    """

    def __init__(self, message: str, parameter: str | None) -> None:
        super().__init__(message)
        self.parameter = parameter

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt with both arguments, whether or not this module was imported before
        # fixedmodel registered its exceptions for pickling (a worker sends it back).
        return (type(self), (str(self), self.parameter), self.__dict__)


def _classify(name: str) -> tuple[bool, bool]:
    found = _names.get(name)
    if found is None:
        secret = is_secret(name)
        found = (name not in EXCLUDED_PARAMS and not secret, secret or name in _TRANSPORT_PARAMS)
        if len(_names) < 4096:  # Parameter names are few; the bound is a safeguard.
            _names[name] = found
    return found


def _kept(name: str) -> bool:
    """Whether ``name`` is part of the cache key."""
    return _classify(name)[0]


def _private(name: str) -> bool:
    """Whether ``name`` is a credential or transport setting (in the flight key only)."""
    return _classify(name)[1]


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

    __slots__ = ("_head", "read")

    def __init__(self, innermost: object, model: str | None, namespace: str | None) -> None:
        self._head = (KEY_FORMAT_VERSION, model, namespace)
        # What litellm will receive for a call's keywords (bound defaults and extra_params
        # merged, None meaning "not given"): the key describes that request.
        self.read: Callable[[dict[str, Any]], dict[str, Any]] = request_reader(innermost)

    @property
    def namespace(self) -> str | None:
        """The user-chosen label keyed with the model, or ``None``."""
        namespace: str | None = self._head[2]
        return namespace

    def key(self, kind: str, kwargs: dict[str, Any]) -> str:
        """Return the key of a request made with ``kwargs`` (the caller's keywords).

        ``kwargs`` is litellm-bound data, hence ``Any``; it is read, never changed.

        Raises:
            UncacheableRequestError: A parameter has no canonical JSON form (the caller
                should then call the model without the cache).
            TypeError: ``model=`` was passed to a bound callable (the same error the call
                itself would raise).
        """
        return self.request_key(kind, self.read(kwargs))

    def request_key(self, kind: str, request: Mapping[str, Any]) -> str:
        """:meth:`key` of ``request``, the request as :attr:`read` gives it.

        Raises:
            UncacheableRequestError: A parameter has no canonical JSON form.
        """
        kept = {name: value for name, value in request.items() if _kept(name)}
        for name in _SCRUBBED:
            if name in kept:
                kept[name] = _scrubbed(name, kept[name])
        try:
            text = _encode((*self._head, kind, kept))
        except (TypeError, ValueError, RecursionError) as exc:
            raise _culprit(kept, exc) from None
        return _PREFIX + hashlib.sha256(_utf8(text)).hexdigest()


def flight_key(key: str, request: Mapping[str, Any]) -> str:
    """The single-flight key of a request: its cache key plus what the cache key leaves out.

    Callers may wait for one another's call only when they would send the same request:
    the same credentials (``api_key``, a token provider, an ``Authorization`` header...) and
    the same transport settings (``timeout``, ``client``...), not only the same question.
    Those values enter a hash held in memory only, never stored or logged. A value with no
    canonical JSON form (a token provider, an HTTP client) counts by identity: callers
    share a flight only when they pass the very same object.
    """
    private: dict[str, object] = {}
    for name, value in request.items():
        if _private(name):
            private[name] = value
        elif name in _SCRUBBED and isinstance(value, Mapping):
            items: Mapping[object, object] = value  # pyright: ignore[reportUnknownVariableType]
            hidden = {str(k): v for k, v in items.items() if not _keyed_name(k, headers=False)}
            if hidden:
                private[name] = hidden
    if not private:
        return key
    try:
        text = _identity_encode(private)
    except (TypeError, ValueError, RecursionError):  # E.g. a cycle: never share this flight.
        return f"{key}:unique:{next(_unique)}"
    return f"{key}:{hashlib.sha256(_utf8(text)).hexdigest()}"


def _utf8(text: str) -> bytes:
    """UTF-8 of ``text``, lone surrogates included (one-to-one, so keys stay distinct).

    JSON from a provider or a user may hold a lone surrogate (``"\\ud83d"`` decodes to one);
    a strict encode raises ``UnicodeEncodeError`` where litellm would have sent the request.
    """
    return text.encode("utf-8", "surrogatepass")


def _by_identity(value: object) -> object:
    try:
        return _canonical(value)
    except TypeError:
        # Alive for as long as the caller's request holds it, so the id is not reused
        # while a flight that compares it is in progress.
        return f"<{_type_name(value)} at {id(value):#x}>"


_identity_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_by_identity
).encode
_unique = itertools.count()


def _culprit(params: Mapping[str, object], error: Exception) -> UncacheableRequestError:
    """Name the parameter that cannot be encoded, for a useful log message."""
    for name, value in params.items():
        try:
            _encode(value)
        except (TypeError, ValueError, RecursionError) as exc:
            msg = f"request parameter {name!r} cannot be part of a cache key: {exc}"
            return UncacheableRequestError(msg, name)
    return UncacheableRequestError(f"the request cannot be part of a cache key: {error}", None)
