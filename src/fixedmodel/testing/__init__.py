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

from fixedmodel._guard import (
    RealRequestError as RealRequestError,
)
from fixedmodel._guard import (
    blocking_real_requests as blocking_real_requests,
)
from fixedmodel.testing._fakes import (
    CompletionCall as CompletionCall,
)
from fixedmodel.testing._fakes import (
    EmbeddingCall as EmbeddingCall,
)
from fixedmodel.testing._fakes import (
    FakeACompletion as FakeACompletion,
)
from fixedmodel.testing._fakes import (
    FakeAEmbedding as FakeAEmbedding,
)
from fixedmodel.testing._fakes import (
    FakeCompletion as FakeCompletion,
)
from fixedmodel.testing._fakes import (
    FakeEmbedding as FakeEmbedding,
)
from fixedmodel.testing._fakes import (
    UnexpectedCallError as UnexpectedCallError,
)
from fixedmodel.testing._script import (
    ChatEntry as ChatEntry,
)
from fixedmodel.testing._script import (
    EmbeddingEntry as EmbeddingEntry,
)
from fixedmodel.testing._script import (
    Fail as Fail,
)
from fixedmodel.testing._script import (
    FakeToolCall as FakeToolCall,
)
from fixedmodel.testing._script import (
    FakeUsage as FakeUsage,
)
from fixedmodel.testing._script import (
    Reply as Reply,
)

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
