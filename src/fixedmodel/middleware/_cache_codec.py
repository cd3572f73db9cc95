"""Answers to cache entries and back, and cheap independent copies of decoded answers.

Rebuilding a ``ModelResponse`` from its JSON runs litellm's constructors and pydantic
validation (tens of microseconds, more than the rest of a cache hit together). So decoded
answers are kept in a small memo keyed by their stored bytes, and each hit returns a fresh
structural copy of the memoised answer: the caller owns its object and may change it freely.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar, cast

from fixedmodel._litellm import litellm_module
from fixedmodel._pydantic import loaded_base_model
from fixedmodel.stores._cache_store import (
    CorruptEntryError,
    EntryKind,
    decode_entry,
    encode_entry,
)

if TYPE_CHECKING:
    from litellm.types.utils import EmbeddingResponse, ModelResponse
    from pydantic import BaseModel

__all__ = ["DecodedAnswers", "clone", "encode_answer", "is_answer", "is_cache_hit"]

_T = TypeVar("_T")
_ATOMIC: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_set_attribute = object.__setattr__


def encode_answer(kind: EntryKind, response: ModelResponse | EmbeddingResponse) -> bytes:
    """Encode an answer as a store entry: its public fields only, as JSON.

    Raises:
        TypeError: The answer holds a value JSON cannot represent.
        ValueError: The answer cannot be dumped (e.g. a reference cycle).
    """
    # ModelResponse overrides model_dump with untyped keywords (the litellm boundary).
    # warnings=False: pydantic's serializer warnings about litellm's loosely typed fields
    # would reach the user on every miss; a value that cannot be dumped still raises.
    fields: dict[str, Any] = response.model_dump(  # pyright: ignore[reportUnknownMemberType]
        mode="json", warnings=False
    )
    return encode_entry(kind, fields)


def _decode(data: object, kind: EntryKind) -> ModelResponse | EmbeddingResponse:
    found, fields = decode_entry(data)
    if found != kind:
        msg = f"cache entry holds a {found} answer where a {kind} answer was expected"
        raise CorruptEntryError(msg)
    # litellm's constructors fill in a default for almost anything: check the one field
    # without which the answer is empty.
    required = "choices" if kind == "completion" else "data"
    if not isinstance(fields.get(required), list):
        msg = f"cache entry of a {kind} answer has no {required!r} list"
        raise CorruptEntryError(msg)
    litellm_module()
    from litellm.types.utils import EmbeddingResponse, ModelResponse

    build: Callable[..., ModelResponse | EmbeddingResponse]
    build = ModelResponse if kind == "completion" else EmbeddingResponse
    # litellm's constructors take their fields as untyped keywords (the litellm boundary).
    arguments: dict[str, Any] = fields
    try:
        response = build(**arguments)
    except Exception as exc:  # Any failure to rebuild means the stored data is unusable.
        msg = f"cache entry does not rebuild into a {kind} answer ({type(exc).__name__})"
        raise CorruptEntryError(msg) from None
    # Marked the way litellm marks answers from its own cache.
    response._hidden_params = {"cache_hit": True}  # pyright: ignore[reportPrivateUsage]
    return response


def is_answer(response: object, kind: EntryKind) -> TypeGuard[ModelResponse | EmbeddingResponse]:
    """Tell whether ``response`` is a complete answer of ``kind`` (not a stream, not None)."""
    from litellm.types.utils import EmbeddingResponse, ModelResponse

    return isinstance(response, ModelResponse if kind == "completion" else EmbeddingResponse)


def is_cache_hit(response: ModelResponse | EmbeddingResponse) -> bool:
    """Tell whether ``response`` came from a cache (this one or litellm's), not the model."""
    # litellm marks its own cache hits the same way, in an untyped private dict.
    hidden: object = getattr(response, "_hidden_params", None)
    return isinstance(hidden, dict) and cast("dict[str, object]", hidden).get("cache_hit") is True


class DecodedAnswers:
    """A bounded memo from stored entry bytes to the answer they decode to.

    The memory store returns the very bytes object it was given, whose hash Python keeps,
    so a lookup costs a dict probe; other stores return equal bytes, hashed once per hit.
    Answers held here are templates: hand out :func:`clone` copies, never the objects.

    Args:
        size: Most decoded answers kept; the oldest is dropped first.
    """

    __slots__ = ("_answers", "_size")

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._answers: dict[bytes, ModelResponse | EmbeddingResponse] = {}

    def get(self, data: object, kind: EntryKind) -> ModelResponse | EmbeddingResponse:
        """Return the template answer of ``data``, decoding it on first sight.

        Raises:
            CorruptEntryError: ``data`` is not a readable entry of the expected kind.
        """
        if isinstance(data, bytes):
            template = self._answers.get(data)
            if template is not None:
                return template
        template = _decode(data, kind)
        self.remember(cast(bytes, data), template)
        return template

    def remember(self, data: bytes, template: ModelResponse | EmbeddingResponse) -> None:
        """Keep ``template`` as the decoded form of ``data``."""
        if len(self._answers) >= self._size:
            # pop(..., None): another thread may have dropped the same oldest entry.
            self._answers.pop(next(iter(self._answers), b""), None)
        self._answers[data] = template

    def decode(self, data: bytes, kind: EntryKind) -> ModelResponse | EmbeddingResponse:
        """Decode ``data`` afresh (without the memo) and remember the result."""
        template = _decode(data, kind)
        self.remember(data, template)
        return template


def clone(value: _T) -> _T:
    """Return a structural copy of a decoded answer: no mutable part is shared.

    Pydantic models are copied field by field without validation (as ``model_copy`` does,
    but one level of Python calls per node instead of ``copy.deepcopy``'s bookkeeping);
    dicts and lists are copied; str, numbers, bools and ``None`` are shared (immutable).
    """
    return cast(_T, _clone(value))


def _clone(value: Any) -> Any:
    # Any: the nodes are litellm's answer objects and their JSON values (the litellm
    # boundary). Hot path of every hit: branches ordered by frequency, no helper calls.
    kind = value.__class__
    if kind is dict:
        return {key: i if type(i) in _ATOMIC else _clone(i) for key, i in value.items()}
    if kind is list:
        if value and type(value[0]) is float and _all_numbers(value):
            return value.copy()  # An embedding vector: floats are immutable, share them.
        return [i if type(i) in _ATOMIC else _clone(i) for i in value]
    if kind in _ATOMIC:
        return value
    base_model = loaded_base_model()
    if base_model is not None and isinstance(value, base_model):
        return _clone_model(value)
    import copy

    return copy.deepcopy(value)


def _all_numbers(items: list[Any]) -> bool:
    # Decoded answers hold JSON values and pydantic models only, and of those just numbers
    # can be summed: sum() is a C loop, ten times faster than a Python type check per item
    # over a 1536-float vector.
    try:
        sum(items)  # A probe: anything but numbers raises TypeError.
    except TypeError:
        return False
    return True


def _clone_model(model: BaseModel) -> BaseModel:
    # What BaseModel.__copy__ does, one level deeper: a new instance whose field dict,
    # extra fields and private attributes (litellm's _hidden_params) are copies too.
    copied = type(model).__new__(type(model))
    _set_attribute(copied, "__dict__", _clone(model.__dict__))
    _set_attribute(copied, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    extra = model.__pydantic_extra__
    _set_attribute(copied, "__pydantic_extra__", _clone(extra) if extra else extra)
    private = model.__pydantic_private__
    _set_attribute(copied, "__pydantic_private__", _clone(private) if private else private)
    return copied
