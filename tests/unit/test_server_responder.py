"""The loopback server answers each request from a responder (fixedmodel.testing.server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixedmodel import (
    BoundCompletion,
    BoundEmbedding,
    bind_completion,
    bind_embedding,
    errors,
    responses,
)
from fixedmodel.testing import FakeToolCall, FakeUsage, Reply
from fixedmodel.testing.server import (
    DEFAULT_REPLY,
    Fault,
    OpenAIServer,
    RecordedRequest,
    ServerAnswer,
    embedding_vector,
)


@pytest.fixture(autouse=True, scope="module")
def _a_loop_this_module_closes() -> Iterator[None]:
    # litellm's sync path asks asyncio.get_event_loop(), which in a main thread without a loop
    # creates one nobody closes; collected later, its ResourceWarning fails some other test.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture(scope="module")
def running() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def server(running: OpenAIServer) -> Iterator[OpenAIServer]:
    running.reset()
    yield running
    running.reset()


@pytest.fixture
def chat(server: OpenAIServer) -> Iterator[BoundCompletion]:
    # Closed after the test, so no client socket outlives it.
    with bind_completion(
        "openai/test", api_base=server.base_url, api_key="k", max_retries=0
    ) as bound:
        yield bound


def summarize(request: RecordedRequest) -> str:
    return f"summary of {request.prompt.split()[-1]}"


def test_each_document_gets_its_own_summary(server: OpenAIServer, chat: BoundCompletion) -> None:
    server.responder = summarize
    documents = ["report", "memo", "letter"]
    answers = [
        responses.text(chat(messages=[{"role": "user", "content": f"Summarize: {d}"}]))
        for d in documents
    ]
    assert answers == ["summary of report", "summary of memo", "summary of letter"]
    assert [r.prompt for r in server.requests] == [f"Summarize: {d}" for d in documents]
    assert all(r.endpoint == "chat" and r.fault is None for r in server.requests)
    # Usage counts the answer the responder gave, not the default reply.
    response = chat(messages=[{"role": "user", "content": "Summarize: x"}])
    assert responses.usage(response).completion_tokens == 3


def test_a_reply_spec_shapes_a_stream(server: OpenAIServer, chat: BoundCompletion) -> None:
    def respond(request: RecordedRequest) -> ServerAnswer:
        assert request.stream
        return Reply(text="Hello there", chunks=["Hel", "lo", " there"], usage=FakeUsage(7, 3))

    server.responder = respond
    stream = chat(
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    usage: object = None
    for chunk in stream:
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            pieces.append(delta)
        usage = getattr(chunk, "usage", None) or usage
    assert pieces == ["Hel", "lo", " there"]
    assert getattr(usage, "prompt_tokens", None) == 7
    assert getattr(usage, "completion_tokens", None) == 3


def test_a_reply_spec_carries_tool_calls(server: OpenAIServer, chat: BoundCompletion) -> None:
    server.responder = lambda request: Reply(
        tool_calls=[FakeToolCall("lookup", {"city": "Oslo"}, id="call_1")]
    )
    response = bind_completion("openai/test", api_base=server.base_url, api_key="k", max_retries=0)(
        messages=[{"role": "user", "content": "Weather?"}]
    )
    choice = response.choices[0]
    assert getattr(choice, "finish_reason", None) == "tool_calls"
    calls = getattr(getattr(choice, "message", None), "tool_calls", None) or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_1", "lookup", '{"city": "Oslo"}')
    ]


def test_embeddings_from_a_responder(server: OpenAIServer) -> None:
    def respond(request: RecordedRequest) -> ServerAnswer:
        assert request.endpoint == "embeddings"
        return [[float(len(text)), 0.5] for text in request.inputs]

    server.responder = respond
    embed = bind_embedding("openai/text-embedding-3-small", api_base=server.base_url, api_key="k")
    with embed:
        _check_embeddings(server, embed)


def _check_embeddings(server: OpenAIServer, embed: BoundEmbedding) -> None:
    response = embed(input=["a", "abc"])
    assert responses.embeddings(response) == [[1.0, 0.5], [3.0, 0.5]]
    # One vector for every input.
    server.responder = lambda request: [0.25, 0.75]
    assert responses.embeddings(embed(input=["x", "y"])) == [[0.25, 0.75], [0.25, 0.75]]
    # None: the usual embedding of each input.
    server.responder = lambda request: None
    assert responses.embeddings(embed(input=["x"])) == [embedding_vector("x", 8)]


def test_a_responder_can_answer_with_a_fault(server: OpenAIServer, chat: BoundCompletion) -> None:
    def respond(request: RecordedRequest) -> ServerAnswer:
        return Fault.status(429, retry_after=1) if "busy" in request.prompt else "ok"

    server.responder = respond
    with pytest.raises(errors.RateLimitError):
        chat(messages=[{"role": "user", "content": "busy now"}])
    assert responses.text(chat(messages=[{"role": "user", "content": "hello"}])) == "ok"
    first, second = server.requests
    assert first.fault is not None and first.fault.status_code == 429
    assert second.fault is None


def test_a_failing_or_mismatched_responder_is_a_500(
    server: OpenAIServer, chat: BoundCompletion
) -> None:
    def broken(request: RecordedRequest) -> ServerAnswer:
        raise RuntimeError("bug in the test's responder")

    server.responder = broken
    with pytest.raises(errors.InternalServerError, match="bug in the test's responder"):
        chat(messages=[{"role": "user", "content": "Hi"}])
    server.responder = lambda request: [0.1, 0.2]  # vectors for a chat
    with pytest.raises(errors.InternalServerError, match="give a str or a Reply"):
        chat(messages=[{"role": "user", "content": "Hi"}])
    assert [r.fault.status_code if r.fault else None for r in server.requests] == [500, 500]


def test_an_async_responder_and_queued_faults_first(
    server: OpenAIServer, chat: BoundCompletion
) -> None:
    async def respond(request: RecordedRequest) -> ServerAnswer:
        await asyncio.sleep(0)
        return f"async {len(request.messages)}"

    server.responder = respond
    server.enqueue(Fault.status(503))  # a queued fault is served before the responder
    with pytest.raises(errors.ServiceUnavailableError):
        chat(messages=[{"role": "user", "content": "Hi"}])
    assert responses.text(chat(messages=[{"role": "user", "content": "Hi"}])) == "async 1"


def test_the_existing_api_still_works(server: OpenAIServer, chat: BoundCompletion) -> None:
    assert responses.text(chat(messages=[{"role": "user", "content": "Hi"}])) == DEFAULT_REPLY
    server.reply_text = "fixed text"
    try:
        assert responses.text(chat(messages=[{"role": "user", "content": "Hi"}])) == "fixed text"
        server.responder = lambda request: None  # None: the usual reply_text
        assert responses.text(chat(messages=[{"role": "user", "content": "Hi"}])) == "fixed text"
    finally:
        server.reply_text = DEFAULT_REPLY
    server.responder = summarize
    server.reset()
    assert server.responder is None


def test_a_standalone_server_takes_the_responder_at_construction() -> None:
    with (
        OpenAIServer(responder=lambda request: "built in") as standalone,
        bind_completion("openai/test", api_base=standalone.base_url, api_key="k") as chat,
    ):
        assert responses.text(chat(messages=[{"role": "user", "content": "Hi"}])) == "built in"


def test_the_standalone_example_in_the_docs_runs() -> None:
    page = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
    section = page.split("## The loopback server", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/testing.md", "exec"), {"__name__": "docs_example"})


def test_a_fixed_port_keeps_the_base_url_from_run_to_run() -> None:
    import socket

    with socket.socket() as probe:  # a port free right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    urls = []
    for _ in range(2):
        with OpenAIServer(port=port) as server:
            urls.append(server.base_url)
    assert urls == [f"http://127.0.0.1:{port}/v1"] * 2
    with pytest.raises(ValueError, match="port"):
        OpenAIServer(port=70000)
