"""Misuse of the fixedmodel.testing fakes that both checkers must report."""

from __future__ import annotations

from fixedmodel import AFixedModelCompletion, FixedModelCompletion
from fixedmodel.testing import Fail, FakeACompletion, FakeCompletion, Reply

MESSAGES = [{"role": "user", "content": "Hi"}]


async def misuse() -> None:
    chat = FakeACompletion(["Hi"])
    await chat(messages=MESSAGES, model="openai/gpt-4o")  # expect-error
    await chat(messages=MESSAGES, temprature=0.2)  # expect-error
    async for _chunk in await chat(messages=MESSAGES):  # expect-error
        pass
    wrong_kind: FixedModelCompletion = chat  # expect-error
    sync_as_async: AFixedModelCompletion = FakeCompletion()  # expect-error
    FakeACompletion([42])  # expect-error
    FakeACompletion(temperature="hot")  # expect-error
    Reply(text=3)  # expect-error
    Fail("429")  # expect-error
    del wrong_kind, sync_as_async
