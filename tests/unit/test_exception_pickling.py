"""Every exception a call can raise reaches another process as itself (pickle, cloudpickle).

litellm's classes are enumerated from ``litellm.exceptions`` (everything there that subclasses
``Exception``), so a class a litellm release adds is covered without editing this file; the
suite runs at both ends of the declared litellm range.
"""

from __future__ import annotations

import builtins
import inspect
import multiprocessing
import pickle
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import cloudpickle  # pyright: ignore[reportMissingTypeStubs]
import httpx
import litellm
import litellm.exceptions
import pytest

from fixedmodel import errors, fallback_causes
from fixedmodel._litellm import litellm_module
from fixedmodel._pickling import round_trips, stand_in
from fixedmodel.middleware._cache_key import UncacheableRequestError
from fixedmodel.middleware._errors import retry_after

litellm_module()  # what any fixedmodel call does first: registers the pickling support

NOW = 1_000_000.0
REQUEST = httpx.Request("POST", "https://api.example.test/v1/chat/completions")
HEADERS = {"retry-after": "7", "x-request-id": "req-1"}

# Values for litellm's required constructor parameters, by name.
_ARGUMENTS: dict[str, object] = {
    "message": "the provider said no",
    "model": "openai/gpt-x",
    "llm_provider": "openai",
    "custom_llm_provider": "openai",
    "status_code": 429,
    "current_cost": 2.5,
    "max_budget": 1.0,
    "raw_response": "{}",
    "schema": "{}",
    "request_data": {"model": "gpt-x"},
    "failures": [],
    "entity_type": "user",
    "route_to_model": "openai/gpt-y",
    "session_id": "s-1",
}


def _response(status: int) -> httpx.Response:
    return httpx.Response(status, headers=HEADERS, request=REQUEST, content=b'{"error": {}}')


def _make(cls: type[BaseException]) -> BaseException:
    """An instance of ``cls`` with every required argument, and a response where it takes one."""
    kwargs: dict[str, object] = {}
    for name, parameter in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name == "response":
            kwargs[name] = _response(429)
        elif name == "request":
            kwargs[name] = REQUEST
        elif name == "headers":
            kwargs[name] = dict(HEADERS)
        elif parameter.default is parameter.empty:
            kwargs[name] = _ARGUMENTS.get(name, "x")
    return cls(**kwargs)


def _litellm_classes() -> list[type[BaseException]]:
    found = [
        value
        for value in vars(litellm.exceptions).values()
        if isinstance(value, type) and issubclass(value, Exception)
    ]
    return sorted(set(found), key=lambda cls: cls.__qualname__)


CLASSES = _litellm_classes()
FIELDS = ("status_code", "model", "llm_provider", "message", "max_retries", "num_retries")


def _decorated(cls: type[BaseException]) -> BaseException:
    error = _make(cls)
    error.add_note("attempt 1 of 3")
    error.__cause__ = litellm.Timeout("underneath", model="openai/gpt-x", llm_provider="openai")
    return error


def _check_same(copy: BaseException, original: BaseException) -> None:
    assert type(copy) is type(original)
    assert str(copy) == str(original)
    assert copy.args == original.args
    for name in FIELDS:
        assert getattr(copy, name, None) == getattr(original, name, None), name
    assert retry_after(copy, now=NOW) == retry_after(original, now=NOW)
    assert getattr(copy, "__notes__", None) == getattr(original, "__notes__", None)
    if original.__cause__ is not None:
        assert type(copy.__cause__) is type(original.__cause__)
        assert str(copy.__cause__) == str(original.__cause__)


ROUND_TRIPS: dict[str, Callable[[object], object]] = {
    "pickle": lambda error: pickle.loads(pickle.dumps(error)),
    "cloudpickle": lambda error: pickle.loads(cloudpickle.dumps(error)),  # pyright: ignore[reportUnknownMemberType, reportUnknownLambdaType]
}


def test_the_enumeration_finds_litellms_classes() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"RateLimitError", "Timeout", "BudgetExceededError", "APIError"} <= names
    assert set(errors.__all__) <= names  # what fixedmodel.errors re-exports is covered


@pytest.mark.parametrize("how", sorted(ROUND_TRIPS))
@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_litellm_exception_round_trips_with_its_fields(
    cls: type[BaseException], how: str
) -> None:
    original = _decorated(cls)
    copy = ROUND_TRIPS[how](original)
    assert isinstance(copy, BaseException)
    _check_same(copy, original)


