"""The pytest plugin of fixedmodel (registered through the ``pytest11`` entry point).

Fixtures:
    openai_server: A loopback OpenAI-compatible server (:class:`OpenAIServer`) shared by the
        session and reset for each test: no faults queued, no fault rule or responder, no
        requests recorded, the default reply. Point a bound object at it with
        ``api_base=openai_server.base_url``.
    no_real_requests: Blocks, for the test, every bound call whose request would leave the
        machine (:class:`~fixedmodel.testing.RealRequestError` instead, before any connection).

Marker ``no_real_requests`` does the same as the fixture; the ini option
``fixedmodel_no_real_requests = true`` switches it on for every test of the project.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from fixedmodel._guard import blocking_real_requests

if TYPE_CHECKING:
    # The server imports aiohttp: loaded only by a test that uses the fixture.
    from fixedmodel.testing.server import OpenAIServer

_INI = "fixedmodel_no_real_requests"
_MARKER = "no_real_requests"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _INI,
        type="bool",
        default=False,
        help="fixedmodel: block real provider requests from bound objects in every test",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}: fixedmodel: fail the test when a bound object would reach a real provider",
    )


@pytest.fixture(scope="session")
def _fixedmodel_openai_server() -> Iterator[OpenAIServer]:
    from fixedmodel.testing.server import OpenAIServer

    with OpenAIServer() as server:
        yield server


@pytest.fixture
def openai_server(_fixedmodel_openai_server: OpenAIServer) -> Iterator[OpenAIServer]:
    """The loopback OpenAI-compatible server, reset for this test."""
    from fixedmodel.testing.server import DEFAULT_REPLY

    server = _fixedmodel_openai_server
    server.reset()
    server.reply_text = DEFAULT_REPLY
    server.latency = 0.0
    server.usage_completion_tokens = None
    yield server
    server.reset()


@pytest.fixture
def no_real_requests() -> Iterator[None]:
    """Block real provider requests from bound objects during the test."""
    with blocking_real_requests():
        yield


@pytest.fixture(autouse=True)
def _fixedmodel_real_request_switch(request: pytest.FixtureRequest) -> Iterator[None]:
    wanted = request.node.get_closest_marker(_MARKER) is not None or bool(
        request.config.getini(_INI)
    )
    if not wanted:
        yield
        return
    with blocking_real_requests():
        yield
