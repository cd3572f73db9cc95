"""Bound callables speaking real HTTP through litellm to the loopback server."""

from __future__ import annotations

import logging

import pytest

from fixedmodel import (
    bind_acompletion,
    bind_aembedding,
    bind_completion,
    bind_embedding,
    responses,
)
from tests.support.openai_server import OpenAIServer, embedding_vector

MESSAGES = [{"role": "user", "content": "Hello?"}]
SECRET = "sk-SECRET-core-0123456789"


async def test_async_chat_non_stream(server: OpenAIServer) -> None:
    server.reply_text = "A plain answer."
    async with bind_acompletion(
        "openai/test-model", api_base=server.base_url, api_key="sk-x"
    ) as chat:
        response = await chat(messages=MESSAGES)
    assert responses.text(response) == "A plain answer."
    assert server.request_count() == 1
    assert server.requests[0].body["model"] == "test-model"
    assert server.requests[0].body["messages"] == MESSAGES
    assert responses.usage(response).completion_tokens > 0


async def test_async_chat_stream_consumed_to_the_end(server: OpenAIServer) -> None:
    server.reply_text = "Streamed  words,\nwith odd spacing. "
    async with bind_acompletion(
        "openai/test-model", api_base=server.base_url, api_key="sk-x"
    ) as chat:
        stream = await chat(messages=MESSAGES, stream=True)
        pieces = [piece async for piece in responses.atext_deltas(stream)]
    assert len(pieces) > 1
    assert "".join(pieces) == server.reply_text
    assert server.requests[0].body["stream"] is True


def test_sync_chat_non_stream_and_stream(server: OpenAIServer) -> None:
    server.reply_text = "Sync reply over HTTP."
    with bind_completion("openai/test-model", api_base=server.base_url, api_key="sk-x") as chat:
        assert responses.text(chat(messages=MESSAGES)) == "Sync reply over HTTP."
        stream = chat(messages=MESSAGES, stream=True)
        assert "".join(responses.text_deltas(stream)) == "Sync reply over HTTP."
    assert server.request_count() == 2


async def test_async_embeddings(server: OpenAIServer) -> None:
    async with bind_aembedding(
        "openai/text-embedding-3-small", api_base=server.base_url, api_key="sk-x"
    ) as embed:
        response = await embed(input=["first", "second"])
    vectors = responses.embeddings(response)
    assert len(vectors) == 2
    assert vectors[0] == pytest.approx(embedding_vector("first"))
    assert vectors[1] == pytest.approx(embedding_vector("second"))
    assert server.request_count("/embeddings") == 1


def test_sync_embeddings(server: OpenAIServer) -> None:
    with bind_embedding(
        "openai/text-embedding-3-small", api_base=server.base_url, api_key="k"
    ) as embed:
        vectors = responses.embeddings(embed(input="only one"))
    assert len(vectors) == 1
    assert vectors[0] == pytest.approx(embedding_vector("only one"))


async def test_bound_defaults_reach_the_server(server: OpenAIServer) -> None:
    async with bind_acompletion(
        "openai/test-model",
        api_base=server.base_url,
        api_key="sk-x",
        temperature=0.25,
        max_tokens=33,
        seed=11,
        stop=["END"],
        extra_headers={"X-Team": "search"},
    ) as chat:
        await chat(messages=MESSAGES)
    body = server.requests[0].body
    assert body["temperature"] == 0.25
    assert body["max_tokens"] == 33
    assert body["seed"] == 11
    assert body["stop"] == ["END"]
    assert server.requests[0].headers["x-team"] == "search"


async def test_call_time_value_overrides_a_default_key_by_key(server: OpenAIServer) -> None:
    async with bind_acompletion(
        "openai/test-model",
        api_base=server.base_url,
        api_key="sk-x",
        temperature=0.25,
        max_tokens=33,
    ) as chat:
        await chat(messages=MESSAGES, temperature=0.9)
        await chat(messages=MESSAGES)
    first, second = (request.body for request in server.requests)
    assert (first["temperature"], first["max_tokens"]) == (0.9, 33)
    assert (second["temperature"], second["max_tokens"]) == (0.25, 33)


async def test_extra_params_reach_the_request_body(server: OpenAIServer) -> None:
    async with bind_acompletion(
        "openai/test-model", api_base=server.base_url, api_key="sk-x", extra_params={"top_k": 5}
    ) as chat:
        await chat(messages=MESSAGES, extra_body={"repetition_penalty": 1.1})
    body = server.requests[0].body
    assert body.get("top_k") == 5 or body.get("extra_body", {}).get("top_k") == 5
    assert body["repetition_penalty"] == 1.1


