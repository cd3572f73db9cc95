"""Test application code with the scripted fakes of fixedmodel.testing, offline."""

from __future__ import annotations

import asyncio

from fixedmodel import AFixedModelCompletion, RetryPolicy, errors, responses, with_retries
from fixedmodel.testing import CompletionCall, Fail, FakeACompletion, Reply


# The application code takes the Protocol, so a fake stands in for a bound object.
async def summarize(chat: AFixedModelCompletion, document: str) -> str:
    response = await chat(messages=[{"role": "user", "content": f"Summarize: {document}"}])
    return responses.text(response)


async def main() -> None:
    # Scripted answers, one per call; every call is recorded with its keywords.
    fake = FakeACompletion(["A short summary."], temperature=0.2)
    assert await summarize(fake, "a long report") == "A short summary."
    assert fake.calls[0].params.get("temperature") == 0.2
    print("recorded:", fake.calls[0].messages)

    # Streams are real CustomStreamWrapper objects, chunked as the script says.
    fake = FakeACompletion([Reply(text="Hello there", chunks=["Hel", "lo", " there"])])
    stream = await fake(messages=[{"role": "user", "content": "Hi"}], stream=True)
    print("streamed:", [piece async for piece in responses.atext_deltas(stream)])

    # Scripted failures are litellm's own exceptions, so retry settings can be tested.
    fake = FakeACompletion([Fail(429, headers={"retry-after-ms": "10"}), "second try"])
    quick = RetryPolicy(initial_wait=0.01, max_wait=0.01)
    print("after a 429:", await summarize(with_retries(fake, quick), "text"))
    try:
        await summarize(FakeACompletion([Fail(401)]), "text")
    except errors.AuthenticationError as error:
        print("401 raised as:", type(error).__name__)

    # A function computes the answer from the request.
    def echo(call: CompletionCall) -> str:
        return f"you sent {len(call.messages)} message(s)"

    print("function:", await summarize(FakeACompletion(echo), "text"))


if __name__ == "__main__":
    asyncio.run(main())
