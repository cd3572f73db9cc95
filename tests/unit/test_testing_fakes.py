"""fixedmodel.testing: scripted fakes answer with real litellm objects and record calls."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import litellm
import pytest
from pydantic import BaseModel

import fixedmodel
from fixedmodel import RetryPolicy, bind_acompletion, responses, with_retries
from fixedmodel.middleware import retries as retries_module
from fixedmodel.middleware._call import call_scope
from fixedmodel.testing import (
    CompletionCall,
    Fail,
    FakeACompletion,
    FakeAEmbedding,
    FakeCompletion,
    FakeEmbedding,
    FakeToolCall,
    FakeUsage,
    Reply,
    UnexpectedCallError,
)

MESSAGES = [{"role": "user", "content": "Say hi to me"}]
QUICK = RetryPolicy(initial_wait=0.001, max_wait=0.002, jitter=0.0, max_attempts=4)


class Weather(BaseModel):
    city: str
    celsius: float


async def test_scripted_text_is_a_real_model_response_with_usage() -> None:
    chat = FakeACompletion(["Hello!"])
    response = await chat(messages=MESSAGES)
    assert isinstance(response, litellm.ModelResponse)
    assert responses.text(response) == "Hello!"
    assert response.choices[0].finish_reason == "stop"
    assert responses.usage(response).prompt_tokens == 4  # four words in the request
    assert responses.usage(response).completion_tokens == 1
    assert chat.remaining == 0


async def test_recorded_keywords_include_the_defaults_and_follow_the_none_rule() -> None:
    chat = FakeACompletion(["a", "b"], temperature=0.2, api_key="sk-test")
    optional: float | None = None
    await chat(messages=MESSAGES, temperature=optional, seed=7)
    await chat(messages=MESSAGES, temperature=0.9, extra_params={"top_k": 3})
    first, second = chat.calls
    assert first.params == {"temperature": 0.2, "api_key": "sk-test", "seed": 7}
    assert second.params == {"temperature": 0.9, "api_key": "sk-test", "top_k": 3}
    assert first.messages == MESSAGES and not first.stream


async def test_a_scripted_stream_reads_with_the_delta_helpers_and_reports_usage() -> None:
    chat = FakeACompletion([Reply(text="one two three"), Reply(text="abc", chunks=["a", "bc"])])
    stream = await chat(messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    assert isinstance(stream, fixedmodel.CustomStreamWrapper)
    chunks = [chunk async for chunk in stream]
    texts = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices]
    assert [text for text in texts if text] == ["one", " two", " three"]
    assert chunks[-1].usage.completion_tokens == 3
    second = await chat(messages=MESSAGES, stream=True)
    assert [piece async for piece in responses.atext_deltas(second)] == ["a", "bc"]
    assert chat.calls[1].stream


def test_sync_stream_and_n_copies() -> None:
    chat = FakeCompletion(["x y", "z"])
    assert "".join(responses.text_deltas(chat(messages=MESSAGES, stream=True))) == "x y"
    response = chat(messages=MESSAGES, n=2)
    assert [responses.text(response, index=i) for i in range(2)] == ["z", "z"]


async def test_tool_calls_and_json_answers() -> None:
    chat = FakeACompletion(
        [
            Reply(tool_calls=[FakeToolCall("get_weather", {"city": "Oslo"}, id="call_1")]),
            Reply(json=Weather(city="Oslo", celsius=-3.5)),
        ]
    )
    called = await chat(messages=MESSAGES, tools=[{"type": "function", "function": {}}])
    (call,) = responses.tool_calls(called)
    assert (call.id, call.name, call.arguments_json()) == (
        "call_1",
        "get_weather",
        {"city": "Oslo"},
    )
    assert called.choices[0].finish_reason == "tool_calls"
    answer = await chat(messages=MESSAGES, response_format=Weather)
    assert responses.parse_json(answer, Weather) == Weather(city="Oslo", celsius=-3.5)


async def test_a_scripted_failure_goes_through_with_retries_like_a_real_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(retries_module, "_async_sleep", record)
    fake = FakeACompletion([Fail(429, headers={"retry-after-ms": "1500"}), Fail(503), "done"])
    with call_scope() as info:
        response = await with_retries(fake, QUICK)(messages=MESSAGES)
    assert responses.text(response) == "done"
    assert info.attempts == 3
    assert len(fake.calls) == 3
    assert slept[0] >= 1.5  # the scripted Retry-After was honoured


async def test_a_scripted_401_is_not_retried_and_is_litellms_class() -> None:
    fake = FakeACompletion([Fail(401, message="bad key"), "never"])
    with pytest.raises(litellm.AuthenticationError, match="bad key"):
        await with_retries(fake, QUICK)(messages=MESSAGES)
    assert len(fake.calls) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, litellm.BadRequestError),
        (404, litellm.NotFoundError),
        (408, litellm.Timeout),
        (429, litellm.RateLimitError),
        (500, litellm.InternalServerError),
        (503, litellm.ServiceUnavailableError),
        (504, litellm.Timeout),  # a gateway timeout, as litellm maps it
        (403, litellm.APIError),  # litellm's mapping for OpenAI-compatible providers
        (422, litellm.BadRequestError),
    ],
)
def test_each_status_raises_the_class_litellm_uses(status: int, error: type[Exception]) -> None:
    fake = FakeCompletion([Fail(status)])
    with pytest.raises(error) as caught:
        fake(messages=MESSAGES)
    assert caught.value.status_code == status  # type: ignore[attr-defined]


def test_an_exception_instance_is_raised_as_it_is() -> None:
    boom = ValueError("scripted")
    with pytest.raises(ValueError, match="scripted"):
        FakeCompletion([boom])(messages=MESSAGES)


def test_a_call_past_the_script_says_which_call_was_unexpected() -> None:
    fake = FakeCompletion(["only one"])
    fake(messages=MESSAGES)
    with pytest.raises(UnexpectedCallError, match=r"call #2 .*no answer left.*Say hi to me"):
        fake(messages=MESSAGES)


async def test_a_function_backed_fake_answers_from_the_request() -> None:
    def answer(call: CompletionCall) -> str:
        last = call.messages[-1]["content"]
        return f"echo: {last} at {call.params.get('temperature')}"

    fake = FakeACompletion(answer, temperature=0.5)
    response = await fake(messages=MESSAGES)
    assert responses.text(response) == "echo: Say hi to me at 0.5"


def test_model_at_call_time_is_refused_and_defaults_cannot_name_one() -> None:
    fake = FakeCompletion(["x"])
    with pytest.raises(TypeError, match="do not pass model="):
        fake(messages=MESSAGES, model="openai/gpt-4o")  # type: ignore[call-overload]
    assert fake.calls == []


async def test_embedding_fakes_answer_each_input() -> None:
    aembed = FakeAEmbedding([[0.5, 0.25], [[1.0], [2.0]]])
    same = await aembed(input=["a b", "c"])
    assert responses.embeddings(same) == [[0.5, 0.25], [0.5, 0.25]]
    assert responses.usage(same).prompt_tokens == 3
    per_input = await aembed(input=["a", "b"])
    assert responses.embeddings(per_input) == [[1.0], [2.0]]
    embed = FakeEmbedding([[[1.0], [2.0]]])
    with pytest.raises(ValueError, match="2 vectors for a request of 1 inputs"):
        embed(input="only one")


def test_usage_can_be_scripted_and_bad_scripts_are_refused() -> None:
    fake = FakeCompletion([Reply(text="x", usage=FakeUsage(100, 20))])
    assert responses.usage(fake(messages=MESSAGES)).total_tokens == 120
    with pytest.raises(ValueError, match="chunks joined"):
        Reply(text="abc", chunks=["a", "b"])
    with pytest.raises(ValueError, match="400-599"):
        Fail(200)
    with pytest.raises(ValueError, match="prompt_tokens"):
        FakeUsage(-1)


_STATUSES = (400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 501, 502, 503, 504, 529)


class _Answers(BaseHTTPRequestHandler):
    """Answers each request with the status its path asks for and a fake's error body."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status = int(self.path.split("/")[1])
        error = {"message": Fail(status).message, "type": "fake_error", "code": None}
        body = json.dumps({"error": error}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


async def test_a_scripted_status_fails_as_the_same_answer_over_http_does() -> None:
    # The fakes kept a table of their own: a 403 was PermissionDeniedError, a 422
    # UnprocessableEntityError and a 504 APIError, where a real call to an OpenAI-compatible
    # provider raises APIError, BadRequestError and Timeout; `except litellm.BadRequestError`
    # caught the real 422 and not the fake's. They now raise what litellm's mapping raises
    # for the same answer (status and error body).
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    model = "openai/gpt-4o-mini"
    real: list[tuple[str, object]] = []
    scripted: list[tuple[str, object]] = []
    try:
        for status in _STATUSES:
            base = f"http://127.0.0.1:{server.server_port}/{status}"
            async with bind_acompletion(model, api_base=base, api_key="k", max_retries=0) as chat:
                with pytest.raises(Exception) as over_http:
                    await chat(messages=MESSAGES)
            real.append((type(over_http.value).__name__, over_http.value.status_code))  # type: ignore[attr-defined]
            fake = FakeACompletion([Fail(status)], model=model)
            with pytest.raises(Exception) as from_fake:
                await fake(messages=MESSAGES)
            scripted.append((type(from_fake.value).__name__, from_fake.value.status_code))  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
    assert scripted == real


def test_a_scripted_status_follows_the_providers_mapping() -> None:
    # Anthropic's 403 is a PermissionDeniedError and its 529 (overloaded) an
    # InternalServerError, as litellm maps them for that provider.
    anthropic = "anthropic/claude-3-5-sonnet-20240620"
    with pytest.raises(litellm.PermissionDeniedError):
        FakeCompletion([Fail(403)], model=anthropic)(messages=MESSAGES)
    with pytest.raises(litellm.InternalServerError):
        FakeCompletion([Fail(529)], model=anthropic)(messages=MESSAGES)


def test_a_scripted_400_about_the_context_window_is_the_class_litellm_raises() -> None:
    # litellm reads the message too: a 400 saying the context is too long is a
    # ContextWindowExceededError (which with_fallbacks falls back on); the fake raised a
    # plain BadRequestError.
    text = "This model's maximum context length is 8192 tokens. However, you sent 9000 tokens."
    fake = FakeCompletion([Fail(400, message=text)], model="openai/gpt-4o-mini")
    with pytest.raises(litellm.ContextWindowExceededError):
        fake(messages=MESSAGES)
