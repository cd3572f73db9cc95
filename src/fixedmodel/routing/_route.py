"""What the routing layers share: checking that callables are of one kind, naming them, and
recording which one served a call and why the others failed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence

from fixedmodel.middleware._call import (
    CallInfo,
    RequestKind,
    Wrapper,
    check_callable,
    innermost,
    is_async_callable,
)
from fixedmodel.middleware.retries import _without_inner_retries  # pyright: ignore[reportPrivateUsage]

__all__ = [
    "LOGGER",
    "add_note",
    "check_once",
    "check_one_kind",
    "kind_of",
    "leaves",
    "name_of",
    "note_failure",
    "note_served",
    "note_skipped",
    "without_inner_retries",
]

LOGGER = logging.getLogger("fixedmodel.routing")

without_inner_retries = _without_inner_retries
"""Keep litellm and the openai SDK from retrying under a routing layer.

A routing layer decides what happens after a failure (the next callable, the next
deployment); the SDK's own retries underneath would send up to three requests to a failing
provider first and hide its 429 from the cooldown rule. ``with_retries`` placed anywhere in
the stack still retries as configured.
"""


def kind_of(function: object) -> tuple[bool, RequestKind | None]:
    """Tell whether ``function`` is async, and whether it is a completion or an embedding.

    The request kind is known for bound objects and the test kit's fakes (under any stack of
    middleware); it is ``None`` for a hand-written callable.
    """
    asynchronous = is_async_callable(function)
    # Bound objects and the test kit's fakes say what they answer in a class attribute.
    kind: object = getattr(type(innermost(function)), "_fixedmodel_kind", None)
    if kind == "completion":
        return asynchronous, "completion"
    if kind == "embedding":
        return asynchronous, "embedding"
    return asynchronous, None


def _describe(asynchronous: bool, kind: RequestKind | None) -> str:
    mode = "async" if asynchronous else "sync"
    return f"{mode} {kind}" if kind is not None else f"{mode} callable"


def check_one_kind(functions: Sequence[object], wrapper: str) -> bool:
    """Refuse, at wrap time, callables that are not all of one kind; return "async?".

    Raises:
        TypeError: A value is not callable, or the callables mix sync and async, or
            completions and embeddings.
    """
    if not functions:
        msg = f"{wrapper}() needs at least one callable"
        raise TypeError(msg)
    kinds: list[tuple[bool, RequestKind | None]] = []
    for function in functions:
        check_callable(function, wrapper)
        kinds.append(kind_of(function))
    first_async, first_kind = kinds[0]
    for index, (asynchronous, kind) in enumerate(kinds[1:], start=1):
        mixed = asynchronous != first_async or (
            kind is not None and first_kind is not None and kind != first_kind
        )
        if mixed:
            msg = (
                f"{wrapper}() needs callables of one kind, but callable #0 is a "
                f"{_describe(first_async, first_kind)} and callable #{index} is a "
                f"{_describe(asynchronous, kind)}; wrap callables bound the same way "
                "(e.g. all from bind_acompletion)"
            )
            raise TypeError(msg)
    return first_async


def leaves(function: object) -> list[object]:
    """The bottom callables of a stack, one entry per place: through middleware, chains
    (``callables``) and balancers (``deployments``)."""
    if not isinstance(function, Wrapper):
        return [function]
    chain: object = getattr(function, "callables", None)
    deployments: object = getattr(function, "deployments", None)
    calls: list[object]
    if isinstance(chain, tuple):
        calls = list(chain)  # pyright: ignore[reportUnknownArgumentType]
    elif isinstance(deployments, Mapping):
        calls = list(deployments.values())  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
    else:
        calls = [function._inner]  # pyright: ignore[reportPrivateUsage]
    return [leaf for call in calls for leaf in leaves(call)]


def check_once(functions: Sequence[object], wrapper: str, member: str, why: str) -> None:
    """Refuse a callable that appears twice among ``functions``, directly or inside one.

    ``member`` names a position (``"callable"``, ``"deployment"``) and ``why`` says why a
    call should not reach one model twice.

    Raises:
        ValueError: Naming the repeated callable and both positions.
    """
    seen: dict[int, int] = {}
    for index, function in enumerate(functions):
        for leaf in leaves(function):
            first = seen.get(id(leaf))
            if first is None:
                seen[id(leaf)] = index
            else:
                model: object = getattr(leaf, "model", None)
                shown = repr(model) if isinstance(model, str) else repr(leaf)
                msg = (
                    f"{wrapper}() got the callable {shown} twice (as {member} #{first} and in "
                    f"{member} #{index}); {why}, so list it once (to try it again, put "
                    "with_retries under it)"
                )
                raise ValueError(msg)


def name_of(function: object, index: int) -> str:
    """A name for a routed callable: its model and its position, e.g. ``gpt-4o#1``."""
    model: object = getattr(function, "model", None)
    label = model if isinstance(model, str) else type(innermost(function)).__name__
    return f"{label}#{index}"


def note_failure(info: CallInfo, name: str, error: BaseException) -> None:
    """Record in the call's record that the routed callable ``name`` failed with ``error``."""
    info.route_failures = (*info.route_failures, (name, type(error).__name__))


def note_skipped(info: CallInfo, name: str, reason: str) -> None:
    """Record that the routed callable ``name`` was passed over without a request.

    ``reason`` is ``"retry_after"`` (its provider asked not to be called yet) or
    ``"context_window"`` (the request does not fit its model).
    """
    info.route_skips = (*info.route_skips, (name, reason))


def note_served(info: CallInfo, name: str) -> None:
    """Record which callable answered, unless a routing layer inside already did."""
    if info.served_by is None:
        info.served_by = name


def add_note(error: BaseException, note: str) -> None:
    """Add a PEP 678 note to ``error`` (set ``__notes__`` by hand before Python 3.11)."""
    if sys.version_info >= (3, 11):
        error.add_note(note)
    else:
        notes: list[str] = [*getattr(error, "__notes__", ()), note]
        setattr(error, "__notes__", notes)  # noqa: B010 - not declared on 3.10's BaseException


forward = without_inner_retries  # A name, not a function around it: it runs on every call.
"""The keywords a routing layer sends on: the caller's, with inner retries switched off."""
