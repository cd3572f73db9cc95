"""with_fallbacks without a network: scripted fakes of the four kinds."""

from __future__ import annotations

import logging
from typing import Any

import litellm
import pytest

from fixedmodel import (
    FallbackPolicy,
    bind_acompletion,
    bind_completion,
    bind_embedding,
    fallback_causes,
    responses,
    with_fallbacks,
    with_retries,
)
from fixedmodel.middleware._call import call_scope
from fixedmodel.routing import is_fallback_worthy
from fixedmodel.testing import (
    Fail,
    FakeACompletion,
    FakeAEmbedding,
    FakeCompletion,
    FakeEmbedding,
)

MESSAGES = [{"role": "user", "content": "Hi"}]


async def test_primary_answer_is_returned_and_fallback_untouched() -> None:
    primary = FakeACompletion(["from primary"], model="a/primary")
    backup = FakeACompletion([], model="b/backup")
    with call_scope() as info:
        response = await with_fallbacks(primary, backup)(messages=MESSAGES)
    assert responses.text(response) == "from primary"
    assert backup.calls == []
    assert info.served_by == "a/primary#0"
    assert info.fallbacks_tried == 0
    assert info.route_failures == ()


@pytest.mark.parametrize(
    "status", [429, 500, 502, 503, 504, 507, 520, 524, 529, 599, 401, 403, 404, 501, 505, 511]
)
async def test_fallback_worthy_failures_go_to_the_next_callable(status: int) -> None:
    primary = FakeACompletion([Fail(status)], model="a/primary")
    backup = FakeACompletion(["from backup"], model="b/backup")
    with call_scope() as info:
        response = await with_fallbacks(primary, backup)(messages=MESSAGES, temperature=0.3)
    assert responses.text(response) == "from backup"
    # The same request reached the fallback.
    assert backup.calls[0].messages == MESSAGES
    assert backup.calls[0].params.get("temperature") == 0.3
    assert info.served_by == "b/backup#1"
    assert info.fallbacks_tried == 1
    assert len(info.route_failures) == 1
    assert info.route_failures[0][0] == "a/primary#0"


def _unprocessable() -> Exception:
    import httpx

    request = httpx.Request("POST", "http://fake.invalid/v1/chat/completions")
    response = httpx.Response(422, request=request, json={"error": {"message": "no"}})
    return litellm.UnprocessableEntityError(
        message="no", model="a/primary", llm_provider="x", response=response
    )


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (Fail(400), litellm.BadRequestError),
        (Fail(422), litellm.BadRequestError),  # as litellm maps an OpenAI-compatible 422
        (_unprocessable(), litellm.UnprocessableEntityError),  # as some providers' 422
    ],
)
async def test_bad_requests_are_raised_without_touching_the_fallback(
    entry: Any, expected: type[Exception]
) -> None:
    primary = FakeACompletion([entry], model="a/primary")
    backup = FakeACompletion([], model="b/backup")
    with pytest.raises(expected):
        await with_fallbacks(primary, backup)(messages=MESSAGES)
    assert backup.calls == []


async def test_context_window_falls_back_and_content_policy_does_not_by_default() -> None:
    window = litellm.ContextWindowExceededError(message="too long", model="m", llm_provider="x")
    policy = litellm.ContentPolicyViolationError(message="no", model="m", llm_provider="x")
    assert is_fallback_worthy(window)
    assert not is_fallback_worthy(policy)
    assert is_fallback_worthy(policy, FallbackPolicy(content_policy=True))
    assert not is_fallback_worthy(window, FallbackPolicy(context_window=False))
    auth = litellm.AuthenticationError(message="key", llm_provider="x", model="m")
    assert is_fallback_worthy(auth)
    assert not is_fallback_worthy(auth, FallbackPolicy(authentication=False))
    assert is_fallback_worthy(litellm.BudgetExceededError(current_cost=1.0, max_budget=1.0))
    assert not is_fallback_worthy(ValueError("ours"))

    primary = FakeACompletion([policy], model="a/primary")
    backup = FakeACompletion(["ok"], model="b/backup")
    with pytest.raises(litellm.ContentPolicyViolationError):
        await with_fallbacks(primary, backup)(messages=MESSAGES)
    assert backup.calls == []


