"""The one loopback OpenAI-compatible server shared by the integration tests.

It is the one fixedmodel ships (``fixedmodel.testing``): the plugin's ``openai_server``
fixture, under the short name these tests use.
"""

from __future__ import annotations

import pytest

from fixedmodel.testing.server import OpenAIServer


@pytest.fixture
def server(openai_server: OpenAIServer) -> OpenAIServer:
    """The running server, with its recorded requests and faults cleared for this test."""
    return openai_server
