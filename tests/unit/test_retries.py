"""with_retries and RetryPolicy without a network: scripted fakes and a recording clock."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import types
from collections.abc import Callable
from typing import Any

import httpx
import litellm
import pytest

from fixedmodel import bind_acompletion
from fixedmodel.middleware import retries as retries_module
from fixedmodel.middleware._call import call_scope
from fixedmodel.middleware.retries import RetryPolicy, with_retries

MESSAGES = [{"role": "user", "content": "Hi"}]
EXACT = RetryPolicy(initial_wait=1.0, multiplier=2.0, max_wait=5.0, jitter=0.0, max_attempts=6)
QUICK = RetryPolicy(initial_wait=0.01, max_wait=0.02, max_attempts=3)


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://x/v1"))


def rate_limit(**headers: str) -> litellm.RateLimitError:
    return litellm.RateLimitError(
        message="slow down",
        llm_provider="openai",
        model="m",
        response=_response(429, {k.replace("_", "-"): v for k, v in headers.items()}),
    )


def server_error() -> litellm.InternalServerError:
    return litellm.InternalServerError(message="boom", llm_provider="openai", model="m")


RETRYABLE: dict[str, Callable[[], Exception]] = {
    "429": rate_limit,
    "500": server_error,
    "503": lambda: litellm.ServiceUnavailableError(
        message="busy", llm_provider="openai", model="m"
    ),
    "502": lambda: litellm.BadGatewayError(message="bad gw", llm_provider="openai", model="m"),
    "timeout": lambda: litellm.Timeout(message="slow", model="m", llm_provider="openai"),
    "connection": lambda: litellm.APIConnectionError(
        message="reset", llm_provider="openai", model="m"
    ),
}
NOT_RETRYABLE: dict[str, Callable[[], Exception]] = {
    "400": lambda: litellm.BadRequestError(message="bad", model="m", llm_provider="openai"),
    "401": lambda: litellm.AuthenticationError(message="key", llm_provider="openai", model="m"),
    "403": lambda: litellm.PermissionDeniedError(
        message="no", llm_provider="openai", model="m", response=_response(403)
    ),
    "404": lambda: litellm.NotFoundError(message="none", model="m", llm_provider="openai"),
    "context window": lambda: litellm.ContextWindowExceededError(
        message="too long", model="m", llm_provider="openai"
    ),
    "content policy": lambda: litellm.ContentPolicyViolationError(
        message="no", model="m", llm_provider="openai"
    ),
    "not a provider error": lambda: ValueError("a bug in the caller"),
}


class Script:
    """Fails with the scripted errors in order, then answers; records every call's keywords."""

    def __init__(self, *errors: BaseException, answer: object = "answer") -> None:
        self.errors = list(errors)
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def _next(self, kwargs: dict[str, Any]) -> Any:
        self.calls.append(kwargs)
        if self.errors:
            raise self.errors.pop(0)
        return self.answer


class AsyncScript(Script):
    async def __call__(self, **kwargs: Any) -> Any:
        return self._next(kwargs)