async def test_a_custom_predicate_replaces_the_rules() -> None:
    primary = FakeACompletion([Fail(400)], model="a/primary")
    backup = FakeACompletion(["ok"], model="b/backup")
    policy = FallbackPolicy(when=lambda error: isinstance(error, litellm.BadRequestError))
    response = await with_fallbacks(primary, backup, policy=policy)(messages=MESSAGES)
    assert responses.text(response) == "ok"


async def test_when_all_fail_the_last_error_carries_every_cause() -> None:
    first = FakeACompletion([Fail(503)], model="a/one")
    second = FakeACompletion([Fail(429)], model="b/two")
    third = FakeACompletion([Fail(500)], model="c/three")
    with call_scope() as info, pytest.raises(litellm.InternalServerError) as raised:
        await with_fallbacks(first, second, third)(messages=MESSAGES)
    causes = fallback_causes(raised.value)
    assert [type(c) for c in causes] == [
        litellm.ServiceUnavailableError,
        litellm.RateLimitError,
        litellm.InternalServerError,
    ]
    assert causes[-1] is raised.value
    notes = "\n".join(raised.value.__notes__)
    assert "a/one#0 failed with ServiceUnavailableError (HTTP 503)" in notes
    assert "b/two#1 failed with RateLimitError (HTTP 429)" in notes
    assert [name for name, _ in info.route_failures] == ["a/one#0", "b/two#1", "c/three#2"]
    assert info.fallbacks_tried == 2
    assert info.served_by is None


async def test_a_non_worthy_failure_after_a_fallback_still_carries_the_first() -> None:
    first = FakeACompletion([Fail(503)], model="a/one")
    second = FakeACompletion([Fail(400)], model="b/two")
    third = FakeACompletion([], model="c/three")
    with pytest.raises(litellm.BadRequestError) as raised:
        await with_fallbacks(first, second, third)(messages=MESSAGES)
    assert [type(c) for c in fallback_causes(raised.value)] == [
        litellm.ServiceUnavailableError,
        litellm.BadRequestError,
    ]
    assert third.calls == []


async def test_the_original_exception_keeps_its_own_cause() -> None:
    primary = FakeACompletion([Fail(503)], model="a/one")
    backup = FakeACompletion([Fail(503)], model="b/two")
    with pytest.raises(litellm.ServiceUnavailableError) as raised:
        await with_fallbacks(primary, backup)(messages=MESSAGES)
    assert not raised.value.__suppress_context__


async def test_nested_fallbacks_keep_every_cause() -> None:
    inner = with_fallbacks(
        FakeACompletion([Fail(503)], model="a/one"), FakeACompletion([Fail(502)], model="b/two")
    )
    outer = with_fallbacks(inner, FakeACompletion([Fail(500)], model="c/three"))
    with pytest.raises(litellm.InternalServerError) as raised:
        await outer(messages=MESSAGES)
    assert len(fallback_causes(raised.value)) == 3


async def test_a_stream_falls_back_when_its_provider_fails_before_returning_it() -> None:
    primary = FakeACompletion([Fail(429)], model="a/primary")
    backup = FakeACompletion(["streamed answer"], model="b/backup")
    stream = await with_fallbacks(primary, backup)(messages=MESSAGES, stream=True)
    assert isinstance(stream, litellm.CustomStreamWrapper)
    text = "".join([piece async for piece in responses.atext_deltas(stream)])
    assert text == "streamed answer"


def test_sync_completion_and_embeddings_fall_back() -> None:
    chat = with_fallbacks(
        FakeCompletion([Fail(500)], model="a/one"), FakeCompletion(["sync ok"], model="b/two")
    )
    assert responses.text(chat(messages=MESSAGES)) == "sync ok"
    embed = with_fallbacks(FakeEmbedding([Fail(503)]), FakeEmbedding([[0.5, 0.5]]))
    assert embed(input=["x"]).data[0]["embedding"] == [0.5, 0.5]


async def test_async_embeddings_fall_back() -> None:
    embed = with_fallbacks(FakeAEmbedding([Fail(503)]), FakeAEmbedding([[1.0]]))
    assert (await embed(input="x")).data[0]["embedding"] == [1.0]


def test_inner_retries_are_switched_off_underneath() -> None:
    primary = FakeCompletion([Fail(503)], model="a/one")
    backup = FakeCompletion(["ok"], model="b/two")
    with_fallbacks(primary, backup)(messages=MESSAGES)
    assert primary.calls[0].params.get("max_retries") == 0
    assert primary.calls[0].params.get("num_retries") == 0


