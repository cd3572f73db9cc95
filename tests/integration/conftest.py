"""The one loopback OpenAI-compatible server shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.openai_server import OpenAIServer


@pytest.fixture(scope="session")
def _server_process_wide() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def server(_server_process_wide: OpenAIServer) -> Iterator[OpenAIServer]:
    """The running server, with its recorded requests and faults cleared for this test."""
    _server_process_wide.reset()
    _server_process_wide.reply_text = "Hello from the loopback server."
    _server_process_wide.latency = 0.0
    yield _server_process_wide
    _server_process_wide.reset()
