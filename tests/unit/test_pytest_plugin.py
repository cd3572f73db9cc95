"""The pytest plugin of fixedmodel.testing, run in throwaway projects with pytester."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fixedmodel import bind_completion, responses
from fixedmodel.testing import RealRequestError, blocking_real_requests

# Starts other interpreters or engines; run at the newest litellm only (see scripts/test.sh).
pytestmark = pytest.mark.heavy

MESSAGES = [{"role": "user", "content": "Hi"}]


# Every connection attempt of the inner test's process is recorded and refused, so a test can
# show that the switch stops a call before it tries to connect.
RECORD_CONNECTIONS = """
import socket

from pathlib import Path
from typing import Any

import pytest

ATTEMPTS = []


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch):
    real_connect = socket.socket.connect

    def connect(self, address):
        if address[0] not in ("127.0.0.1", "::1", "localhost"):
            ATTEMPTS.append(address)
            raise OSError("connection attempted to " + repr(address))
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "::1", "localhost"):
            ATTEMPTS.append(host)
            raise OSError("name lookup attempted for " + repr(host))
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
"""


def test_the_server_fixture_answers_and_records(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from fixedmodel import bind_completion, responses

        def test_through_the_fixture(openai_server):
            openai_server.reply_text = "from the fixture"
            chat = bind_completion("openai/test", api_base=openai_server.base_url, api_key="k")
            with chat:
                answer = chat(messages=[{"role": "user", "content": "Hi"}])
            assert responses.text(answer) == "from the fixture"
            assert openai_server.request_count() == 1
            assert openai_server.requests[0].body["messages"][0]["content"] == "Hi"

        def test_each_test_starts_clean(openai_server):
            assert openai_server.request_count() == 0
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_the_marker_fails_a_real_request_without_any_connection_attempt(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(RECORD_CONNECTIONS)
    pytester.makepyfile(
        """
        import pytest
        from conftest import ATTEMPTS
        from fixedmodel import bind_completion, responses
        from fixedmodel.testing import RealRequestError

        MESSAGES = [{"role": "user", "content": "Hi"}]

        @pytest.mark.no_real_requests
        def test_marked():
            chat = bind_completion("openai/gpt-4o-mini", api_key="sk-not-real")
            with pytest.raises(RealRequestError, match="would reach"):
                chat(messages=MESSAGES)
            assert ATTEMPTS == []

        @pytest.mark.no_real_requests
        def test_local_calls_still_work(openai_server):
            mocked = bind_completion("openai/gpt-4o-mini", mock_response="mocked")
            assert responses.text(mocked(messages=MESSAGES)) == "mocked"
            local = bind_completion("openai/test", api_base=openai_server.base_url, api_key="k")
            assert responses.text(local(messages=MESSAGES))
            assert ATTEMPTS == []

        def test_with_the_fixture(no_real_requests):
            chat = bind_completion("anthropic/claude-3-5-haiku-latest", api_key="x")
            with pytest.raises(RealRequestError):
                chat(messages=MESSAGES)
            assert ATTEMPTS == []

        def test_unmarked_tests_are_not_blocked():
            chat = bind_completion("openai/gpt-4o-mini", api_key="sk-not-real", max_retries=0)
            with pytest.raises(Exception) as caught:
                chat(messages=MESSAGES)
            assert not isinstance(caught.value, RealRequestError)
            assert ATTEMPTS  # the call really tried to go out (and was refused here)
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=4)