def test_retries_inside_each_callable_run_before_the_fallback() -> None:
    primary = FakeCompletion([Fail(503), Fail(503)], model="a/one")
    backup = FakeCompletion(["ok"], model="b/two")
    from fixedmodel import RetryPolicy

    quick = RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.001)
    chat = with_fallbacks(with_retries(primary, quick), backup)
    with call_scope() as info:
        assert responses.text(chat(messages=MESSAGES)) == "ok"
    assert len(primary.calls) == 2
    assert info.attempts == 2 + 0  # The fallback is not under with_retries.


def test_fallbacks_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    chat = with_fallbacks(FakeCompletion([Fail(401)], model="a/one"), FakeCompletion(["ok"]))
    with caplog.at_level(logging.INFO, logger="fixedmodel.routing"):
        chat(messages=MESSAGES)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING  # A key problem is worth a warning.
    assert "AuthenticationError" in record.getMessage()


def test_mixing_kinds_is_refused_at_wrap_time() -> None:
    with pytest.raises(TypeError, match="one kind"):
        with_fallbacks(FakeACompletion(), FakeCompletion())  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    with pytest.raises(TypeError, match="one kind"):
        with_fallbacks(FakeCompletion(), FakeEmbedding())  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    with pytest.raises(TypeError, match="one kind"):
        with_fallbacks(
            bind_completion("openai/x", api_key="sk-test"),
            bind_embedding("openai/y", api_key="sk-test"),  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        )
    with pytest.raises(TypeError, match="callable"):
        with_fallbacks(FakeCompletion(), "not callable")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    with pytest.raises(TypeError, match="FallbackPolicy"):
        with_fallbacks(FakeCompletion(), policy="fast")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    with pytest.raises(TypeError, match=r"FallbackPolicy\.content_policy"):
        FallbackPolicy(content_policy="yes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def test_repr_and_model_show_the_primary_without_secrets() -> None:
    primary = bind_acompletion("openai/gpt-4o", api_key="sk-secret-value")
    backup = bind_acompletion("openai/gpt-4o-mini", api_key="sk-secret-value")
    chat = with_fallbacks(primary, backup)
    assert chat.model == "openai/gpt-4o"  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
    shown = repr(chat)
    assert "gpt-4o-mini" in shown
    assert "sk-secret-value" not in shown


async def test_a_stream_read_ahead_by_nested_routing_layers_loses_no_chunk() -> None:
    from fixedmodel import with_load_balancing

    one = FakeACompletion(lambda call: "one two three", model="m")
    two = FakeACompletion(lambda call: "one two three", model="m")
    backup = FakeACompletion([], model="b")
    chat = with_fallbacks(with_load_balancing([one, two]), backup)
    stream = await chat(messages=MESSAGES, stream=True)
    assert type(stream).__name__ == "CustomStreamWrapper"
    assert isinstance(stream, litellm.CustomStreamWrapper)
    text = "".join([piece async for piece in responses.atext_deltas(stream)])
    assert text == "one two three"


def test_the_last_callables_stream_is_returned_unread() -> None:
    only = FakeCompletion(["a b"], model="m")
    stream = with_fallbacks(only)(messages=MESSAGES, stream=True)
    assert "_fixedmodel_first" not in vars(stream)
    assert "".join(responses.text_deltas(stream)) == "a b"


def test_the_log_line_of_a_routed_call_says_where_it_went(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from fixedmodel import with_logging

    chat = with_logging(
        with_fallbacks(FakeCompletion([Fail(503)], model="a/one"), FakeCompletion(["ok"]))
    )
    with caplog.at_level(logging.INFO, logger="fixedmodel"):
        chat(messages=MESSAGES)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "fixedmodel"]
    assert "served_by=fake/model#1 fallbacks_tried=1 deployments_tried=0" in line
    assert "route_failures=a/one#0:ServiceUnavailableError" in line


def test_a_load_balancer_with_every_deployment_cooling_falls_back() -> None:
    from fixedmodel import CooldownPolicy, with_load_balancing

    cooling = FakeCompletion([Fail(429, headers={"retry-after": "60"})], model="a/one")
    balanced = with_load_balancing([cooling], cooldown=CooldownPolicy(when_all_cooling="raise"))
    backup = FakeCompletion(lambda call: "backup", model="b/two")
    chat = with_fallbacks(balanced, backup)
    for _ in range(3):
        assert responses.text(chat(messages=MESSAGES)) == "backup"
    assert len(cooling.calls) == 1  # Cooling: the later calls went straight to the backup.