def test_retry_advice_survives_in_both_places_fixedmodel_reads_it() -> None:
    from_response = litellm.RateLimitError(
        "slow down", llm_provider="openai", model="gpt-x", response=_response(429)
    )
    from_headers = litellm.RateLimitError("slow down", llm_provider="openai", model="gpt-x")
    from_headers.litellm_response_headers = httpx.Headers({"retry-after-ms": "1500"})  # type: ignore[attr-defined]  # litellm sets it this way after a call
    for error, seconds in ((from_response, 7.0), (from_headers, 1.5)):
        copy = pickle.loads(pickle.dumps(error))
        assert retry_after(copy, now=NOW) == retry_after(error, now=NOW) == seconds


def test_fallback_causes_travel_with_the_error() -> None:
    from fixedmodel import bind_completion, with_fallbacks

    rate = litellm.RateLimitError("busy", llm_provider="openai", model="a")
    down = litellm.ServiceUnavailableError("down", llm_provider="openai", model="b")
    chain = with_fallbacks(
        bind_completion("openai/a", mock_response=rate),
        bind_completion("openai/b", mock_response=down),
    )
    with pytest.raises(litellm.ServiceUnavailableError) as caught:
        chain(messages=[{"role": "user", "content": "hi"}])
    copy = pickle.loads(pickle.dumps(caught.value))
    assert [type(cause) for cause in fallback_causes(copy)] == [
        type(cause) for cause in fallback_causes(caught.value)
    ]
    assert copy.__notes__ == caught.value.__notes__


def test_fixedmodels_own_exceptions_round_trip() -> None:
    error = UncacheableRequestError("cannot hash a socket", "metadata")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is UncacheableRequestError
    assert (str(copy), copy.parameter) == ("cannot hash a socket", "metadata")


def test_an_attribute_that_cannot_travel_is_left_behind_not_fatal() -> None:
    # Importing Dask's distributed (earlier tests do) runs tblib's install(), which replaces
    # every exception class's copyreg entry; batch_on registers again before it sends.
    from fixedmodel._pickling import register_exception_pickling

    register_exception_pickling()
    error = litellm.BadRequestError("bad", model="gpt-x", llm_provider="openai")
    error.lock = __import__("threading").Lock()  # type: ignore[attr-defined]  # cannot pickle
    error.inner = UnrebuildableError("deep")  # type: ignore[attr-defined]  # pickles, no loads
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is litellm.BadRequestError
    assert not hasattr(copy, "lock")
    assert isinstance(copy.inner, errors.WorkerError)  # type: ignore[attr-defined]
    assert "UnrebuildableError: deep" in str(copy.inner)  # type: ignore[attr-defined]


class UnrebuildableError(Exception):
    """Pickles, but cannot be unpickled: ``__init__`` wants an argument ``args`` lacks."""

    def __init__(self, text: str, *, code: int = 0) -> None:
        super().__init__()
        self.text, self.code = text, code

    def __str__(self) -> str:
        return self.text

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, (self.text,))


def _refuse(text: str) -> UnrebuildableError:
    raise TypeError(f"cannot rebuild {text!r}")


def test_a_stand_in_carries_what_the_driver_decides_on() -> None:
    error = UnrebuildableError("quota")
    error.status_code = 429  # type: ignore[attr-defined]
    error.model, error.llm_provider = "openai/gpt-x", "openai"  # type: ignore[attr-defined]
    error.response = _response(429)  # type: ignore[attr-defined]
    error.add_note("tried twice")
    error.__cause__ = UnrebuildableError("socket closed")
    assert not round_trips(error)
    copy = pickle.loads(pickle.dumps(stand_in(error)))
    assert isinstance(copy, errors.WorkerError)
    assert copy.type_name == f"{__name__}.UnrebuildableError"
    assert (copy.status_code, copy.model, copy.llm_provider) == (429, "openai/gpt-x", "openai")
    assert retry_after(copy, now=NOW) == 7.0
    assert copy.__notes__ == ["tried twice"]
    assert isinstance(copy.__cause__, errors.WorkerError)
    assert str(copy.__cause__).endswith("UnrebuildableError: socket closed")


# Raised in another process ------------------------------------------------------------


def raise_rate_limit() -> None:
    """In a worker: what a bound call raises on a 429 with Retry-After."""
    litellm_module()
    raise litellm.RateLimitError(
        "slow down", llm_provider="openai", model="openai/gpt-x", response=_response(429)
    )


def raise_budget() -> None:
    litellm_module()
    raise litellm.BudgetExceededError(current_cost=2.5, max_budget=1.0)


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.mark.heavy  # A process pool; run at the newest litellm only.
def test_a_process_pool_worker_raising_a_429_gives_the_429(pool: ProcessPoolExecutor) -> None:
    with pytest.raises(litellm.RateLimitError) as caught:
        pool.submit(raise_rate_limit).result()
    assert caught.value.status_code == 429
    assert (caught.value.model, caught.value.llm_provider) == ("openai/gpt-x", "openai")
    assert retry_after(caught.value, now=NOW) == 7.0
    with pytest.raises(litellm.BudgetExceededError) as budget:
        pool.submit(raise_budget).result()
    assert (budget.value.current_cost, budget.value.max_budget) == (2.5, 1.0)
    assert pool.submit(int, "3").result() == 3  # the pool is not broken