async def test_api_key_is_sent_but_never_shown(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with bind_acompletion(
        "openai/test-model", api_base=server.base_url, api_key=SECRET
    ) as chat:
        shown = [repr(chat), str(chat)]
        await chat(messages=MESSAGES)
        with pytest.raises(TypeError) as misuse:
            await chat(messages=MESSAGES, model="openai/other")  # type: ignore[call-overload]  # misuse under test
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert all(SECRET not in text for text in shown)
    assert SECRET not in str(misuse.value)
    assert caplog.records, "DEBUG logging captured nothing; the check below would be empty"
    assert all(SECRET not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "openai/my-finetune"])
async def test_a_bound_call_sends_what_the_raw_litellm_call_sends(
    server: OpenAIServer, model: str
) -> None:
    # The bound object adds custom_llm_provider to litellm's call; the wire must not notice,
    # and the answer must be priced (or not) the same.
    import litellm

    async with bind_acompletion(model, api_base=server.base_url, api_key="sk-x") as chat:
        bound = await chat(messages=MESSAGES, temperature=0.5)
        # Inside the block: closing the bound object also closes the client litellm cached.
        raw = await litellm.acompletion(
            model=model,
            api_base=server.base_url,
            api_key="sk-x",
            messages=MESSAGES,
            temperature=0.5,
        )
    via_bound, via_raw = server.requests
    assert via_bound.path == via_raw.path
    assert via_bound.body == via_raw.body
    skipped = {"x-stainless-retry-count", "x-stainless-read-timeout", "content-length"}
    assert {k: v for k, v in via_bound.headers.items() if k not in skipped} == {
        k: v for k, v in via_raw.headers.items() if k not in skipped
    }
    assert bound._hidden_params["custom_llm_provider"] == raw._hidden_params["custom_llm_provider"]
    assert bound._hidden_params.get("response_cost") == raw._hidden_params.get("response_cost")


# None means "not given": a bound default applies. Checked at the wire for all four kinds.
async def test_none_at_call_time_keeps_the_bound_temperature_and_key(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    async with bind_acompletion(
        "openai/test-model", api_base=server.base_url, api_key=SECRET, temperature=0.2
    ) as chat:
        await chat(messages=MESSAGES, temperature=None, api_key=None, max_tokens=None)
        stream = await chat(messages=MESSAGES, stream=True, temperature=None, api_key=None)
        _ = [piece async for piece in responses.atext_deltas(stream)]
    for request in server.requests:
        assert request.body["temperature"] == 0.2
        assert request.headers["authorization"] == f"Bearer {SECRET}"
        assert "max_tokens" not in request.body


def test_none_at_call_time_keeps_the_bound_defaults_of_a_sync_call(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    with bind_completion(
        "openai/test-model", api_base=server.base_url, api_key=SECRET, temperature=0.2
    ) as chat:
        chat(messages=MESSAGES, temperature=None, api_key=None, extra_params={"seed": None})
    (request,) = server.requests
    assert request.body["temperature"] == 0.2
    assert "seed" not in request.body
    assert request.headers["authorization"] == f"Bearer {SECRET}"


async def test_none_at_call_time_keeps_the_bound_defaults_of_embeddings(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    async with bind_aembedding(
        "openai/text-embedding-3-small", api_base=server.base_url, api_key=SECRET, dimensions=4
    ) as aembed:
        await aembed(input="a", api_key=None, dimensions=None, user=None)
    with bind_embedding(
        "openai/text-embedding-3-small", api_base=server.base_url, api_key=SECRET, dimensions=4
    ) as embed:
        embed(input="b", api_key=None, dimensions=None)
    assert len(server.requests) == 2
    for request in server.requests:
        assert request.body["dimensions"] == 4
        assert "user" not in request.body
        assert request.headers["authorization"] == f"Bearer {SECRET}"


async def test_message_models_reach_the_server_as_plain_messages(server: OpenAIServer) -> None:
    from openai.types.chat import ChatCompletionMessage

    async with bind_acompletion(
        "openai/test-model", api_base=server.base_url, api_key="sk-x"
    ) as chat:
        reply = (await chat(messages=MESSAGES)).choices[0].message
        await chat(
            messages=[
                *MESSAGES,
                reply,
                ChatCompletionMessage(role="assistant", content="from the SDK"),
                {"role": "user", "content": "More?"},
            ]
        )
    sent = server.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "assistant", "user"]
    assert sent[1]["content"] == server.reply_text
    assert sent[2]["content"] == "from the SDK"
