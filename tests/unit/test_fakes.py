"""A hand-written fake conforms to AFixedModelCompletion and works where the real one does."""

from __future__ import annotations

from fixedmodel import AFixedModelCompletion, ModelResponse, bind_acompletion, responses
from tests.typing.good.fake_chat import FakeChat


async def summarize(chat: AFixedModelCompletion, document: str) -> str:
    response = await chat(messages=[{"role": "user", "content": f"Summarize: {document}"}])
    return responses.text(response)


async def test_hand_written_fake_stands_in_and_records_calls() -> None:
    reply = ModelResponse(choices=[{"message": {"role": "assistant", "content": "Short."}}])
    fake = FakeChat(reply)
    assert isinstance(fake, AFixedModelCompletion)
    assert await summarize(fake, "a long text") == "Short."
    assert fake.calls == [[{"role": "user", "content": "Summarize: a long text"}]]


async def test_mock_response_binding_is_the_other_fake() -> None:
    fake = bind_acompletion("openai/gpt-4o-mini", mock_response="Mocked summary.")
    assert await summarize(fake, "text") == "Mocked summary."