def test_a_long_chain_of_causes_pickles_in_linear_time() -> None:
    # Each link checked the links below it by pickling them, and was pickled again after:
    # the time doubled with every link (16 links took 10 s, 24 would take hours).
    error = litellm.RateLimitError("try 0", llm_provider="openai", model="openai/gpt-x")
    for attempt in range(1, 17):
        later = litellm.RateLimitError(f"try {attempt}", llm_provider="openai", model="gpt-x")
        later.__cause__, error = error, later
    started = time.perf_counter()
    copy = pickle.loads(pickle.dumps(error))
    assert time.perf_counter() - started < 1.0
    found: list[str] = []
    link: BaseException | None = copy
    while link is not None:
        assert type(link) is litellm.RateLimitError
        found.append(str(link).rpartition(" ")[2])
        link = link.__cause__
    assert found == [str(attempt) for attempt in range(16, -1, -1)]


def _local_error_class() -> type[Exception]:
    class LocalError(Exception):  # defined in a function: cannot be pickled by name
        pass

    return LocalError


def _unprintable_error_class() -> type[Exception]:
    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    return UnprintableError


def _chain_length(error: BaseException | None) -> int:
    length = 0
    while error is not None:
        length, error = length + 1, error.__cause__
    return length


def test_a_stand_in_survives_causes_that_loop_run_deep_or_cannot_print() -> None:
    # The stand-in recursed into each cause: a loop or a deep chain raised RecursionError
    # in the worker, and a __str__ that raises escaped too; either broke the whole chunk.
    local = _local_error_class()
    first, second = local("first"), local("second")
    first.__cause__, second.__cause__ = second, first
    deep = local("root")
    for depth in range(3000):
        later = local(f"cause {depth}")
        later.__cause__, deep = deep, later
    unprintable = _unprintable_error_class()("x")
    unprintable.add_note("kept")
    looped = pickle.loads(pickle.dumps(stand_in(first)))
    assert [str(looped), str(looped.__cause__)] == [
        f"{local.__module__}.{local.__qualname__}: {text}" for text in ("first", "second")
    ]
    assert looped.__cause__.__cause__ is None
    assert _chain_length(pickle.loads(pickle.dumps(stand_in(deep)))) == 33
    copy = pickle.loads(pickle.dumps(stand_in(unprintable)))
    assert isinstance(copy, errors.WorkerError)
    assert "str() raised" in str(copy)
    assert copy.__notes__ == ["kept"]


def test_fixedmodels_own_exceptions_round_trip_whatever_the_import_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Classes are registered when litellm is first imported; a module imported after that
    # (a worker unpickling a bound object before the cache layer) left its class with
    # Python's default, which calls __init__(message) and breaks the pool on the way back.
    import copyreg

    monkeypatch.delitem(copyreg.dispatch_table, UncacheableRequestError, raising=False)
    error = UncacheableRequestError("cannot hash a socket", "metadata")
    error.add_note("from the cache layer")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is UncacheableRequestError
    assert (str(copy), copy.parameter) == ("cannot hash a socket", "metadata")
    assert copy.__notes__ == ["from the cache layer"]


# ExceptionGroup is 3.11+; the tests using it are skipped before.
_ExceptionGroup: Any = getattr(builtins, "ExceptionGroup", None)

_GROUPS = pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is 3.11+")


@_GROUPS
def test_a_group_with_one_member_that_cannot_travel_keeps_the_others() -> None:
    # One unpicklable member made the whole group one WorkerError: the 429 beside it, its
    # status, model and retry advice were lost to the driver.
    rate_limit = litellm.RateLimitError(
        "slow down", llm_provider="openai", model="openai/gpt-x", response=_response(429)
    )
    odd = UnrebuildableError("odd one")
    odd.status_code = 503  # type: ignore[attr-defined]
    inner = _ExceptionGroup("inner", [UnrebuildableError("deeper"), ValueError("plain")])
    group = _ExceptionGroup("two calls failed", [rate_limit, odd, inner])
    group.add_note("from the gather")
    assert not round_trips(group)
    copy = pickle.loads(pickle.dumps(stand_in(group)))
    assert isinstance(copy, _ExceptionGroup)
    assert copy.message == "two calls failed"
    first, second, third = copy.exceptions
    assert isinstance(first, litellm.RateLimitError)
    assert (first.status_code, first.model, first.llm_provider) == (429, "openai/gpt-x", "openai")
    assert retry_after(first, now=NOW) == 7.0
    assert isinstance(second, errors.WorkerError) and second.status_code == 503
    assert isinstance(third, _ExceptionGroup)
    assert isinstance(third.exceptions[0], errors.WorkerError)
    assert isinstance(third.exceptions[1], ValueError)
    assert copy.__notes__ == ["from the gather"]
    # except* (split) still sorts out the members the driver can act on.
    limited, _ = copy.split(litellm.RateLimitError)
    assert limited is not None
    assert [type(error) for error in limited.exceptions] == [litellm.RateLimitError]


