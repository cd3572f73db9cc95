"""Testing without a provider: scripted fakes of the four callable kinds.

``import fixedmodel.testing`` does not import litellm; the fakes import it when they build
their first answer.
"""

from __future__ import annotations

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
    "Reply",
    "UnexpectedCallError",
]
