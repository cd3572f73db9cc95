"""Testing without a provider: scripted fakes, a loopback server and a real-request switch.

- Scripted fakes of the four callable kinds (:class:`FakeACompletion`, ...).
- :class:`~fixedmodel.testing.server.OpenAIServer`, a loopback OpenAI-compatible server with
  fault injection, in ``fixedmodel.testing.server`` (imports aiohttp, a litellm dependency).
- :func:`blocking_real_requests`: bound objects refuse to reach a real provider.
- A pytest plugin, loaded automatically: fixtures ``openai_server`` and ``no_real_requests``,
  marker ``no_real_requests``, ini option ``fixedmodel_no_real_requests``.

``import fixedmodel.testing`` does not import litellm; the fakes import it when they build
their first answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fixedmodel._lazy import first_use

if TYPE_CHECKING:
    from fixedmodel._guard import RealRequestError as RealRequestError
    from fixedmodel._guard import blocking_real_requests as blocking_real_requests
    from fixedmodel.testing._fakes import CompletionCall as CompletionCall
    from fixedmodel.testing._fakes import EmbeddingCall as EmbeddingCall
    from fixedmodel.testing._fakes import FakeACompletion as FakeACompletion
    from fixedmodel.testing._fakes import FakeAEmbedding as FakeAEmbedding
    from fixedmodel.testing._fakes import FakeCompletion as FakeCompletion
    from fixedmodel.testing._fakes import FakeEmbedding as FakeEmbedding
    from fixedmodel.testing._fakes import UnexpectedCallError as UnexpectedCallError
    from fixedmodel.testing._script import ChatEntry as ChatEntry
    from fixedmodel.testing._script import EmbeddingEntry as EmbeddingEntry
    from fixedmodel.testing._script import Fail as Fail
    from fixedmodel.testing._script import FakeToolCall as FakeToolCall
    from fixedmodel.testing._script import FakeUsage as FakeUsage
    from fixedmodel.testing._script import Reply as Reply

__all__ = [
    "ChatEntry",
    "CompletionCall",
    "EmbeddingCall",
    "EmbeddingEntry",
    "Fail",
    "FakeACompletion",
    "FakeAEmbedding",
    "FakeCompletion",
    "FakeEmbedding",
    "FakeToolCall",
    "FakeUsage",
    "RealRequestError",
    "Reply",
    "UnexpectedCallError",
    "blocking_real_requests",
]

# Where each name lives, imported on first use (see fixedmodel._lazy); a test keeps it
# equal to the imports above.
_HOME_OF: dict[str, str] = {
    "ChatEntry": "fixedmodel.testing._script",
    "CompletionCall": "fixedmodel.testing._fakes",
    "EmbeddingCall": "fixedmodel.testing._fakes",
    "EmbeddingEntry": "fixedmodel.testing._script",
    "Fail": "fixedmodel.testing._script",
    "FakeACompletion": "fixedmodel.testing._fakes",
    "FakeAEmbedding": "fixedmodel.testing._fakes",
    "FakeCompletion": "fixedmodel.testing._fakes",
    "FakeEmbedding": "fixedmodel.testing._fakes",
    "FakeToolCall": "fixedmodel.testing._script",
    "FakeUsage": "fixedmodel.testing._script",
    "RealRequestError": "fixedmodel._guard",
    "Reply": "fixedmodel.testing._script",
    "UnexpectedCallError": "fixedmodel.testing._fakes",
    "blocking_real_requests": "fixedmodel._guard",
}

if not TYPE_CHECKING:  # Hidden from checkers, which would accept any misspelled name.
    __getattr__, __dir__ = first_use("fixedmodel.testing", _HOME_OF, globals())
