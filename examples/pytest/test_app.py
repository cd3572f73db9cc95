"""Tests of application code with fixedmodel's pytest plugin (installed with fixedmodel)."""

from __future__ import annotations

import pytest

from fixedmodel import AFixedModelCompletion, RetryPolicy, bind_acompletion, responses, with_retries
from fixedmodel.testing import RealRequestError
from fixedmodel.testing.server import Fault, OpenAIServer


async def summarize(chat: AFixedModelCompletion, document: str) -> str:
    response = await chat(messages=[{"role": "user", "content": f"Summarize: {document}"}])
    return responses.text(response)


async def test_retry_settings_against_a_real_http_server(openai_server: OpenAIServer) -> None:
    openai_server.reply_text = "A short summary."
    openai_server.enqueue(Fault.status(503), Fault.status(429, retry_after_ms=10))
    async with bind_acompletion(
        "openai/my-model", api_base=openai_server.base_url, api_key="test"
    ) as bound:
        chat = with_retries(bound, RetryPolicy(initial_wait=0.01, max_wait=0.05))
        assert await summarize(chat, "a long report") == "A short summary."
    assert openai_server.request_count() == 3  # two faults, then the answer


@pytest.mark.no_real_requests
async def test_nothing_reaches_a_real_provider() -> None:
    chat = bind_acompletion("openai/gpt-4o-mini")  # no fake, no api_base: a real provider
    with pytest.raises(RealRequestError):
        await summarize(chat, "text")
