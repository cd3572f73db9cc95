"""How fixedmodel's objects travel to worker processes (pickle), and why some cannot.

A stack is pickled by rebuilding: each layer pickles the public call that made it (the
factory and its arguments), so a worker gets a fresh layer around the same configuration,
with new locks, threads and connections of its own. State that lives outside the process
(a Redis store, a disk cache's directory) is shared that way; state that lives inside it (an
in-memory cache or limiter window, metrics kept in memory) cannot be, and refuses with an
error that names the shared alternative, instead of being copied and silently diverging.
"""

from __future__ import annotations

import builtins
import contextlib
import copyreg
import os
import pickle
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn, TypeVar, cast

__all__ = [
    "WorkerError",
    "refuse_pickling",
    "register_exception_pickling",
    "round_trips",
    "stand_in",
]


class WorkerError(Exception):
    """Stands in for an exception raised in a worker that could not be sent back as itself.

    :func:`~fixedmodel.batch_on` checks that each failed item's exception survives being
    pickled and unpickled; litellm's and fixedmodel's own classes do. One that does not (a
    class defined in a function, an attribute that cannot be rebuilt) comes back as this,
    with what the driver needs to decide what to do next.

    Attributes:
        type_name: The original class, as ``module.QualifiedName``.
        status_code: The HTTP status the provider answered, if the original had one.
        model: The model the original named, if any.
        llm_provider: The provider the original named, if any.
        litellm_response_headers: The response headers of the original (lower-case
            names), if it had a response; fixedmodel's retries and cooldowns read
            ``Retry-After`` / ``retry-after-ms`` from them as from litellm's exceptions.

    ``str()`` gives the type name and the original message; the notes (``__notes__``) and
    the cause (``__cause__``, itself a stand-in if need be) are kept.
    """

    # Users know it as fixedmodel.errors.WorkerError (re-exported there), and it pickles by it.
    __module__ = "fixedmodel.errors"

    def __init__(
        self,
        message: str,
        *,
        type_name: str = "",
        status_code: int | None = None,
        model: str | None = None,
        llm_provider: str | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type_name = type_name
        self.status_code = status_code
        self.model = model
        self.llm_provider = llm_provider
        self.litellm_response_headers = response_headers

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.type_name else self.message


_T = TypeVar("_T")


def refuse_pickling(what: str, instead: str) -> NoReturn:
    """Raise the error for an object whose state cannot leave this process.

    Raises:
        TypeError: Always, naming ``what`` and the alternative ``instead``.
    """
    msg = (
        f"{what} keeps its state in this process, so it cannot be sent to another one "
        f"(pickled): a copy would not share it. Use {instead} to share it across processes."
    )
    raise TypeError(msg)


# Exceptions -----------------------------------------------------------------------------
#
# Python pickles an exception as ``(type(error), error.args, vars(error))`` and unpickles it
# by calling ``type(error)(*error.args)``. litellm's classes take required arguments that
# are not in ``args`` (``model``, ``llm_provider``, ``response``...), so that call fails with
# a ``TypeError`` in the receiving process: a process pool breaks, Ray reports an
# ``UnserializableException``. The classes registered below are rebuilt instead without
# calling ``__init__``: same class, same ``args``, every attribute that survives a round trip
# (the ``response`` with its headers, so retry advice survives), the notes and the cause.

_reducing = threading.local()

# What copyreg takes: a callable, its arguments, and the state set after it (the attributes).
_Reduction = tuple[Callable[..., BaseException], tuple[Any, ...], dict[str, object]]

# Python modules whose exception classes get the rebuilding reduction.
_OWNERS = ("litellm", "fixedmodel")


def register_exception_pickling() -> None:
    """Make litellm's and fixedmodel's exception classes survive pickle and cloudpickle.

    Registers a reduction with :mod:`copyreg` for every subclass of ``Exception`` defined so
    far in a ``litellm`` or ``fixedmodel`` module (cloudpickle, Dask and Ray read the same
    table). It changes how those classes pickle and nothing else; classes that pickled
    before pickle to the same class, args and attributes. Called once litellm is imported
    (:func:`fixedmodel._litellm.litellm_module`); calling it again registers the classes
    defined since.
    """
    for cls in _exception_classes():
        if cls.__module__.split(".", 1)[0] in _OWNERS and _pickles_by_default(cls):
            copyreg.pickle(cls, _reduce_exception)


def _pickles_by_default(cls: type[BaseException]) -> bool:
    """Whether ``cls`` leaves pickling to ``BaseException`` (a class with its own way keeps it)."""
    return (
        cls.__reduce__ is BaseException.__reduce__
        and cls.__reduce_ex__ is BaseException.__reduce_ex__
        and "__getstate__" not in vars(cls)
    )


def _exception_classes() -> Iterator[type[BaseException]]:
    seen: set[type[BaseException]] = set()
    todo: list[type[BaseException]] = [Exception]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
                yield sub


def _reduce_exception(
    error: BaseException,
) -> tuple[Callable[..., BaseException], tuple[Any, ...]] | _Reduction:
    busy: set[int] = _reducing.__dict__.setdefault("busy", set())
    if id(error) in busy:  # a cycle back to an error being checked: its class and args
        return (_rebuild_exception, (type(error), _travelling_args(error)))
    busy.add(id(error))
    try:
        state: dict[str, object] = {}
        for name, value in getattr(error, "__dict__", {}).items():
            kept = _travelling(value)
            if kept is not _LEFT_BEHIND:
                state[name] = kept
        if error.__cause__ is not None:
            cause = _travelling(error.__cause__)
            if cause is not _LEFT_BEHIND:
                state["__cause__"] = cause
        reduction: _Reduction = (_rebuild_exception, (type(error), _travelling_args(error)), state)
        return reduction
    finally:
        busy.discard(id(error))


def _rebuild_exception(cls: type[BaseException], args: tuple[object, ...]) -> BaseException:
    """Make an instance of ``cls`` with ``args`` without calling its ``__init__``.

    Unpickling then restores the attributes (``BaseException.__setstate__``).
    """
    error = cls.__new__(cls, *args)
    error.args = args
    return error


_LEFT_BEHIND = object()


def round_trips(value: object) -> bool:
    """Whether ``value`` survives ``pickle.dumps`` and ``pickle.loads`` in this process.

    An exception survives only as an exception: one whose own ``__reduce__`` makes it
    come back as something else (a string, None) does not, or a failed item's ``error``
    would reach the driver as that.
    """
    try:
        copy: object = pickle.loads(pickle.dumps(value))
    except Exception:
        return False
    return not isinstance(value, BaseException) or isinstance(copy, BaseException)


def _travelling(value: object) -> object:
    """``value`` if it survives a round trip, a stand-in for an exception, else left behind.

    An exception of a registered class travels as is, unchecked: its own reduction checks
    its parts when it is pickled. Checking it here as well would pickle a chain of causes
    once per link below each link, in time doubling with every link (a chain of 16 causes
    took 10 s).
    """
    if isinstance(value, BaseException) and copyreg.dispatch_table.get(type(value)) is (
        _reduce_exception
    ):
        return value
    if round_trips(value):
        return value
    if isinstance(value, BaseException):
        return stand_in(value)
    return _LEFT_BEHIND


def _travelling_args(error: BaseException) -> tuple[object, ...]:
    return error.args if round_trips(error.args) else (text(error),)


def text(value: object) -> str:
    """``str(value)``, or a placeholder naming its type when its ``__str__`` raises."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__qualname__}: str() raised>"


# Causes a stand-in keeps at most; a longer chain (or one that loops) is cut there. Groups
# nested deeper than that inside one another stand in whole, as one WorkerError.
_MAX_CAUSES = 32


def stand_in(
    error: BaseException, _depth: int = 0, _made: dict[int, BaseException | None] | None = None
) -> BaseException:
    """What travels for ``error``: a :class:`~fixedmodel.errors.WorkerError` carrying what
    can be read of it, or for an exception group, a group of what travels of each member.

    A stand-in carries the type name, message, ``status_code``, ``model``, ``llm_provider``,
    the response headers that carry retry advice, the notes, and the cause (itself a
    stand-in if need be). A group (``ExceptionGroup``) stays a group: each member that
    travels as itself is kept, each other one stands in alone, so one member that cannot
    travel does not take the others' types, status and retry advice with it. The chain of
    causes is walked, not recursed into: a chain that loops back or runs deeper than 32
    causes is cut there, never raising ``RecursionError``. A member met again (a group
    listing it twice, or groups sharing a group) is looked at once and its stand-in shared,
    as pickle shares it: walked once per path, groups sharing their members level after
    level took time and memory doubling with each level.
    """
    made: dict[int, BaseException | None] = {} if _made is None else _made
    top = copy = _one_stand_in(error, _depth, made)
    seen = {id(error)}
    cause = error.__cause__
    while cause is not None and id(cause) not in seen and len(seen) <= _MAX_CAUSES:
        seen.add(id(cause))
        if round_trips(cause):
            copy.__cause__ = cause
            break
        copy.__cause__ = copy = _one_stand_in(cause, _depth, made)
        cause = cause.__cause__
    return top


def _group_class() -> Any:
    """``BaseExceptionGroup`` (3.11+, or the ``exceptiongroup`` backport if loaded), or None."""
    found = getattr(builtins, "BaseExceptionGroup", None)
    if found is None:
        found = getattr(sys.modules.get("exceptiongroup"), "BaseExceptionGroup", None)
    return found


def _one_stand_in(
    error: BaseException, depth: int, made: dict[int, BaseException | None]
) -> BaseException:
    """The stand-in for ``error`` alone, without its cause."""
    group = _group_class()
    if group is not None and isinstance(error, group) and depth < _MAX_CAUSES:
        copy = _group_stand_in(error, group, depth, made)
        if copy is not None:
            return copy
    return _worker_error(error)


def _group_stand_in(
    error: BaseException, group: Any, depth: int, made: dict[int, BaseException | None]
) -> BaseException | None:
    """A group of what travels of each member of ``error``, or None if none can be made.

    It is ``error.derive(members)`` (the group's own class when it keeps it and that class
    travels), else a plain ``BaseExceptionGroup`` (an ``ExceptionGroup`` when every member
    is an ``Exception``) with a note naming the original class.
    """
    members: list[BaseException] = [
        _member(member, depth + 1, made)
        for member in cast("tuple[BaseException, ...]", getattr(error, "exceptions", ()))
    ]
    message = text(getattr(error, "message", "") or "")
    copy: BaseException | None = None
    try:
        derived: object = getattr(error, "derive")(members)  # noqa: B009
        if isinstance(derived, group) and round_trips(derived):
            copy = cast("BaseException", derived)
    except Exception:  # a derive() of its own that raises: the plain group
        copy = None
    try:
        if copy is None:
            copy = cast("BaseException", group(message, members))
    except Exception:  # an empty or odd group: no group to make
        return None
    for name, value in getattr(error, "__dict__", {}).items():
        if name != "__notes__" and round_trips(value):
            with contextlib.suppress(Exception):
                setattr(copy, name, value)
    notes = _notes(error)
    if type(copy) is not type(error):
        notes.append(f"fixedmodel: stands in for {_type_name(error)}, which could not be sent back")
    if notes:
        setattr(copy, "__notes__", notes)  # noqa: B010
    return copy if round_trips(copy) else None


def _member(
    member: BaseException, depth: int, made: dict[int, BaseException | None]
) -> BaseException:
    """What travels of a group's member: itself, or its stand-in, made once per member.

    ``made`` maps the members already seen to what travels of them (None while that is
    being made: a member met again inside itself, through a cause, stands in alone).
    """
    key = id(member)
    if key in made:
        done = made[key]
        return done if done is not None else _worker_error(member)
    made[key] = None
    done = member if round_trips(member) else stand_in(member, depth, made)
    made[key] = done
    return done


def _type_name(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}"


def _notes(error: BaseException) -> list[str]:
    notes: object = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        return [text(note) for note in cast("list[object]", notes)]
    return []


def _worker_error(error: BaseException) -> WorkerError:
    """The :class:`~fixedmodel.errors.WorkerError` for ``error`` alone, without its cause."""
    headers = _headers(error)
    copy = WorkerError(
        text(error),
        type_name=_type_name(error),
        status_code=_attribute(error, "status_code", int),
        model=_attribute(error, "model", str),
        llm_provider=_attribute(error, "llm_provider", str),
        response_headers=headers,
    )
    notes = _notes(error)
    if isinstance(getattr(error, "__notes__", None), list):
        # Set by hand: BaseException.add_note is 3.11+.
        setattr(copy, "__notes__", notes)  # noqa: B010
    return copy


def _attribute(error: BaseException, name: str, kind: type[_T]) -> _T | None:
    try:
        value: object = getattr(error, name, None)
    except Exception:
        return None
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _headers(error: BaseException) -> dict[str, str] | None:
    """The response headers of ``error``, where fixedmodel reads retry advice from."""
    try:
        sources = (
            getattr(error, "litellm_response_headers", None),
            getattr(getattr(error, "response", None), "headers", None),
        )
    except Exception:  # a property that raises: no headers to read
        return None
    for source in sources:
        if isinstance(source, Mapping):
            pairs = cast("Mapping[object, object]", source).items()
            return {str(key).lower(): str(value) for key, value in pairs}
    return None


# Secrets ----------------------------------------------------------------------------------

ENV_PREFIX = "env:"


def url_from_environment(url: str) -> str:
    """Return ``url``, or the URL held by the environment variable it names as ``env:NAME``.

    A Redis store built from ``"env:REDIS_URL"`` pickles that reference, not the URL: each
    worker reads the URL (and the password in it) from its own environment.

    Raises:
        ValueError: The variable is not set, or ``NAME`` is empty.
    """
    if not url.startswith(ENV_PREFIX):
        return url
    name = url[len(ENV_PREFIX) :]
    value = os.environ.get(name) if name else None
    if not value:
        msg = (
            f"{url!r} names an environment variable, but {name or '(empty)'} is not set in "
            f"this process (pid {os.getpid()}): set it to the Redis URL, e.g. "
            "'redis://:password@host:6379/0', in the driver and in every worker"
        )
        raise ValueError(msg)
    return value
