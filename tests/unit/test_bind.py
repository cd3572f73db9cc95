"""Binding: argument handling, misuse errors, repr, lazy import (no network: mock_response)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
import warnings

import pytest

import fixedmodel
from fixedmodel import (
    AFixedModelCompletion,
    AFixedModelEmbedding,
    FixedModelCompletion,
    FixedModelEmbedding,
    UnknownKeywordWarning,
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    bind_embedding,
    responses,
    with_retries,
)

MESSAGES = [{"role": "user", "content": "Hi"}]


async def test_async_call_returns_litellm_model_response() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini", mock_response="Hello there")
    response = await chat(messages=MESSAGES)
    assert isinstance(response, fixedmodel.ModelResponse)
    assert responses.text(response) == "Hello there"


async def test_async_stream_is_litellms_own_wrapper() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini", mock_response="one two three")
    stream = await chat(messages=MESSAGES, stream=True)
    # litellm's own object, not a re-wrapping; its class may be the subclass that
    # watch_stream switches it to (the object still tells the bound object when it ends).
    assert isinstance(stream, fixedmodel.CustomStreamWrapper)
    assert fixedmodel.CustomStreamWrapper in type(stream).__mro__[:2]
    pieces = [piece async for piece in responses.atext_deltas(stream)]
    assert "".join(pieces) == "one two three"


def test_sync_call_and_stream() -> None:
    chat = bind_completion("openai/gpt-4o-mini", mock_response="sync text")
    assert responses.text(chat(messages=MESSAGES)) == "sync text"
    stream = chat(messages=MESSAGES, stream=True)
    assert "".join(responses.text_deltas(stream)) == "sync text"


def test_call_time_keyword_overrides_bound_default() -> None:
    chat = bind_completion("openai/gpt-4o-mini", mock_response="from default")
    assert responses.text(chat(messages=MESSAGES, mock_response="from call")) == "from call"
    assert responses.text(chat(messages=MESSAGES)) == "from default"


async def test_embedding_kinds_return_embedding_response() -> None:
    vector = [0.5, 0.25]
    aembed = bind_aembedding("openai/text-embedding-3-small", mock_response=vector)
    embed = bind_embedding("openai/text-embedding-3-small", mock_response=vector)
    assert responses.embeddings(await aembed(input="a")) == [vector]
    assert responses.embeddings(embed(input="a")) == [vector]


def test_bound_objects_satisfy_their_runtime_checkable_protocols() -> None:
    assert isinstance(bind_acompletion("openai/m"), AFixedModelCompletion)
    assert isinstance(bind_completion("openai/m"), FixedModelCompletion)
    assert isinstance(bind_aembedding("openai/m"), AFixedModelEmbedding)
    assert isinstance(bind_embedding("openai/m"), FixedModelEmbedding)


async def test_model_at_call_time_is_a_type_error_naming_the_bound_model() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini", mock_response="x")
    with pytest.raises(TypeError, match=r"bound to model 'openai/gpt-4o-mini'"):
        await chat(messages=MESSAGES, model="openai/gpt-4o")  # type: ignore[call-overload]  # the misuse under test
    embed = bind_embedding("openai/e", mock_response=[0.0])
    with pytest.raises(TypeError, match=r"bound to model 'openai/e'"):
        embed(input="a", model="openai/other")  # type: ignore[call-arg]  # the misuse under test


def test_model_through_extra_params_is_rejected_too() -> None:
    chat = bind_completion("openai/gpt-4o-mini", mock_response="x")
    with pytest.raises(TypeError, match="model is fixed"):
        chat(messages=MESSAGES, extra_params={"model": "openai/gpt-4o"})
    with pytest.raises(TypeError, match="model is fixed"):
        bind_completion("openai/gpt-4o-mini", extra_params={"model": "openai/gpt-4o"})


@pytest.mark.parametrize("factory", [bind_acompletion, bind_completion, bind_embedding])
def test_empty_model_is_a_value_error_at_bind_time(factory: object) -> None:
    with pytest.raises(ValueError, match="non-empty model name"):
        factory("  ")  # type: ignore[operator]  # parametrized factory


def test_non_string_model_is_a_type_error_at_bind_time() -> None:
    with pytest.raises(TypeError, match="as a str, got int"):
        bind_acompletion(42)  # type: ignore[arg-type]  # the misuse under test


def test_model_among_defaults_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="takes the model once"):
        bind_acompletion("openai/a", model="openai/b")  # type: ignore[call-arg]  # misuse under test


def test_positional_arguments_are_refused() -> None:
    chat = bind_completion("openai/gpt-4o-mini", mock_response="x")
    with pytest.raises(TypeError):
        chat(MESSAGES)  # type: ignore[call-overload]  # the misuse under test


def test_extra_params_are_flattened_into_the_litellm_call() -> None:
    chat = bind_completion("openai/gpt-4o-mini", extra_params={"mock_response": "via escape"})
    assert responses.text(chat(messages=MESSAGES)) == "via escape"


def test_extra_params_must_be_a_mapping() -> None:
    chat = bind_completion("openai/gpt-4o-mini", mock_response="x")
    with pytest.raises(TypeError, match="extra_params must be a mapping"):
        chat(messages=MESSAGES, extra_params=["top_k", 3])  # type: ignore[arg-type]  # misuse


def test_repr_shows_model_and_default_names_but_no_secret_value() -> None:
    chat = bind_acompletion(
        "openai/gpt-4o-mini",
        api_key="sk-SECRET-abc123",
        temperature=0.3,
        extra_params={"aws_secret_access_key": "SECRET-2"},
    )
    text = repr(chat)
    assert "openai/gpt-4o-mini" in text
    assert "api_key" in text and "temperature" in text
    assert "SECRET" not in text
    assert chat.default_names == ("api_key", "temperature", "extra_params.aws_secret_access_key")


async def test_close_is_idempotent_and_the_object_stays_usable() -> None:
    async with bind_acompletion("openai/gpt-4o-mini", mock_response="x") as chat:
        assert responses.text(await chat(messages=MESSAGES)) == "x"
    await chat.aclose()
    assert responses.text(await chat(messages=MESSAGES)) == "x"
    with bind_completion("openai/gpt-4o-mini", mock_response="y") as sync_chat:
        assert responses.text(sync_chat(messages=MESSAGES)) == "y"
    sync_chat.close()


def test_import_does_not_import_litellm_and_sets_no_global() -> None:
    code = textwrap.dedent(
        """
        import os, sys
        os.environ.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)
        import fixedmodel
        assert "litellm" not in sys.modules, "import fixedmodel imported litellm"
        assert "LITELLM_LOCAL_MODEL_COST_MAP" not in os.environ
        fixedmodel.bind_completion("openai/gpt-4o-mini")
        assert "litellm" in sys.modules
        assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_user_choice_of_cost_map_is_respected() -> None:
    # A stand-in litellm module keeps this offline: only the environment decision matters.
    code = textwrap.dedent(
        """
        import os, sys, types
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "False"
        sys.modules["litellm"] = types.ModuleType("litellm")
        from fixedmodel._litellm import litellm_module
        assert litellm_module() is sys.modules["litellm"]
        print(os.environ["LITELLM_LOCAL_MODEL_COST_MAP"])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_response_types_resolve_lazily_from_litellm() -> None:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    from litellm.types.utils import EmbeddingResponse, ModelResponse

    assert fixedmodel.ModelResponse is ModelResponse
    assert fixedmodel.EmbeddingResponse is EmbeddingResponse
    assert fixedmodel.CustomStreamWrapper is CustomStreamWrapper
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = fixedmodel.Nope  # type: ignore[attr-defined]  # the failure under test


def test_precedence_later_wins_across_defaults_extra_params_and_call() -> None:
    chat = bind_completion(
        "openai/m", mock_response="bound keyword", extra_params={"mock_response": "bound extra"}
    )
    assert responses.text(chat(messages=MESSAGES)) == "bound keyword"
    via_call_extra = chat(messages=MESSAGES, extra_params={"mock_response": "call extra"})
    assert responses.text(via_call_extra) == "call extra"
    both = chat(
        messages=MESSAGES, mock_response="call keyword", extra_params={"mock_response": "x"}
    )
    assert responses.text(both) == "call keyword"


class Recorder:
    """Stands in for litellm.completion while a bound object is made; records each call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    def __call__(self, **kwargs: object) -> object:
        self.calls.append(kwargs)
        return "answer"


def sent(model: str, monkeypatch: pytest.MonkeyPatch, **defaults: object) -> dict[str, object]:
    """What the bound completion of ``model`` hands litellm for a plain call."""
    import litellm

    recorder = Recorder()
    monkeypatch.setattr(litellm, "completion", recorder)
    chat = bind_completion(model, **defaults)  # type: ignore[arg-type]  # test helper
    chat(messages=MESSAGES)
    return recorder.calls[-1]


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("openai/gpt-4o-mini", "openai"),
        ("anthropic/claude-3-5-sonnet-20240620", "anthropic"),
        ("openai/my-finetune", "openai"),
    ],
)
def test_the_provider_the_model_names_is_passed_to_litellm(
    model: str, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwarded = sent(model, monkeypatch, api_base="http://127.0.0.1:9/v1")
    assert forwarded["custom_llm_provider"] == provider
    assert forwarded["model"] == model  # The model string litellm sees is unchanged.


@pytest.mark.parametrize("model", ["gpt-4o-mini", "no-such-provider/m"])
def test_no_provider_is_passed_when_the_model_does_not_name_one(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "custom_llm_provider" not in sent(model, monkeypatch)


def test_a_provider_the_caller_chooses_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sent("openai/m", monkeypatch, custom_llm_provider="azure")["custom_llm_provider"] == (
        "azure"
    )
    via_extra = sent("openai/m", monkeypatch, extra_params={"custom_llm_provider": "together_ai"})
    assert via_extra["custom_llm_provider"] == "together_ai"
    import litellm

    recorder = Recorder()
    monkeypatch.setattr(litellm, "completion", recorder)
    chat = bind_completion("openai/m")
    chat(messages=MESSAGES, custom_llm_provider="azure")
    assert recorder.calls[-1]["custom_llm_provider"] == "azure"


def test_the_provider_is_not_among_the_default_names() -> None:
    assert bind_completion("openai/m", temperature=0.1).default_names == ("temperature",)


def test_no_provider_is_passed_for_a_globally_aliased_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # litellm renames an aliased model before it resolves the provider: a hint made from the
    # bound name would send the request to the wrong provider.
    import litellm

    recorder = Recorder()
    monkeypatch.setattr(litellm, "completion", recorder)
    chat = bind_completion("openai/smart")
    chat(messages=MESSAGES)
    assert recorder.calls[-1]["custom_llm_provider"] == "openai"
    monkeypatch.setattr(litellm, "model_alias_map", {"openai/smart": "anthropic/claude-3-opus"})
    chat(messages=MESSAGES)
    assert "custom_llm_provider" not in recorder.calls[-1]


def test_binding_never_resolves_a_provider_that_logs_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # For GitHub Copilot and ChatGPT, litellm's provider lookup starts an OAuth device login.
    import litellm

    asked: list[str] = []
    real = litellm.get_llm_provider

    def recording(model: str, **kwargs: object) -> object:
        asked.append(model)
        return real(model, **kwargs)  # type: ignore[arg-type]  # litellm's own keywords

    monkeypatch.setattr(litellm, "get_llm_provider", recording)
    bind_completion("github_copilot/gpt-4o")
    bind_completion("chatgpt/gpt-4o")
    assert asked == []
    bind_completion("openai/gpt-4o")
    assert asked == ["openai/gpt-4o", "openai/gpt-4o"]


def test_none_at_call_time_means_not_given_so_the_bound_default_applies() -> None:
    chat = bind_completion("openai/gpt-4o-mini", mock_response="from default")
    forwarded: str | None = None  # an optional setting forwarded as real code does
    assert responses.text(chat(messages=MESSAGES, mock_response=forwarded)) == "from default"
    escaped = chat(messages=MESSAGES, extra_params={"mock_response": None})
    assert responses.text(escaped) == "from default"


def test_none_is_never_forwarded_to_litellm() -> None:
    chat = bind_completion("openai/gpt-4o-mini", temperature=0.2, api_key="sk-bound", seed=None)
    sent = chat._arguments({"messages": MESSAGES, "temperature": None, "api_key": None})
    assert sent["temperature"] == 0.2
    assert sent["api_key"] == "sk-bound"
    assert "seed" not in sent
    assert None not in sent.values()


def test_layers_read_the_request_litellm_will_receive() -> None:
    from fixedmodel.middleware._call import request_reader

    bound = bind_completion("openai/gpt-4o-mini", stream=True, extra_params={"top_k": 3})
    read = request_reader(with_retries(bound))
    request = read({"messages": MESSAGES, "temperature": None})
    assert request == {"messages": MESSAGES, "stream": True, "top_k": 3}

    def fake(**kwargs: object) -> object:
        return kwargs

    read_fake = request_reader(fake)
    assert read_fake({"messages": MESSAGES, "seed": None, "extra_params": {"top_k": 4}}) == {
        "messages": MESSAGES,
        "top_k": 4,
    }


def test_litellm_response_classes_and_errors_resolve_lazily() -> None:
    from litellm import exceptions
    from litellm.types import utils

    for name in (
        "Message",
        "Choices",
        "StreamingChoices",
        "Delta",
        "Usage",
        "ChatCompletionMessageToolCall",
        "ChatCompletionMessageCustomToolCall",
        "ChatCompletionDeltaToolCall",
        "Function",
        "ModelResponseStream",
    ):
        assert getattr(fixedmodel, name) is getattr(utils, name), name
        assert name in fixedmodel.__all__
    for name in fixedmodel.errors.__all__:
        assert getattr(fixedmodel.errors, name) is getattr(exceptions, name), name
    assert issubclass(
        fixedmodel.errors.ContextWindowExceededError, fixedmodel.errors.BadRequestError
    )
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = fixedmodel.errors.Nope  # type: ignore[attr-defined]  # the failure under test


def test_errors_import_litellm_only_when_used_and_after_the_cost_map_default() -> None:
    code = textwrap.dedent(
        """
        import os, sys
        os.environ.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)
        from fixedmodel import errors
        assert "litellm" not in sys.modules, "fixedmodel.errors imported litellm"
        try:
            raise errors.RateLimitError("slow down", llm_provider="openai", model="m")
        except errors.RateLimitError:
            pass
        assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_messages_may_be_message_models_as_litellm_accepts() -> None:
    from openai.types.chat import ChatCompletionMessage
    from pydantic import BaseModel

    class Note(BaseModel):
        role: str
        content: str

    chat = bind_completion("openai/gpt-4o-mini", mock_response="ok")
    reply = chat(messages=MESSAGES).choices[0].message  # a litellm Message
    history = [
        *MESSAGES,
        reply,
        ChatCompletionMessage(role="assistant", content="sdk model"),
        Note(role="user", content="own model"),
    ]
    assert responses.text(chat(messages=history)) == "ok"


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fixedmodel._bind._warned", set())


@pytest.mark.usefixtures("fresh_warnings")
def test_a_keyword_nobody_knows_is_warned_about_once_and_still_sent() -> None:
    seen: list[object] = []
    chat = bind_completion("openai/gpt-4o-mini", mock_response="ok")
    chat._function = lambda **kwargs: seen.append(kwargs)  # type: ignore[method-assign]  # record what litellm would get
    with pytest.warns(fixedmodel.UnknownKeywordWarning, match=r"'temprature'.*'temperature'"):
        chat(messages=MESSAGES, temprature=0.2)  # type: ignore[call-overload]  # the typo under test
    assert seen[-1]["temprature"] == 0.2  # type: ignore[index]  # forwarded: never rejected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chat(messages=MESSAGES, temprature=0.3)  # type: ignore[call-overload]  # once per name
        # Typed keywords, litellm's own listed keywords and the escape hatch never warn.
        chat(messages=MESSAGES, temperature=0.1, fallbacks=["openai/m2"], mock_timeout=False)
        chat(messages=MESSAGES, extra_params={"top_k": 40})
        chat(messages=MESSAGES, **{"litellm_call_id": "abc"})  # type: ignore[call-overload]  # litellm lists it


@pytest.mark.usefixtures("fresh_warnings")
def test_an_unknown_bound_default_is_warned_about_at_bind_time() -> None:
    with pytest.warns(fixedmodel.UnknownKeywordWarning, match=r"'dimension'.*'dimensions'"):
        bind_aembedding("openai/e", dimension=5)  # type: ignore[call-arg]  # the typo under test
    with pytest.warns(fixedmodel.UnknownKeywordWarning, match="'input_type'"):
        bind_embedding("openai/e", mock_response=[0.0])(input="a", input_type="query")  # type: ignore[call-arg]  # provider keyword at top level


async def test_a_stack_tells_its_model_and_closes_the_bound_object() -> None:
    closed: list[str] = []
    bound = bind_acompletion("openai/gpt-4o-mini", mock_response="ok")
    stack = with_retries(with_retries(bound))
    assert stack.model == "openai/gpt-4o-mini"

    async def aclose() -> None:
        closed.append("aclose")

    bound_type = type(bound)
    original = bound_type.aclose
    bound_type.aclose = lambda self: aclose()  # type: ignore[method-assign,assignment]  # observe the call
    try:
        await stack.aclose()
        async with stack as entered:
            assert entered is stack
            assert responses.text(await entered(messages=MESSAGES)) == "ok"
    finally:
        bound_type.aclose = original  # type: ignore[method-assign]
    assert closed == ["aclose", "aclose"]

    sync_bound = bind_completion("openai/gpt-4o-mini", mock_response="ok")
    with with_retries(sync_bound) as sync_stack:
        assert responses.text(sync_stack(messages=MESSAGES)) == "ok"
    sync_stack.close()


async def test_closing_a_stack_over_a_fake_is_a_no_op() -> None:
    async def fake(**kwargs: object) -> object:
        return kwargs

    stack = with_retries(fake)  # type: ignore[call-overload]  # a bare function stands in
    await stack.aclose()
    stack.close()
    assert stack.model is None


def test_repr_of_a_stack_names_public_things_only() -> None:
    from fixedmodel import with_logging, with_metrics

    stack = with_logging(with_metrics(with_retries(bind_acompletion("openai/m"))))
    shown = repr(stack)
    assert not shown.startswith("_"), shown
    assert "(_" not in shown, shown
    assert "BoundACompletion(model='openai/m'" in shown


def test_an_unknown_keyword_is_reported_at_the_callers_line() -> None:
    # However many of fixedmodel's frames stand between (the bound object's __call__, its
    # kind's _complete, _call, the argument check), the warning names the line to fix.
    chat = bind_completion("gpt-4o-mini", mock_response="hi")
    embed = bind_embedding("text-embedding-3-small", mock_response=[0.5])
    with pytest.warns(UnknownKeywordWarning) as caught:
        chat(messages=[{"role": "user", "content": "x"}], tempreature_typo_a=0.5)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
        line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]  # pyright: ignore[reportOptionalMemberAccess]
    assert [(w.filename, w.lineno) for w in caught if w.category is UnknownKeywordWarning] == [
        (__file__, line)
    ]
    with pytest.warns(UnknownKeywordWarning) as caught:
        embed(input="x", dimensions_typo_b=8)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
        line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]  # pyright: ignore[reportOptionalMemberAccess]
    assert [(w.filename, w.lineno) for w in caught if w.category is UnknownKeywordWarning] == [
        (__file__, line)
    ]