class SyncScript(Script):
    def __call__(self, **kwargs: Any) -> Any:
        return self._next(kwargs)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace the waits between attempts with a recorder (no real time passes)."""
    recorded: list[float] = []

    async def async_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(retries_module, "_async_sleep", async_sleep)
    monkeypatch.setattr(retries_module, "_sync_sleep", recorded.append)
    return recorded


def notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


# --- RetryPolicy ----------------------------------------------------------------------------


def test_default_policy_is_valid_and_frozen() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 4
    assert policy.deadline is None
    assert 0 < policy.initial_wait <= policy.max_wait
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 9  # type: ignore[misc]  # frozen: the assignment must fail


@pytest.mark.parametrize(
    ("field", "value", "error", "allowed"),
    [
        ("max_attempts", 0, ValueError, ">= 1"),
        ("max_attempts", -3, ValueError, ">= 1"),
        ("max_attempts", 2.5, TypeError, "an int"),
        ("max_attempts", True, TypeError, "an int"),
        ("initial_wait", -0.1, ValueError, ">= 0"),
        ("initial_wait", math.nan, ValueError, ">= 0"),
        ("initial_wait", "1", TypeError, ">= 0"),
        ("max_wait", 0.5, ValueError, ">= initial_wait"),
        ("max_wait", math.inf, ValueError, ">= initial_wait"),
        ("multiplier", 0.5, ValueError, ">= 1"),
        ("jitter", 1.5, ValueError, "[0, 1]"),
        ("jitter", -0.1, ValueError, "[0, 1]"),
        ("deadline", 0, ValueError, "> 0"),
        ("deadline", math.inf, ValueError, "> 0"),
        ("max_retry_after", -1, ValueError, ">= 0"),
    ],
)
def test_policy_rejects_bad_values_naming_field_and_range(
    field: str, value: object, error: type[Exception], allowed: str
) -> None:
    with pytest.raises(error) as caught:
        RetryPolicy(**{field: value})
    assert f"RetryPolicy.{field}" in str(caught.value)
    assert allowed in str(caught.value)


def test_unknown_policy_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="max_atempts"):
        RetryPolicy(max_atempts=3)  # type: ignore[call-arg]  # the misspelling under test


def test_misuse_is_refused_at_wrap_time() -> None:
    with pytest.raises(TypeError, match="with_retries"):
        with_retries("not callable")  # type: ignore[call-overload]  # the misuse under test
    with pytest.raises(TypeError, match="RetryPolicy"):
        with_retries(AsyncScript(), {"max_attempts": 3})  # type: ignore[call-overload]


def test_wrapper_shows_inner_and_policy_and_model() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini", api_key="sk-hidden-123")
    wrapped = with_retries(chat, QUICK)
    assert "gpt-4o-mini" in repr(wrapped)
    assert "max_attempts=3" in repr(wrapped)
    assert "sk-hidden-123" not in repr(wrapped)
    assert wrapped.model == "openai/gpt-4o-mini"  # type: ignore[attr-defined]  # Wrapper.model


# --- What is retried ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(RETRYABLE))
async def test_retryable_failures_are_retried(kind: str, sleeps: list[float]) -> None:
    fake = AsyncScript(RETRYABLE[kind](), RETRYABLE[kind]())
    assert await with_retries(fake, QUICK)(messages=MESSAGES) == "answer"
    assert len(fake.calls) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("kind", sorted(NOT_RETRYABLE))
async def test_other_failures_are_raised_at_once_unchanged(kind: str, sleeps: list[float]) -> None:
    error = NOT_RETRYABLE[kind]()
    fake = AsyncScript(error)
    with pytest.raises(type(error)) as caught:
        await with_retries(fake, QUICK)(messages=MESSAGES)
    assert caught.value is error
    assert len(fake.calls) == 1
    assert sleeps == []
    assert notes(caught.value) == []


async def test_a_bound_mock_rate_limit_is_retried_then_raised(sleeps: list[float]) -> None:
    async with bind_acompletion("openai/m", mock_response="litellm.RateLimitError") as chat:
        with pytest.raises(litellm.RateLimitError) as caught:
            await with_retries(chat, QUICK)(messages=MESSAGES)
    assert len(sleeps) == 2
    assert any("3 attempts" in note for note in notes(caught.value))


# --- Waits ----------------------------------------------------------------------------------


async def test_backoff_grows_by_the_multiplier_up_to_max_wait(sleeps: list[float]) -> None:
    fake = AsyncScript(*(server_error() for _ in range(5)))
    assert await with_retries(fake, EXACT)(messages=MESSAGES) == "answer"
    assert sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_sync_kind_waits_the_same_way(sleeps: list[float]) -> None:
    fake = SyncScript(server_error(), server_error(), server_error())
    assert with_retries(fake, EXACT)(messages=MESSAGES) == "answer"
    assert sleeps == [1.0, 2.0, 4.0]


async def test_jitter_shortens_each_wait_within_its_fraction(sleeps: list[float]) -> None:
    policy = RetryPolicy(initial_wait=2.0, max_wait=2.0, jitter=0.25, max_attempts=201)
    fake = AsyncScript(*(server_error() for _ in range(200)))
    await with_retries(fake, policy)(messages=MESSAGES)
    assert all(1.5 <= wait <= 2.0 for wait in sleeps)
    assert max(sleeps) - min(sleeps) > 0.25  # Really random, not a constant.


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry_after": "3"}, 3.0), ({"retry_after_ms": "1500"}, 1.5)],
)
async def test_retry_after_is_honoured_as_a_minimum(
    headers: dict[str, str], expected: float, sleeps: list[float]
) -> None:
    fake = AsyncScript(rate_limit(**headers))
    assert await with_retries(fake, QUICK)(messages=MESSAGES) == "answer"
    assert sleeps == [expected]


async def test_a_short_retry_after_does_not_shorten_the_backoff(sleeps: list[float]) -> None:
    fake = AsyncScript(rate_limit(retry_after="0.5"))
    await with_retries(fake, EXACT)(messages=MESSAGES)
    assert sleeps == [1.0]


async def test_retry_after_over_the_cap_stops_at_once(sleeps: list[float]) -> None:
    error = rate_limit(retry_after="120")
    fake = AsyncScript(error)
    with pytest.raises(litellm.RateLimitError) as caught:
        await with_retries(fake, RetryPolicy(max_retry_after=60))(messages=MESSAGES)
    assert caught.value is error
    assert len(fake.calls) == 1
    assert sleeps == []
    assert "max_retry_after=60" in notes(error)[0]


async def test_deadline_stops_before_a_wait_that_would_pass_it(sleeps: list[float]) -> None:
    policy = dataclasses.replace(EXACT, max_wait=30.0, max_attempts=10, deadline=5.0)
    fake = AsyncScript(*(server_error() for _ in range(9)))
    with pytest.raises(litellm.InternalServerError) as caught:
        await with_retries(fake, policy)(messages=MESSAGES)
    assert sleeps == [1.0, 2.0, 4.0]  # The next wait (8 s) would end past the 5 s deadline.
    assert len(fake.calls) == 4
    assert "deadline=5" in notes(caught.value)[0]


async def test_retry_after_past_the_deadline_stops(sleeps: list[float]) -> None:
    fake = AsyncScript(rate_limit(retry_after="5"))
    with pytest.raises(litellm.RateLimitError):
        await with_retries(fake, dataclasses.replace(QUICK, deadline=1.0))(messages=MESSAGES)
    assert len(fake.calls) == 1


async def test_async_waits_use_asyncio_sleep_and_can_be_cancelled() -> None:
    fake = AsyncScript(server_error(), server_error())
    wrapped = with_retries(fake, RetryPolicy(initial_wait=30.0, jitter=0.0))
    task = asyncio.ensure_future(wrapped(messages=MESSAGES))
    for _ in range(100):  # Until the first attempt failed and the wait began.
        await asyncio.sleep(0.01)
        if fake.calls:
            break
    await asyncio.sleep(0.05)  # The loop is free while the wrapped call waits.
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(fake.calls) == 1


# --- What the caller gets -------------------------------------------------------------------


async def test_exhausted_attempts_raise_the_last_original_error_with_a_note(
    sleeps: list[float],
) -> None:
    last = server_error()
    fake = AsyncScript(rate_limit(), server_error(), last)
    with pytest.raises(litellm.InternalServerError) as caught:
        await with_retries(fake, QUICK)(messages=MESSAGES, api_key="sk-SECRET-99")
    assert caught.value is last
    [note] = notes(last)
    assert "gave up after 3 attempts" in note
    assert "max_attempts=3" in note
    assert "sk-SECRET" not in note


async def test_a_later_non_retryable_error_gets_a_note_of_the_attempts(
    sleeps: list[float],
) -> None:
    fake = AsyncScript(server_error(), NOT_RETRYABLE["401"]())
    with pytest.raises(litellm.AuthenticationError) as caught:
        await with_retries(fake, QUICK)(messages=MESSAGES)
    assert "not retryable, raised after 2 attempts" in notes(caught.value)[0]


def test_notes_fall_back_to_the_attribute_before_python_3_11(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retries_module, "sys", types.SimpleNamespace(version_info=(3, 10, 0)))
    error = server_error()
    retries_module._add_note(error, "first")
    retries_module._add_note(error, "second")
    assert notes(error) == ["first", "second"]


async def test_attempts_are_counted_into_the_call_record(sleeps: list[float]) -> None:
    fake = AsyncScript(server_error(), server_error())
    with call_scope() as info:
        await with_retries(fake, QUICK)(messages=MESSAGES)
    assert info.attempts == 3


def test_sync_attempts_are_counted_too(sleeps: list[float]) -> None:
    fake = SyncScript(server_error())
    with call_scope() as info:
        with_retries(fake, QUICK)(input=["a"])
    assert info.attempts == 2


@pytest.mark.parametrize("sync", [False, True])
async def test_a_first_attempt_that_succeeds_counts_one(sync: bool, sleeps: list[float]) -> None:
    with call_scope() as info:
        if sync:
            assert with_retries(SyncScript(), QUICK)(input=["a"]) == "answer"
        else:
            assert await with_retries(AsyncScript(), QUICK)(messages=MESSAGES) == "answer"
    assert info.attempts == 1
    assert sleeps == []


def test_an_interrupted_first_attempt_is_counted(sleeps: list[float]) -> None:
    with call_scope() as info, pytest.raises(KeyboardInterrupt):
        with_retries(SyncScript(KeyboardInterrupt()), QUICK)(messages=MESSAGES)
    assert info.attempts == 1
    assert sleeps == []


async def test_a_cancelled_first_attempt_is_counted(sleeps: list[float]) -> None:
    with call_scope() as info, pytest.raises(asyncio.CancelledError):
        await with_retries(AsyncScript(asyncio.CancelledError()), QUICK)(messages=MESSAGES)
    assert info.attempts == 1


@pytest.mark.parametrize("sync", [False, True])
async def test_a_later_error_is_not_chained_to_the_first_failure(
    sync: bool, sleeps: list[float]
) -> None:
    # The first attempt runs outside tenacity's loop; its failure must not become the
    # implicit context ("during handling of ...") of what a later attempt raises.
    first, later = server_error(), NOT_RETRYABLE["401"]()
    with pytest.raises(litellm.AuthenticationError) as caught:
        if sync:
            with_retries(SyncScript(first, later), QUICK)(messages=MESSAGES)
        else:
            await with_retries(AsyncScript(first, later), QUICK)(messages=MESSAGES)
    assert caught.value is later
    assert caught.value.__context__ is None
    assert len(sleeps) == 1


async def test_the_deadline_counts_the_first_attempt(sleeps: list[float]) -> None:
    class SlowFirst(AsyncScript):
        async def __call__(self, **kwargs: Any) -> Any:
            if not self.calls:
                await asyncio.sleep(0.3)
            return self._next(kwargs)

    policy = RetryPolicy(initial_wait=0.25, jitter=0.0, max_attempts=3, deadline=0.5)
    fake = SlowFirst(server_error(), server_error())
    with pytest.raises(litellm.InternalServerError) as caught:
        await with_retries(fake, policy)(messages=MESSAGES)
    # 0.3 s in the first attempt + a 0.25 s wait would start the retry past 0.5 s.
    assert len(fake.calls) == 1
    assert sleeps == []
    assert "deadline=0.5" in notes(caught.value)[0]


# --- Retries underneath are switched off ----------------------------------------------------


async def test_inner_retries_are_switched_off_for_completions() -> None:
    fake = AsyncScript()
    await with_retries(fake)(messages=MESSAGES, stream=True)
    [call] = fake.calls
    assert {k: v for k, v in call.items() if k != "retry_policy"} == {
        "messages": MESSAGES,
        "stream": True,
        "max_retries": 0,
        "num_retries": 0,
    }
    # litellm's sync completion reads `num_retries or litellm.num_retries`: a policy of no
    # retries for every error class is what keeps a global num_retries out.
    assert call["retry_policy"]
    assert set(call["retry_policy"].values()) == {0}


async def test_inner_retries_are_switched_off_for_embeddings() -> None:
    fake = AsyncScript()
    await with_retries(fake)(input=["a"])
    [call] = fake.calls
    assert call["max_retries"] == 0
    assert call["max_retries"]  # Survives litellm's `max_retries or 2` on the embedding path.
    assert "num_retries" not in call


@pytest.mark.parametrize("given", [{"max_retries": 5}, {"num_retries": 1}])
def test_a_caller_who_sets_inner_retries_keeps_them(given: dict[str, int]) -> None:
    fake = SyncScript()
    with_retries(fake)(messages=MESSAGES, **given)
    [call] = fake.calls
    assert {k: v for k, v in call.items() if k != "retry_policy"} == {"messages": MESSAGES, **given}