@_GROUPS
def test_a_group_of_its_own_class_that_cannot_travel_names_it() -> None:
    class LocalGroup(_ExceptionGroup):  # defined in a function: pickle cannot find it
        pass

    group = LocalGroup("local", [ValueError("a"), UnrebuildableError("b")])
    copy = pickle.loads(pickle.dumps(stand_in(group)))
    assert type(copy) is _ExceptionGroup
    assert isinstance(copy.exceptions[0], ValueError)
    assert isinstance(copy.exceptions[1], errors.WorkerError)
    assert copy.__notes__[-1].startswith(f"fixedmodel: stands in for {__name__}.")
    assert "LocalGroup" in copy.__notes__[-1]


@_GROUPS
def test_groups_nested_past_the_limit_stand_in_without_recursing() -> None:
    group: BaseException = UnrebuildableError("bottom")
    for level in range(5_000):
        group = _ExceptionGroup(f"level {level}", [group])
    copy = pickle.loads(pickle.dumps(stand_in(group)))
    assert isinstance(copy, _ExceptionGroup)


class ShapeshiftingError(Exception):
    """Pickles to something that is no exception (its own ``__reduce__``)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (str, ("not an exception any more",))


def test_an_error_that_unpickles_as_no_exception_does_not_count_as_travelling() -> None:
    # It passed the round trip check, so a failed item's error reached the driver as the
    # string it unpickled to.
    error = ShapeshiftingError("boom")
    error.status_code = 429  # type: ignore[attr-defined]
    assert not round_trips(error)
    copy = pickle.loads(pickle.dumps(stand_in(error)))
    assert isinstance(copy, errors.WorkerError)
    assert copy.type_name.endswith("ShapeshiftingError") and copy.status_code == 429
    outer = UnrebuildableError("outer")
    outer.__cause__ = error
    chained = pickle.loads(pickle.dumps(stand_in(outer)))
    assert isinstance(chained.__cause__, errors.WorkerError)


class _LookedAtTooOften(BaseException):
    """Ends a test whose stand-in walks a member past its budget (instead of for hours)."""


class CountedError(Exception):
    """Cannot be pickled; counts how often it is tried, and stops a walk past 200 tries."""

    tries = 0

    def __reduce__(self) -> tuple[Any, ...]:
        CountedError.tries += 1
        if CountedError.tries > 200:
            raise _LookedAtTooOften
        raise TypeError("cannot pickle CountedError")


@_GROUPS
def test_groups_sharing_their_members_stand_in_once_per_member() -> None:
    # Each level listed the level below twice: the stand-in walked every path, 2**depth of
    # them (30 s at depth 16, hours at 30), and made a copy per path.
    CountedError.tries = 0
    shared = CountedError("the same failure")
    group: BaseException = _ExceptionGroup("bottom", [shared, ValueError("plain")])
    for level in range(30):
        group = _ExceptionGroup(f"level {level}", [group, group])
    copy = pickle.loads(pickle.dumps(stand_in(group)))
    assert isinstance(copy, _ExceptionGroup)
    first, second = copy.exceptions
    assert first is second  # shared, as pickle shares it
    while isinstance(copy, _ExceptionGroup) and copy.message != "bottom":
        copy = copy.exceptions[0]
    assert isinstance(copy.exceptions[0], errors.WorkerError)
    assert copy.exceptions[0].type_name.endswith("CountedError")
    assert isinstance(copy.exceptions[1], ValueError)


@_GROUPS
def test_a_group_whose_members_are_caused_by_it_stands_in_once_per_member() -> None:
    # Two members whose cause is the group itself: each walk of a member's cause met the
    # group again and walked both members again, two new paths per level.
    CountedError.tries = 0
    first, second = CountedError("first"), CountedError("second")
    group = _ExceptionGroup("loops", [first, second])
    first.__cause__ = group
    second.__cause__ = group
    copy = pickle.loads(pickle.dumps(stand_in(group)))
    assert isinstance(copy, _ExceptionGroup)
    assert [member.type_name.rsplit(".", 1)[-1] for member in copy.exceptions] == [
        "CountedError",
        "CountedError",
    ]
