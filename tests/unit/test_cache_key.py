"""The cache key: what changes it, what never does, and its canonical, versioned form."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel

from fixedmodel import bind_acompletion, bind_completion, bind_embedding
from fixedmodel.middleware._cache_key import (
    EXCLUDED_PARAMS,
    KEY_FORMAT_VERSION,
    KeyMaker,
    UncacheableRequestError,
    flight_key,
)

MESSAGES = [{"role": "user", "content": "Hi"}]
SECRET = "sk-SECRET-key-0123456789"


def key(
    kwargs: dict[str, Any], *, model: str | None = "openai/m", namespace: str | None = None
) -> str:
    return KeyMaker(None, model, namespace).key("completion", kwargs)


def base(**extra: Any) -> dict[str, Any]:
    return {"messages": MESSAGES, **extra}


class Answer(BaseModel):
    value: int


class OtherAnswer(BaseModel):
    value: str


class Colour(Enum):
    RED = "red"


def test_key_is_a_versioned_sha256() -> None:
    assert KEY_FORMAT_VERSION == 1
    assert re.fullmatch(r"fixedmodel:cache:v1:[0-9a-f]{64}", key(base()))


def test_same_request_same_key_whatever_the_order_and_container() -> None:
    one = base(temperature=0.2, tools=[{"type": "function", "function": {"name": "f"}}])
    other = {
        "tools": ({"function": {"name": "f"}, "type": "function"},),
        "temperature": 0.2,
        "messages": ({"content": "Hi", "role": "user"},),
    }
    assert key(one) == key(other)


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.3},
        {"top_p": 0.5},
        {"seed": 8},
        {"max_tokens": 5},
        {"n": 2},
        {"stop": ["\n"]},
        {"messages": [{"role": "user", "content": "Hello"}]},
        {"messages": [{"role": "system", "content": "Hi"}]},
        {"tools": [{"type": "function", "function": {"name": "g"}}]},
        {"tool_choice": "none"},
        {"response_format": {"type": "json_object"}},
        {"response_format": OtherAnswer},
        {"reasoning_effort": "high"},
        {"api_base": "http://localhost:9/v1"},
        {"api_version": "2025-01-01"},
        {"extra_body": {"top_k": 41}},
        {"top_k": 41},
        {"mock_response": "other"},
        {"user": "someone-else"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_parameter_that_changes_the_answer_changes_the_key(change: dict[str, Any]) -> None:
    reference = base(
        temperature=0.2,
        top_p=1.0,
        seed=7,
        max_tokens=10,
        n=1,
        stop=["."],
        tools=[{"type": "function", "function": {"name": "f"}}],
        tool_choice="auto",
        response_format=Answer,
        reasoning_effort="low",
        api_base="http://127.0.0.1:9/v1",
        api_version="2024-06-01",
        extra_body={"top_k": 40},
        top_k=40,
        mock_response="one",
        user="someone",
    )
    assert key(reference) != key({**reference, **change})


@pytest.mark.parametrize(
    "change",
    [
        {"api_key": "sk-other"},
        {"aws_secret_access_key": "other"},
        {"azure_ad_token": "other"},
        {"timeout": 99.0},
        {"max_retries": 0},
        {"num_retries": 5},
        {"extra_headers": {"traceparent": "00-2", "Authorization": "Bearer other"}},
        {"metadata": {"trace": "2"}},
        {"stream": False},
        {"stream_options": {"include_usage": True}},
        {"extra_body": {"top_k": 40, "api_key": "other"}},
    ],
    ids=lambda change: next(iter(change)),
)
def test_secrets_and_transport_settings_never_change_the_key(change: dict[str, Any]) -> None:
    reference = base(
        api_key=SECRET,
        aws_secret_access_key=SECRET,
        azure_ad_token=SECRET,
        timeout=5.0,
        max_retries=2,
        extra_headers={"traceparent": "00-1", "Authorization": f"Bearer {SECRET}"},
        metadata={"trace": "1"},
        extra_body={"top_k": 40, "api_key": SECRET},
    )
    assert key(reference) == key({**reference, **change})


def test_excluded_parameters_are_transport_and_bookkeeping_only() -> None:
    assert {"timeout", "max_retries", "num_retries", "shared_session"} <= EXCLUDED_PARAMS
    for answer_changing in ("api_base", "extra_body", "seed", "temperature", "extra_headers"):
        assert answer_changing not in EXCLUDED_PARAMS


@pytest.mark.parametrize(
    "change",
    [
        {"extra_headers": {"anthropic-beta": "output-128k-2025-02-19"}},
        {"bos_token": "<s>"},
        {"eos_token": "</s>"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_answer_changing_headers_and_template_tokens_change_the_key(
    change: dict[str, Any],
) -> None:
    assert key(base()) != key({**base(), **change})


def test_model_namespace_and_kind_are_part_of_the_key() -> None:
    reference = key(base())
    assert key(base(), model="openai/other") != reference
    assert key(base(), namespace="v2") != reference
    assert KeyMaker(None, "openai/m", None).key("embedding", base()) != reference


def test_pydantic_response_format_is_keyed_by_its_schema() -> None:
    class Answer(BaseModel):  # Same name and fields as the module-level class.
        value: int

    assert key(base(response_format=Answer)) == key(base(response_format=globals()["Answer"]))
    assert key(base(response_format=Answer)) != key(base(response_format=OtherAnswer))


def test_pydantic_objects_and_enums_in_parameters_are_encoded() -> None:
    assert key(base(extra_body={"answer": Answer(value=1)})) == key(
        base(extra_body={"answer": {"value": 1}})
    )
    assert key(base(extra_body={"colour": Colour.RED})) == key(base(extra_body={"colour": "red"}))


def test_extra_params_are_flattened_like_a_bound_call() -> None:
    flattened = key(base(top_k=40))
    assert key(base(extra_params={"top_k": 40})) == flattened
    # An explicit keyword wins over the same name inside extra_params, as in a bound call.
    assert key(base(top_k=40, extra_params={"top_k": 99})) == flattened


def test_bound_defaults_are_part_of_the_key() -> None:
    plain = bind_completion("openai/m", mock_response="x")
    warm = bind_completion("openai/m", mock_response="x", temperature=0.9)
    assert KeyMaker(warm, "openai/m", None).key("completion", base()) == KeyMaker(
        plain, "openai/m", None
    ).key("completion", base(temperature=0.9))
    assert KeyMaker(warm, "openai/m", None).key("completion", base()) != KeyMaker(
        plain, "openai/m", None
    ).key("completion", base())


def test_bound_api_base_changes_the_key_and_bound_api_key_does_not() -> None:
    def bound_key(**defaults: Any) -> str:
        return KeyMaker(bind_acompletion("openai/m", **defaults), "openai/m", None).key(
            "completion", base()
        )

    reference = bound_key(api_base="http://127.0.0.1:1/v1", api_key=SECRET)
    assert bound_key(api_base="http://127.0.0.1:1/v1", api_key="sk-other") == reference
    assert bound_key(api_base="http://localhost:1/v1", api_key=SECRET) != reference


def test_bound_extra_params_defaults_are_flattened() -> None:
    bound = bind_embedding("openai/e", extra_params={"dimensions": 4})
    maker = KeyMaker(bound, "openai/e", None)
    assert maker.key("embedding", {"input": "a"}) == KeyMaker(None, "openai/e", None).key(
        "embedding", {"input": "a", "dimensions": 4}
    )


def test_the_provider_hint_leaves_keys_alone_but_a_chosen_provider_is_keyed() -> None:
    # The bound object sends custom_llm_provider="openai" (see test_bind); the key is still
    # that of the request as written, so bound and hand-written callables share entries.
    bound = KeyMaker(bind_completion("openai/m"), "openai/m", None)
    plain = KeyMaker(None, "openai/m", None)
    assert bound.key("completion", base()) == plain.key("completion", base())
    chosen = base(custom_llm_provider="azure")
    assert bound.key("completion", chosen) == plain.key("completion", chosen)
    assert bound.key("completion", chosen) != bound.key("completion", base())


BOUND_DEFAULTS: list[dict[str, Any]] = [
    {},
    {"temperature": 0.5, "api_key": SECRET, "timeout": 3},
    {"extra_headers": {"anthropic-beta": "x", "Authorization": SECRET}, "seed": 1},
    {"extra_params": {"top_k": 4}, "temperature": 0.5},
]
CALL_KEYWORDS: list[dict[str, Any]] = [
    {},
    {"temperature": 0.1},
    {"api_key": "sk-other", "timeout": 9, "seed": 2},
    {"extra_headers": {"anthropic-beta": "y", "x-request-id": "r1"}},
    {"extra_params": {"top_k": 8, "temperature": 0.7}},
]


@pytest.mark.parametrize("defaults", BOUND_DEFAULTS)
@pytest.mark.parametrize("call", CALL_KEYWORDS)
def test_a_bound_key_is_the_key_of_the_merged_request(
    defaults: dict[str, Any], call: dict[str, Any]
) -> None:
    # Whatever the shortcut for bound defaults, the key must equal that of the merged request
    # (without the provider hint the bound object adds: it follows from the model).
    bound = bind_completion("openai/m", **defaults)
    received = bound._arguments(base(**call), hint=False)  # pyright: ignore[reportPrivateUsage]
    del received["model"]
    expected = KeyMaker(None, "openai/m", None).key("completion", received)
    assert KeyMaker(bound, "openai/m", None).key("completion", base(**call)) == expected


def test_model_keyword_on_a_bound_callable_is_refused_like_the_call() -> None:
    maker = KeyMaker(bind_completion("openai/m"), "openai/m", None)
    with pytest.raises(TypeError, match="bound to model 'openai/m'"):
        maker.key("completion", base(model="openai/other"))


@pytest.mark.parametrize(
    "value",
    [object(), b"raw", {1, 2}, {("a", "b"): 1}, int],
    ids=["object", "bytes", "set", "tuple keys", "class"],
)
def test_a_parameter_without_canonical_form_is_uncacheable(value: object) -> None:
    with pytest.raises(UncacheableRequestError, match="'extra_body'"):
        key(base(extra_body={"x": value}))


def test_a_reference_cycle_is_uncacheable() -> None:
    cycle: dict[str, object] = {}
    cycle["self"] = cycle
    with pytest.raises(UncacheableRequestError, match="'extra_body'"):
        key(base(extra_body=cycle))


def test_the_key_holds_no_secret() -> None:
    assert SECRET not in key(base(api_key=SECRET))


# Single flight: the flight key adds what the cache key leaves out (issue 10, item 5).


def _token_provider() -> str:
    return "token"


def _other_provider() -> str:
    return "other token"


def flight(kwargs: dict[str, Any]) -> str:
    maker = KeyMaker(None, "openai/m", None)
    request = maker.read(kwargs)
    return flight_key(maker.request_key("completion", request), request)


@pytest.mark.parametrize(
    "change",
    [
        {"api_key": "sk-other"},
        {"extra_params": {"api_key": "sk-other"}},
        {"timeout": 0.2},
        {"max_retries": 0},
        {"client": object()},
        {"azure_ad_token_provider": _other_provider},
        {"extra_headers": {"Authorization": "Bearer other"}},
        {"extra_headers": {"Ocp-Apim-Subscription-Key": "other"}},
        {"extra_body": {"top_k": 40, "api_key": "other"}},
    ],
    ids=[
        "api_key",
        "extra_params-api_key",
        "timeout",
        "max_retries",
        "client",
        "token-provider",
        "authorization-header",
        "apim-header",
        "extra_body-secret",
    ],
)
def test_credentials_and_transport_split_the_flight_not_the_entry(
    change: dict[str, Any],
) -> None:
    reference = base(
        api_key=SECRET,
        timeout=30.0,
        azure_ad_token_provider=_token_provider,
        extra_headers={"Authorization": f"Bearer {SECRET}", "Ocp-Apim-Subscription-Key": "k"},
        extra_body={"top_k": 40, "api_key": SECRET},
    )
    changed = {**reference, **change}
    if "extra_params" in change:
        del changed["api_key"]
    assert key(reference) == key(changed)
    assert flight(reference) != flight(changed)
    assert flight(reference) == flight(dict(reference))  # Identical requests still share.


def test_the_flight_key_holds_no_secret_in_the_clear() -> None:
    request = base(api_key=SECRET, extra_headers={"x-api-key": SECRET})
    flown = flight(request)
    assert SECRET not in flown
    assert flown.startswith(key(request))


def test_requests_without_credentials_fly_under_their_cache_key() -> None:
    assert flight(base(temperature=0.2)) == key(base(temperature=0.2))


@pytest.mark.parametrize(
    "header", ["Ocp-Apim-Subscription-Key", "x-goog-api-key", "X-Subscription-Token", "x-key"]
)
def test_credential_headers_never_change_the_key(header: str) -> None:
    one = base(extra_headers={header: SECRET})
    other = base(extra_headers={header: "another-secret"})
    assert key(one) == key(other)
