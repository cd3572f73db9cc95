"""litellm's "Give Feedback / Get Help" banner stays off the user's stdout.

litellm prints it for every provider error it maps, including the ones fixedmodel then
retries or falls back from, unless ``litellm.suppress_debug_info`` is set. fixedmodel sets it
at its lazy import of litellm; ``FIXEDMODEL_LITELLM_BANNER=1`` keeps the banner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import fixedmodel._litellm
from fixedmodel import RetryPolicy, bind_completion, errors, responses, with_retries
from fixedmodel.testing.server import Fault, OpenAIServer

MESSAGES = [{"role": "user", "content": "Hi"}]
BANNER = "Give Feedback"
BANNER_ENV = "FIXEDMODEL_LITELLM_BANNER"


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
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(reply_text="fine") as running:
        yield running


@pytest.fixture
def fresh_import(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on a first bind in a new process: litellm loaded, fixedmodel not yet past its import."""
    litellm = fixedmodel._litellm.litellm_module()
    monkeypatch.setattr(litellm, "suppress_debug_info", False)
    monkeypatch.setattr(fixedmodel._litellm, "_module", None)
    monkeypatch.delenv(BANNER_ENV, raising=False)
    yield


def _failing_calls(server: OpenAIServer) -> None:
    server.reset()
    # One error that with_retries handles, then one that reaches the caller.
    chat = bind_completion("openai/test", api_base=server.base_url, api_key="k", max_retries=0)
    retried = with_retries(chat, RetryPolicy(initial_wait=0.01, max_wait=0.01))
    server.enqueue(Fault.status(503))
    assert responses.text(retried(messages=MESSAGES)) == "fine"
    server.enqueue(Fault.status(400))
    with pytest.raises(errors.BadRequestError):
        retried(messages=MESSAGES)
    # A model string litellm cannot place prints its own "Provider List" banner too.
    with pytest.raises(errors.BadRequestError):
        bind_completion("no-such-provider-model", api_key="k")(messages=MESSAGES)


@pytest.mark.usefixtures("fresh_import")
def test_failed_and_retried_calls_print_nothing_on_stdout(
    server: OpenAIServer, capfd: pytest.CaptureFixture[str]
) -> None:
    _failing_calls(server)
    out = capfd.readouterr().out
    assert BANNER not in out
    assert "Provider List" not in out
    assert out == ""


@pytest.mark.usefixtures("fresh_import")
def test_the_banner_can_be_kept(
    server: OpenAIServer, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BANNER_ENV, "1")
    _failing_calls(server)
    assert BANNER in capfd.readouterr().out