def test_the_ini_option_blocks_every_test(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfixedmodel_no_real_requests = true\n")
    pytester.makepyfile(
        """
        import pytest
        from fixedmodel import bind_completion
        from fixedmodel.testing import RealRequestError

        def test_blocked():
            chat = bind_completion("openai/gpt-4o-mini", api_base="https://api.openai.com/v1")
            with pytest.raises(RealRequestError, match="api.openai.com"):
                chat(messages=[{"role": "user", "content": "Hi"}])
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_switch_reads_the_environment_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    chat = bind_completion("openai/gpt-4o-mini", api_key="k", max_retries=0, timeout=0.5)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://provider.invalid/v1")
    with blocking_real_requests(), pytest.raises(RealRequestError, match=r"provider\.invalid"):
        chat(messages=MESSAGES)
    mocked = bind_completion("openai/gpt-4o-mini", mock_response="fine")
    with blocking_real_requests():
        assert responses.text(mocked(messages=MESSAGES)) == "fine"


def test_the_documented_example_tests_pass(pytester: pytest.Pytester) -> None:
    example = Path(__file__).parents[2] / "examples" / "pytest" / "test_app.py"
    pytester.makepyfile(test_app=example.read_text())
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


# Base-URL variables that could leak into a test from the developer's shell.
_PROVIDER_BASE_VARIABLES = (
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "ANTHROPIC_API_BASE",
    "ANTHROPIC_BASE_URL",
    "AZURE_API_BASE",
    "GEMINI_API_BASE",
)


@pytest.mark.parametrize(
    "model",
    [
        "anthropic/claude-3-5-haiku-latest",
        "gemini/gemini-2.0-flash",
        "azure/my-deployment",
        "groq/llama-3.1-8b-instant",  # litellm gives groq its own public host
        "deepseek/deepseek-chat",
        "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
        "no-such-provider-model",  # unknown provider: when in doubt, block
    ],
)
def test_an_openai_base_url_on_loopback_does_not_let_other_providers_through(
    monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    # OPENAI_BASE_URL only steers litellm's OpenAI path; these providers go to their own hosts.
    for name in _PROVIDER_BASE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    chat = bind_completion(model, api_key="k", max_retries=0, timeout=0.5)
    with blocking_real_requests(), pytest.raises(RealRequestError, match="would reach"):
        chat(messages=MESSAGES)


def test_the_providers_own_base_url_variable_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROVIDER_BASE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_BASE", "https://anthropic.invalid")
    chat = bind_completion("anthropic/claude-3-5-haiku-latest", api_key="k", max_retries=0)
    with blocking_real_requests(), pytest.raises(RealRequestError, match=r"anthropic\.invalid"):
        chat(messages=MESSAGES)


def test_openai_with_a_loopback_environment_base_url_is_allowed(
    monkeypatch: pytest.MonkeyPatch, openai_server: Any
) -> None:
    for name in _PROVIDER_BASE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    openai_server.reply_text = "from loopback"
    for model in ("openai/my-model", "gpt-4o-mini"):
        chat = bind_completion(model, api_key="k", max_retries=0)
        with blocking_real_requests():
            assert responses.text(chat(messages=MESSAGES)) == "from loopback"
    # An explicit loopback api_base lets any provider through: it is where litellm sends it.
    openai_like = bind_completion("openai/x", api_base=openai_server.base_url, api_key="k")
    with blocking_real_requests():
        assert responses.text(openai_like(messages=MESSAGES)) == "from loopback"


@pytest.mark.parametrize("host", ["tenant.localhost", "localhost.example", "127.0.0.1.example"])
def test_a_name_that_only_looks_local_is_blocked(host: str) -> None:
    # Names under .localhost were let through on their spelling, but without
    # systemd-resolved glibc sends them to the DNS server, which may answer with any address.
    chat = bind_completion("openai/x", api_base=f"http://{host}:9/v1", api_key="k")
    with blocking_real_requests(), pytest.raises(RealRequestError, match="would reach"):
        chat(messages=MESSAGES)


@pytest.mark.filterwarnings("ignore::fixedmodel.UnknownKeywordWarning")
def test_a_loopback_api_base_does_not_cover_a_real_base_url(openai_server: Any) -> None:
    # The switch judged api_base first, but litellm's completion sends to base_url when
    # both are given: a loopback api_base let a call through to base_url's real host.
    chat = bind_completion(
        "openai/x", api_base=openai_server.base_url, base_url="http://provider.invalid/v1"
    )
    with blocking_real_requests(), pytest.raises(RealRequestError, match=r"provider\.invalid"):
        chat(messages=MESSAGES, api_key="k")
    assert not openai_server.requests


def test_an_openai_client_is_judged_by_its_own_base_url(
    monkeypatch: pytest.MonkeyPatch, openai_server: Any
) -> None:
    # With OPENAI_BASE_URL on loopback, a client= made for a real host was let through:
    # litellm sends the request with that client, to the client's base URL.
    import openai

    for name in _PROVIDER_BASE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    chat = bind_completion("openai/x", api_key="k", max_retries=0)
    elsewhere = openai.OpenAI(api_key="k", base_url="http://provider.invalid/v1")
    with elsewhere, blocking_real_requests(), pytest.raises(RealRequestError, match="client"):
        chat(messages=MESSAGES, client=elsewhere)
    openai_server.reply_text = "from loopback"
    local = openai.OpenAI(api_key="k", base_url=openai_server.base_url, max_retries=0)
    with local, blocking_real_requests():
        assert responses.text(chat(messages=MESSAGES, client=local)) == "from loopback"
