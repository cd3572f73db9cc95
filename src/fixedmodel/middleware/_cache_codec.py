"""Answers to cache entries and back, and cheap independent copies of decoded answers.

Rebuilding a ``ModelResponse`` from its JSON runs litellm's constructors and pydantic
validation (tens of microseconds, more than the rest of a cache hit together). So decoded
answers are kept in a small memo keyed by their stored bytes, as :class:`Template` objects,
and each hit returns a fresh structural copy of one: the caller owns its object and may
change it freely. The template plans its copy once, so a copy costs a few microseconds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard, cast

from fixedmodel._litellm import litellm_module
from fixedmodel._pydantic import loaded_base_model, read_attribute
from fixedmodel.stores._cache_store import (
    CorruptEntryError,
    EntryKind,
    after_fork_in_child,
    decode_entry,
    encode_json_entry,
)

if TYPE_CHECKING:
    from litellm.types.utils import EmbeddingResponse, ModelResponse
    from pydantic import BaseModel

__all__ = [
    "MEMO_BYTES",
    "MEMO_ENTRIES",
    "DecodedAnswers",
    "Template",
    "encode_answer",
    "is_answer",
    "is_cache_hit",
]

_ATOMIC: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_set_attribute = object.__setattr__


def encode_answer(kind: EntryKind, response: ModelResponse | EmbeddingResponse) -> bytes:
    """Encode an answer as a store entry: its public fields only, as JSON.

    Raises:
        TypeError: The answer holds a value JSON cannot represent.
        ValueError: The answer cannot be serialized (e.g. a reference cycle).
    """
    # pydantic's serializer writes the JSON bytes itself, a third of the time of
    # model_dump(mode="json") followed by json.dumps. exclude_unset=True for completions is
    # what litellm's own ModelResponse.model_dump defaults to; EmbeddingResponse dumps all.
    # warnings=False: pydantic's serializer warnings about litellm's loosely typed fields
    # would reach the user on every miss; a value that cannot be serialized still raises.
    exclude_unset = kind == "completion"
    try:
        body = response.__pydantic_serializer__.to_json(
            response, exclude_unset=exclude_unset, warnings=False
        )
    except ValueError:
        # pydantic writes UTF-8 and refuses a lone surrogate (a "\\ud83d" escape in the
        # provider's JSON decodes to one). json escapes it as \\ud83d, which reads back to
        # the same string, so such an answer is stored as faithfully as any other.
        # pydantic's own dump, not litellm's override (whose keywords are untyped).
        fields = response.__pydantic_serializer__.to_python(
            response, mode="json", exclude_unset=exclude_unset, warnings=False
        )
        body = json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return encode_json_entry(kind, body)


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
        _restore(response, fields)
    except Exception as exc:  # Any failure to rebuild means the stored data is unusable.
        msg = f"cache entry does not rebuild into a {kind} answer ({type(exc).__name__})"
        raise CorruptEntryError(msg) from None
    # Marked the way litellm marks answers from its own cache.
    response._hidden_params = {"cache_hit": True}  # pyright: ignore[reportPrivateUsage]
    return response


def _restore(value: object, data: object) -> None:
    """Put back what litellm's constructors drop, so a hit equals the live answer.

    The constructors are not a faithful inverse of ``model_dump``: ``Choices`` deletes a
    ``logprobs`` of ``None`` (which the live answer keeps, and dumps), and others drop or
    rename fields given as ``None``. Every field of the stored dump that the rebuilt model
    lacks is set again, all the way down; fields the constructors marked as set that the
    live answer had not set are unmarked (they keep their value).
    """
    base_model = loaded_base_model()
    if base_model is not None and isinstance(value, base_model) and isinstance(data, dict):
        stored = cast("dict[str, object]", data)
        present = vars(value)
        extra = value.__pydantic_extra__ or {}
        for name, item in stored.items():
            if name in present:
                _restore(present[name], item)
            elif name in extra:
                _restore(extra[name], item)
            else:
                setattr(value, name, item)
        # Set by a constructor but not by the live answer: keep the value (the live answer
        # has its default), but not as set, so model_dump() leaves it out as it does live.
        value.__pydantic_fields_set__.difference_update(value.model_fields_set - stored.keys())
    elif isinstance(value, list) and isinstance(data, list):
        items = cast("list[object]", value)
        stored_items = cast("list[object]", data)
        for item, stored_item in zip(items, stored_items, strict=False):
            _restore(item, stored_item)


_answer_classes: dict[str, type] = {}  # By kind, resolved on first use (litellm loads late).


def is_answer(response: object, kind: EntryKind) -> TypeGuard[ModelResponse | EmbeddingResponse]:
    """Tell whether ``response`` is a complete answer of ``kind`` (not a stream, not None)."""
    expected = _answer_classes.get(kind)
    if expected is None:
        from litellm.types.utils import EmbeddingResponse, ModelResponse

        expected = ModelResponse if kind == "completion" else EmbeddingResponse
        _answer_classes[kind] = expected
    return isinstance(response, expected)


def is_cache_hit(response: ModelResponse | EmbeddingResponse) -> bool:
    """Tell whether ``response`` came from a cache (this one or litellm's), not the model."""
    # litellm marks its own cache hits the same way, in an untyped private dict.
    hidden = read_attribute(response, "_hidden_params")
    return isinstance(hidden, dict) and cast("dict[str, object]", hidden).get("cache_hit") is True


class Template:
    """A decoded answer kept to be copied; it is never handed out itself.

    The copy plan is made once, when the template is made: which parts are mutable and
    how to copy each. A hit then copies along the plan without looking at a single value
    again: immutable leaves (str, numbers, bools, ``None``) are shared, containers whose
    items are all immutable are copied by one C call, and only the pydantic models and
    containers in between cost a Python call each.

    The answer must not change after the plan is made (hence: never hand it out).

    Attributes:
        answer: The decoded answer.
        copy: Returns a structural copy of the answer: no mutable part is shared with it.
    """

    __slots__ = ("answer", "copy")

    def __init__(self, answer: ModelResponse | EmbeddingResponse) -> None:
        self.answer = answer
        self.copy: Callable[[], ModelResponse | EmbeddingResponse] = _model_copier(answer)


MEMO_ENTRIES = 256
"""Most decoded answers a cache keeps in memory (fewer if its store keeps fewer entries)."""

MEMO_BYTES = 16 * 2**20
"""Most bytes of stored entries (16 MiB) whose decoded answers a cache keeps in memory.

A larger entry is decoded on each hit instead of being kept.
"""


class DecodedAnswers:
    """A bounded memo from stored entry bytes to the template answer they decode to.

    The memory store returns the very bytes object it was given, whose hash Python keeps,
    so a lookup costs a dict probe; other stores return equal bytes, hashed once per hit.

    Args:
        size: Most decoded answers kept; the oldest is dropped first.
        max_bytes: Most bytes of entries kept, their sum; an entry larger than this is
            never kept.
    """

    __slots__ = ("__weakref__", "_answers", "_bytes", "_lock", "_max_bytes", "_size")

    def __init__(self, size: int = MEMO_ENTRIES, max_bytes: int = MEMO_BYTES) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self._answers: dict[bytes, Template] = {}
        self._lock = threading.Lock()  # eviction iterates the dict; sync caches use threads
        after_fork_in_child(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # Another thread may have held it at the fork.

    def __len__(self) -> int:
        """Count the decoded answers kept."""
        return len(self._answers)

    @property
    def size_bytes(self) -> int:
        """Bytes of the entries whose decoded answers are kept."""
        return self._bytes

    def get(self, data: object, kind: EntryKind) -> Template:
        """Return the template of ``data``, decoding it on first sight.

        Raises:
            CorruptEntryError: ``data`` is not a readable entry of the expected kind.
        """
        if isinstance(data, bytes):
            template = self._answers.get(data)
            if template is not None:
                return template
        template = Template(_decode(data, kind))
        self.remember(cast(bytes, data), template)
        return template

    def remember(self, data: bytes, template: Template) -> None:
        """Keep ``template`` as the decoded form of ``data``, within the memo's bounds."""
        size = len(data)
        if size > self._max_bytes:
            return
        with self._lock:
            if data in self._answers:
                return
            answers = self._answers
            while answers and (len(answers) >= self._size or self._bytes + size > self._max_bytes):
                oldest = next(iter(answers))
                del answers[oldest]
                self._bytes -= len(oldest)
            answers[data] = template
            self._bytes += size


# A copier makes one structural copy of the value it was planned for; None means the value
# is immutable and is shared. Any: the values are litellm's answer objects and their JSON
# values (the litellm boundary).
_Copier: TypeAlias = Callable[[], Any]


def _copier(value: object) -> _Copier | None:
    kind = value.__class__
    if kind in _ATOMIC:
        return None
    if kind is dict:
        return _dict_copier(cast("dict[Any, Any]", value))
    if kind is list:
        return _list_copier(cast("list[Any]", value))
    base_model = loaded_base_model()
    if base_model is not None and isinstance(value, base_model):
        return _model_copier(value)
    import copy

    return partial(copy.deepcopy, value)


def _dict_copier(value: dict[Any, Any]) -> _Copier:
    nested = [(key, copy) for key, item in value.items() if (copy := _copier(item)) is not None]
    if not nested:
        return value.copy

    def copy_dict() -> dict[Any, Any]:
        copied = value.copy()  # Same keys in the same order; then the mutable values.
        for key, copy in nested:
            copied[key] = copy()
        return copied

    return copy_dict


def _list_copier(value: list[Any]) -> _Copier:
    nested = [(i, copy) for i, item in enumerate(value) if (copy := _copier(item)) is not None]
    if not nested:
        return value.copy  # E.g. an embedding vector: floats are immutable, share them.

    def copy_list() -> list[Any]:
        copied = value.copy()
        for index, copy in nested:
            copied[index] = copy()
        return copied

    return copy_list


def _optional_dict_copier(value: dict[Any, Any] | None) -> _Copier:
    return _none if value is None else _dict_copier(value)


def _none() -> None:
    return None


def _model_copier(model: BaseModel) -> _Copier:
    # What BaseModel.__copy__ does, all the way down: a new instance whose field dict,
    # extra fields and private attributes (litellm's _hidden_params) are copies too.
    cls = type(model)
    copy_fields = _dict_copier(vars(model))
    fields_set = model.__pydantic_fields_set__
    copy_extra = _optional_dict_copier(model.__pydantic_extra__)
    copy_private = _optional_dict_copier(model.__pydantic_private__)

    def copy_model() -> BaseModel:
        copied = cls.__new__(cls)
        _set_attribute(copied, "__dict__", copy_fields())
        _set_attribute(copied, "__pydantic_fields_set__", fields_set.copy())
        _set_attribute(copied, "__pydantic_extra__", copy_extra())
        _set_attribute(copied, "__pydantic_private__", copy_private())
        return copied

    return copy_model
